// Request ids and trace context: a generated or kept X-Request-ID on the answer, at the backend
// and on every log line about the request; traceparent kept when valid, otherwise created; and
// the fields of the access log line (status, bytes, model, timings, token usage, how it ended).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

function oneModel(port, flags = '') {
  return `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m ${flags}\n`;
}

function chat(d, extra = {}, headers = {}) {
  return h.post(`${d.url}${CHAT}`, { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra },
    headers);
}

// The access line of request `id`, parsed into its key=value fields.
async function accessLine(d, id) {
  const esc = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = await d.waitLog(new RegExp(`access req=${esc} (.*)`));
  const fields = {};
  for (const f of m[1].matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
    fields[f[1]] = f[2].startsWith('"') ? JSON.parse(f[2]) : f[2];
  }
  return fields;
}

// A raw request with headers node's fetch would refuse or normalise.
function rawChat(d, headers) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify({ model: 'm', messages: [] });
    const req = http.request(`${d.url}${CHAT}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

// Streams a chat to the end; returns the raw text and the usage of the last data event.
async function streamChat(d, headers = {}) {
  const res = await fetch(`${d.url}${CHAT}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'stream me' }] }),
  });
  const text = await res.text();
  let usage = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const ev = JSON.parse(line.slice(6));
    if (ev.usage) usage = ev.usage;
  }
  return { status: res.status, headers: res.headers, text, usage };
}

test('a generated request id is on the answer, at the backend and on the log lines', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port) });

  const r = await chat(d);
  assert.equal(r.status, 200, r.text);
  const id = r.headers.get('x-request-id');
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.equal(r.json.echo.headers['x-request-id'], id, 'the backend saw the same id');
  const acc = await accessLine(d, id);
  assert.equal(acc.status, '200');

  // Ids differ per request.
  const r2 = await chat(d);
  assert.match(r2.headers.get('x-request-id'), /^[0-9a-f]{16}$/);
  assert.notEqual(r2.headers.get('x-request-id'), id);

  // A request that fails in the daemon: its error line and access line carry the id.
  const nf = await chat(d, { model: 'nope' });
  h.assertError(nf, 404, /model nope not found/);
  const nid = nf.headers.get('x-request-id');
  assert.match(nid, /^[0-9a-f]{16}$/);
  await d.waitLog(new RegExp(`http req=${nid} status=404 code=model_not_found`));
  const nacc = await accessLine(d, nid);
  assert.equal(nacc.status, '404');
  assert.equal(nacc.model, 'nope');

  // A management route's answer also carries one.
  const hl = await h.get(`${d.url}/health`);
  assert.match(hl.headers.get('x-request-id'), /^[0-9a-f]{16}$/);
  await d.stop();
});

test('a valid incoming X-Request-ID is kept end to end; an invalid one is replaced', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port) });

  const keep = 'Client.req-42:abc_DEF';
  const r = await chat(d, {}, { 'X-Request-ID': keep });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-request-id'), keep);
  assert.equal(r.json.echo.headers['x-request-id'], keep);
  const acc = await accessLine(d, keep);
  assert.equal(acc.status, '200');

  // 64 characters is the longest kept.
  const max = 'a'.repeat(64);
  const rm = await chat(d, {}, { 'X-Request-ID': max });
  assert.equal(rm.headers.get('x-request-id'), max);
  assert.equal(rm.json.echo.headers['x-request-id'], max);

  const bad = {
    spaces: 'has some spaces',
    long: 'x'.repeat(200),
    '65 chars': 'b'.repeat(65),
    quotes: 'a"b\'c',
    slash: 'a/b',
  };
  for (const [what, v] of Object.entries(bad)) {
    const b = await rawChat(d, { 'X-Request-ID': v });
    assert.equal(b.status, 200, what);
    const got = b.headers['x-request-id'];
    assert.match(got, /^[0-9a-f]{16}$/, `${what}: replaced by a generated id, got ${got}`);
    assert.equal(b.json.echo.headers['x-request-id'], got, `${what}: the backend saw the replacement`);
    await accessLine(d, got);
  }
  assert.doesNotMatch(d.stderr, /req=has some|req=xxxxxxxx|req=a"b/, 'no invalid id reaches the log');
  await d.stop();
});

