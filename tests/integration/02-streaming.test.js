// SSE streams through the proxy event by event, with the headers a streaming client needs.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

// POSTs `body` and reads the response incrementally: each complete SSE event ("...\n\n") is
// recorded with the time it arrived (ms since the request was sent).
function streamEvents(url, body) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const data = JSON.stringify(body);
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      const events = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (s) => {
        const now = Date.now() - t0;
        buf += s;
        let i;
        while ((i = buf.indexOf('\n\n')) !== -1) {
          events.push({ t: now, text: buf.slice(0, i) });
          buf = buf.slice(i + 2);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, events, rest: buf }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

function config(port, flags) {
  return `startPort: ${port}\nmodels:\n  s:\n    cmd: ${h.FAKE} --port \${PORT} --model s ${flags}\n`;
}

test('SSE events arrive one by one, spread over time, ending with [DONE]', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: config(port, '--chunks 5 --chunk-delay 200') });
  // Load the model first so the start time does not blur the measurement.
  const warm = await h.post(`${d.url}/v1/chat/completions`, { model: 's', messages: [] });
  assert.equal(warm.status, 200, warm.text);

  const r = await streamEvents(`${d.url}/v1/chat/completions`,
    { model: 's', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/event-stream/);
  assert.equal(r.headers['x-accel-buffering'], 'no');
  assert.match(r.headers['x-request-id'], /^[0-9a-f]{16}$/);
  assert.equal(r.rest, '', 'nothing after the last event');

  const texts = r.events.map((e) => e.text);
  assert.equal(texts[texts.length - 1], 'data: [DONE]');
  const chunks = r.events.slice(0, -1).map((e) => ({ t: e.t, json: JSON.parse(e.text.replace(/^data: /, '')) }));
  assert.equal(chunks.length, 6, `5 content chunks and a final one: ${texts.join(' | ')}`);
  for (const c of chunks) assert.equal(c.json.object, 'chat.completion.chunk');
  const content = chunks.map((c) => c.json.choices[0].delta.content || '').join('');
  assert.equal(content, 'Hello from the modelmux demo', 'one reply word per chunk');
  assert.equal(chunks[5].json.choices[0].finish_reason, 'stop');

  // Timing: the five content chunks are 200 ms apart upstream; they must not be buffered.
  const first = chunks[0].t;
  const last = chunks[4].t;
  assert.ok(last - first >= 600, `first-to-last gap ${last - first} ms, arrivals ${chunks.map((c) => c.t)}`);
  for (let i = 1; i < 5; i++) {
    const expected = first + 200 * i;
    assert.ok(Math.abs(chunks[i].t - expected) <= 150 * h.SLOW,
      `chunk ${i} at ${chunks[i].t} ms, expected ~${expected} ms (arrivals ${chunks.map((c) => c.t)})`);
  }
  await d.stop();
  assert.match(d.stderr, /access req=[0-9a-f]+ method=POST path="\/v1\/chat\/completions" status=200 .*end=ok/);
});

test('text completion stream with a cold start is also passed through', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: config(port, '--chunks 3 --chunk-delay 50 --health-delay 300') });
  const r = await streamEvents(`${d.url}/v1/completions`, { model: 's', stream: true, prompt: 'x' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-accel-buffering'], 'no');
  const texts = r.events.map((e) => e.text);
  assert.equal(texts.length, 5, texts.join(' | '));
  assert.equal(texts[4], 'data: [DONE]');
  const words = texts.slice(0, 3).map((s) => JSON.parse(s.slice(6)).choices[0].text).join('');
  assert.equal(words, 'Hello from the');
  await d.stop();
});

test('curl -N streams the events', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: config(port, '--chunks 4 --chunk-delay 100') });
  const r = await h.curl(['-N', '-i', '-H', 'Content-Type: application/json',
    '-d', JSON.stringify({ model: 's', stream: true, messages: [] }), `${d.url}/v1/chat/completions`]);
  assert.equal(r.code, 0, r.stderr);
  const [head, body] = r.stdout.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200/);
  assert.match(head, /\r\nContent-Type: text\/event-stream/i);
  assert.match(head, /\r\nX-Accel-Buffering: no/i);
  const events = body.split('\n\n').filter((s) => s !== '');
  assert.equal(events.length, 6, body);
  assert.ok(events.slice(0, 5).every((e) => e.startsWith('data: {')), body);
  assert.equal(events[5], 'data: [DONE]');
  assert.ok(body.endsWith('data: [DONE]\n\n'), 'ends with [DONE]');
  await d.stop();
});

test('a non-SSE response carries no X-Accel-Buffering header', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: config(port, '') });
  const r = await h.post(`${d.url}/v1/chat/completions`, { model: 's', messages: [] });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /application\/json/);
  assert.equal(r.headers.get('x-accel-buffering'), null);
  await d.stop();
});
