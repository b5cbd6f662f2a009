// Every llama-swap model route with a test of its own, in its plain and (where the backend
// streams) its streaming form: the request reaches the model named in the body, on the same
// path, and the answer comes back as the backend sent it.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

// Reads an SSE answer: the status, content type, and the events as [{event, data}].
async function sse(url, body) {
  const res = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await res.text();
  const events = text.split('\n\n').filter((b) => b.trim()).map((b) => {
    const ev = /^event: (.*)$/m.exec(b);
    const data = /^data: (.*)$/m.exec(b);
    return { event: ev ? ev[1] : null, data: data ? data[1] : null };
  });
  return { status: res.status, type: res.headers.get('content-type'), text, events };
}

let d;
let port;

test.before(async () => {
  port = await h.freePorts(2);
  d = await h.startDaemon(null, {
    config: `startPort: ${port}
groups:
  all: {swap: false, members: [m, other]}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --chunks 3 --reply "one two three"
  other:
    cmd: ${h.FAKE} --port \${PORT} --reply "one two three"
`,
  });
});

test.after(async () => { await d.stop(); });

const plain = [
  // [path, body, check(json)]
  ['/v1/responses', { input: 'hi' }, (j) => assert.equal(j.output_text, 'one two three')],
  ['/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] },
    (j) => { assert.equal(j.type, 'message'); assert.equal(j.content[0].text, 'one two three'); }],
  ['/v1/messages/count_tokens', { messages: [{ role: 'user', content: 'hi there' }] },
    (j) => assert.equal(typeof j.input_tokens, 'number')],
  ['/v1/rerank', { query: 'q', documents: ['a', 'b'] },
    (j) => assert.equal(j.results.length, 2)],
  ['/infill', { input_prefix: 'a', input_suffix: 'b' }, (j) => assert.equal(j.content, 'one two three')],
  ['/completion', { prompt: 'hi' }, (j) => assert.equal(j.content, 'one two three')],
  ['/v1/images/generations', { prompt: 'a cat' }, (j) => assert.equal(j.data.length, 1)],
];

for (const [path, body, check] of plain) {
  test(`${path}: routed by the body's model, answered as the backend answers`, async () => {
    for (const model of ['m', 'other']) {
      const r = await h.post(`${d.url}${path}`, { model, ...body });
      assert.equal(r.status, 200, `${path} ${model}: ${r.text}`);
      assert.equal(r.json.echo.path, path);
      assert.equal(r.json.echo.method, 'POST');
      assert.equal(r.json.echo.model, model);
      check(r.json);
    }
    h.assertError(await h.post(`${d.url}${path}`, { model: 'nope', ...body }), 404, /nope/);
  });
}

test('/v1/audio/speech: binary audio back as sent, with its content type', async () => {
  const res = await fetch(`${d.url}/v1/audio/speech`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', input: 'hello', voice: 'alloy' }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'audio/mpeg');
  assert.equal(res.headers.get('x-fake-model'), 'm');
  const buf = Buffer.from(await res.arrayBuffer());
  assert.ok(buf.length > 0);
});

const streams = [
  // [path, body, event names expected in order (deduplicated), final check]
  ['/v1/responses', { input: 'hi', stream: true },
    ['response.output_text.delta', 'response.completed'],
    (evs) => assert.equal(evs.filter((e) => e.event === 'response.output_text.delta')
      .map((e) => JSON.parse(e.data).delta).join(''), 'one two three')],
  ['/v1/messages', { max_tokens: 5, stream: true, messages: [{ role: 'user', content: 'hi' }] },
    ['content_block_delta', 'message_stop'],
    (evs) => assert.equal(evs.filter((e) => e.event === 'content_block_delta')
      .map((e) => JSON.parse(e.data).delta.text).join(''), 'one two three')],
  ['/v1/audio/speech', { input: 'hello', voice: 'alloy', stream_format: 'sse' },
    ['speech.audio.delta', 'speech.audio.done'], null],
  ['/v1/images/generations', { prompt: 'a cat', stream: true, partial_images: 2 },
    ['image_generation.partial_image', 'image_generation.completed'], null],
  ['/completion', { prompt: 'hi', stream: true }, [null],
    (evs) => assert.equal(JSON.parse(evs[evs.length - 1].data).stop, true)],
  ['/infill', { input_prefix: 'a', stream: true }, [null],
    (evs) => assert.equal(evs.slice(0, -1).map((e) => JSON.parse(e.data).content).join(''), 'one two three')],
];

for (const [path, body, names, check] of streams) {
  test(`${path} streaming: events arrive as the backend sends them`, async () => {
    const r = await sse(`${d.url}${path}`, { model: 'm', ...body });
    assert.equal(r.status, 200, r.text);
    assert.match(r.type, /^text\/event-stream/);
    const seen = [];
    for (const e of r.events) if (seen[seen.length - 1] !== e.event) seen.push(e.event);
    assert.deepEqual(seen, names, r.text);
    for (const e of r.events) {
      const j = JSON.parse(e.data);
      if (e.event) assert.equal(j.type, e.event);
    }
    if (check) check(r.events);
  });
}

test('the streams went through one backend process per model, nothing restarted', async () => {
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1);
  assert.equal(d.logCount(/sup model=other pid=\d+ msg=spawned/), 1);
});