test('traceparent: a valid one reaches the backend unchanged; an invalid or missing one is replaced',
  async (t) => {
    const port = await h.freePorts(1);
    const d = await h.startDaemon(t, { config: oneModel(port) });

    const valid = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await chat(d, {}, { traceparent: valid });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.echo.headers.traceparent, valid);

    const seen = new Set();
    const invalid = [
      null, // missing
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero parent id
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // upper case
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    ];
    for (const tp of invalid) {
      const res = await chat(d, {}, tp === null ? {} : { traceparent: tp });
      assert.equal(res.status, 200, res.text);
      const got = res.json.echo.headers.traceparent;
      assert.match(String(got), TRACEPARENT, `${tp}: replaced by a fresh trace context, got ${got}`);
      assert.notEqual(got, tp);
      assert.ok(!seen.has(got), 'a fresh one each time');
      seen.add(got);
    }
    await d.stop();
  });

test('access log: non-streamed chat has status, bytes, model, timings and usage', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port) });

  const r = await chat(d, {}, { 'X-Request-ID': 'acc-plain' });
  assert.equal(r.status, 200, r.text);
  const a = await accessLine(d, 'acc-plain');
  assert.equal(a.method, 'POST');
  assert.equal(a.path, CHAT);
  assert.equal(a.status, '200');
  assert.equal(Number(a.bytes), Buffer.byteLength(r.text), 'bytes = body bytes sent');
  assert.equal(a.model, 'm');
  for (const k of ['queued_ms', 'first_byte_ms', 'total_ms']) assert.match(a[k], /^\d+$/, `${k}=${a[k]}`);
  assert.ok(Number(a.queued_ms) <= Number(a.first_byte_ms), 'queued before the first byte');
  assert.ok(Number(a.first_byte_ms) <= Number(a.total_ms), 'first byte before the end');
  assert.equal(Number(a.prompt_tokens), r.json.usage.prompt_tokens);
  assert.equal(Number(a.completion_tokens), r.json.usage.completion_tokens);
  assert.ok(r.json.usage.completion_tokens > 0);
  assert.equal(a.end, 'ok');

  // An error answered by the daemon itself: no upstream timings, no usage.
  const e = await h.post(`${d.url}${CHAT}`, '{not json', { 'X-Request-ID': 'acc-bad' });
  h.assertError(e, 400);
  const b = await accessLine(d, 'acc-bad');
  assert.equal(b.status, '400');
  assert.equal(Number(b.bytes), Buffer.byteLength(e.text));
  assert.equal(b.first_byte_ms, '-1');
  assert.equal(b.prompt_tokens, '-1');
  assert.equal(b.end, 'ok');
  await d.stop();
});

test('access log: a streamed chat takes its usage from the last SSE event', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--chunks 4 --chunk-delay 20') });

  const s = await streamChat(d, { 'X-Request-ID': 'acc-stream' });
  assert.equal(s.status, 200);
  assert.match(s.text, /data: \[DONE\]/);
  assert.ok(s.usage, `usage in the last event: ${s.text}`);
  const a = await accessLine(d, 'acc-stream');
  assert.equal(a.status, '200');
  assert.equal(Number(a.bytes), Buffer.byteLength(s.text));
  assert.equal(a.model, 'm');
  assert.equal(Number(a.prompt_tokens), s.usage.prompt_tokens);
  assert.equal(Number(a.completion_tokens), s.usage.completion_tokens);
  assert.equal(s.usage.completion_tokens, 4);
  assert.ok(Number(a.total_ms) >= 60, `3 chunk delays of 20 ms, total_ms=${a.total_ms}`);
  assert.equal(a.end, 'ok');
  await d.stop();
});

test('access log: a client that aborts a slow stream is logged end=client_abort', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--chunks 50 --chunk-delay 200') });
  const warm = await chat(d);
  assert.equal(warm.status, 200, warm.text);

  await new Promise((resolve, reject) => {
    const data = JSON.stringify({ model: 'm', stream: true, messages: [] });
    const req = http.request(`${d.url}${CHAT}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data),
        'X-Request-ID': 'acc-abort' },
    }, (res) => {
      res.once('data', () => { req.destroy(); resolve(); });
    });
    req.on('error', (e) => { if (e.code !== 'ECONNRESET') reject(e); });
    req.end(data);
  });
  const a = await accessLine(d, 'acc-abort');
  assert.equal(a.status, '200');
  assert.equal(a.model, 'm');
  assert.ok(Number(a.bytes) > 0, `bytes=${a.bytes}`);
  assert.ok(Number(a.total_ms) < 5000, 'logged when the client left, not when the stream would end');
  assert.equal(a.prompt_tokens, '-1', 'no usage: the last event never came');
  assert.equal(a.end, 'client_abort');
  await d.stop();
});
