// Graceful shutdown: on SIGTERM a stream in flight runs to its end, intact, while new connections
// are refused; then the backends stop and the daemon exits 0 with nothing left behind. A request
// still queued at SIGTERM is answered 503 with Retry-After at once.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

// Streams a chat to its end and records when each data event arrived.
function streamChat(d, model) {
  return new Promise((resolve) => {
    const data = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    const req = http.request(`${d.url}${CHAT}`, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text, how: 'end', at: Date.now() }));
      res.on('error', (e) => resolve({ status: res.statusCode, text, how: `error ${e.code}`, at: Date.now() }));
    });
    req.on('error', (e) => resolve({ status: 0, text, how: `error ${e.code}`, at: Date.now() }));
    req.end(data);
  });
}

function events(text) {
  return text.split('\n\n').filter((e) => e.trim() !== '').map((e) => {
    assert.match(e, /^data: /, `event: ${JSON.stringify(e)}`);
    return e.slice(6);
  });
}

async function runningOf(d, model) {
  const r = await h.get(`${d.url}/running`);
  return r.json.running.find((m) => m.model === model);
}

test('SIGTERM with a slow stream in flight: it completes intact, new connections are refused, exit 0',
  async (t) => {
    const port = await h.freePorts(1);
    const d = await h.startDaemon(t, {
      config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --chunks 10 --chunk-delay 200 --reply "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
`,
    });
    const warm = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
    assert.equal(warm.status, 200, warm.text);
    const pid = Number((await d.waitLog(/sup model=m pid=(\d+) msg=spawned/))[1]);

    const pending = streamChat(d, 'm');
    // Signal once the stream is under way (its first chunk is sent at once).
    await h.waitFor(async () => (await runningOf(d, 'm'))?.inflight === 1, { what: 'stream in flight' });
    const sigAt = Date.now();
    d.signal('SIGTERM');
    await d.waitLog(/main msg="stopping" signal=Terminated/);

    // Meanwhile: no new connection is accepted, and the daemon and backend are still there.
    const c = await h.curl(['-m', '2', `${d.url}/health`]);
    assert.equal(c.code, 7, `curl: ${c.code} ${c.stdout} ${c.stderr}`);
    assert.equal(d.exit, null, 'the daemon waits for the stream');
    assert.ok(h.isAlive(pid), 'the backend keeps serving the stream');

    const s = await pending;
    assert.equal(s.how, 'end', `stream ended by ${s.how}: ${s.text}`);
    assert.equal(s.status, 200);
    const evs = events(s.text);
    assert.equal(evs.at(-1), '[DONE]', 'ends with [DONE]');
    const chunks = evs.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks.length, 11, '10 content chunks and the final one');
    const content = chunks.map((ch) => ch.choices[0].delta?.content ?? '').join('');
    assert.equal(content, 'w0 w1 w2 w3 w4 w5 w6 w7 w8 w9', 'every chunk, in order');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(chunks.at(-1).usage.completion_tokens, 10);
    assert.doesNotMatch(s.text, /backend_stream_error/);
    assert.ok(s.at - sigAt >= 1000, `the stream ran on ~2 s after the signal (${s.at - sigAt} ms)`);

    // Then the backend stops and the daemon exits 0 (d.stop checks nothing is left).
    const exit = await d.exited;
    assert.equal(exit.code, 0, d.tail());
    assert.equal(h.isAlive(pid), false);
    assert.match(d.stderr, /sched model=m msg="unloading" reason=shutdown/);
    assert.match(d.stderr, /main msg="every backend stopped"/);
    assert.match(d.stderr, /access req=\S+ method=POST path="\/v1\/chat\/completions" status=200 .*end=ok/);
    assert.doesNotMatch(d.stderr, /shutdown grace over|sending SIGKILL/);
    await d.stop();
  });

test('a request queued at SIGTERM gets 503 with Retry-After; the one in flight completes', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --chunks 6 --chunk-delay 200
    concurrencyLimit: 1
`,
  });
  const warm = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(warm.status, 200, warm.text);

  const inflight = streamChat(d, 'm');
  await h.waitFor(async () => (await runningOf(d, 'm'))?.inflight === 1, { what: 'stream in flight' });
  const queued = h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] }).catch((e) => ({ error: e }));
  await h.waitFor(async () => (await runningOf(d, 'm'))?.queued === 1, { what: 'one queued' });

  const sigAt = Date.now();
  d.signal('SIGTERM');
  const q = await queued;
  assert.ok(!q.error, `the queued request got no answer: ${q.error}`);
  assert.ok(Date.now() - sigAt < 1000, 'refused at once, not after the stream');
  h.assertError(q, 503, /shutting down/);
  assert.equal(q.json.error.type, 'server_error');
  const ra = q.headers.get('retry-after');
  assert.match(String(ra), /^\d+$/, `Retry-After: ${ra}`);
  assert.ok(Number(ra) >= 1);
  assert.match(q.headers.get('x-request-id'), /^[0-9a-f]{16}$/);

  const s = await inflight;
  assert.equal(s.how, 'end', s.text);
  assert.equal(s.status, 200);
  assert.equal(events(s.text).at(-1), '[DONE]');
  const exit = await d.exited;
  assert.equal(exit.code, 0, d.tail());
  await d.stop();
});
