// Security gate, request limits: huge Content-Length, endless bodies, huge headers and URLs,
// deep JSON, slow clients. Every attack is written by hand on a raw socket; none may start a
// backend or grow the daemon's memory.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const MB = 1 << 20;

function config(port, limits = '') {
  return `startPort: ${port}
limits:
  maxJsonBodyBytes: 1024
  headerTimeoutSeconds: 1
  bodyIdleTimeoutSeconds: 1
${limits}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`;
}

function rssKb(d) {
  return h.rssKb(d.proc.pid);
}

// A raw connection: everything received, when it closed.
function connect(d) {
  const i = d.addr.lastIndexOf(':');
  const s = net.connect(Number(d.addr.slice(i + 1)), d.addr.slice(0, i));
  const c = { s, data: '', closed: false, closedAt: 0, error: null, t0: Date.now() };
  s.on('data', (b) => { c.data += b.toString('latin1'); });
  s.on('error', (e) => { c.error = e.code; });
  s.on('close', () => { c.closed = true; c.closedAt = Date.now(); });
  s.setMaxListeners(0);
  c.ready = new Promise((resolve) => s.once('connect', resolve));
  return c;
}

// The first HTTP response in c.data: { status, headers, body, heads } (heads = status lines seen).
function response(c) {
  const end = c.data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = c.data.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return { status: 0, headers: {}, body: '', raw: c.data };
  const headers = {};
  for (const l of lines.slice(1)) {
    const k = l.indexOf(':');
    headers[l.slice(0, k).trim().toLowerCase()] = l.slice(k + 1).trim();
  }
  const len = Number(headers['content-length'] || 0);
  const body = c.data.slice(end + 4, end + 4 + len);
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { status: Number(m[1]), headers, body, json, text: body, raw: c.data,
    heads: (c.data.match(/HTTP\/1\.[01] \d{3} /g) || []).length };
}

function head(method, route, extra = []) {
  return [`${method} ${route} HTTP/1.1`, 'Host: localhost', ...extra, '', ''].join('\r\n');
}

function waitAnswer(c, timeout = 2000) {
  return h.waitFor(() => response(c) || (c.closed ? { status: 0, closed: true, raw: c.data } : null),
    { timeout, what: 'an answer' });
}

test('a 10 GB Content-Length is refused with 413 at once, without reading the body', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  // (With Transfer-Encoding too, the framing is ambiguous: 400 before any size check, in
  // 25-smuggling.test.js.)
  for (const extra of [['Content-Length: 10737418240'], ['Content-Length: 1025'],
    ['Content-Length: 10737418240', 'Content-Length: 10737418240']]) {
    const c = connect(d);
    await c.ready;
    c.s.write(head('POST', CHAT, ['Content-Type: application/json', ...extra]));
    const t0 = Date.now();
    const r = await waitAnswer(c);
    assert.ok(Date.now() - t0 < 1000, 'answered before any body byte');
    h.assertError(r, 413, /larger than 1024 bytes/);
    assert.equal(r.json.error.code, 'body_too_large');
    assert.equal(r.heads, 1);
    c.s.destroy();
  }
  await d.waitLog(/status=413 code=body_too_large/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="size"\} 3\b/);
  await d.stop();
});

const endless = {};

test('an endless chunked body is cut: connection closed, memory bounded, no backend', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const before = rssKb(d);
  let peak = before;
  const c = connect(d);
  await c.ready;
  c.s.write(head('POST', CHAT, ['Content-Type: application/json', 'Transfer-Encoding: chunked']));
  const chunk = Buffer.concat([Buffer.from(`${MB.toString(16)}\r\n`), Buffer.alloc(MB, 0x20), Buffer.from('\r\n')]);
  c.s.write('5\r\n{"mod\r\n');
  let sent = 0;
  const deadline = Date.now() + 8000;
  while (!c.closed && Date.now() < deadline && !response(c)) {
    if (!c.s.write(chunk)) {
      await new Promise((resolve) => { c.s.once('drain', resolve); c.s.once('close', resolve); });
    }
    sent += MB;
    if (sent % (16 * MB) === 0) peak = Math.max(peak, rssKb(d));
  }
  await h.waitFor(() => c.closed, { timeout: 3000, what: 'the daemon to close the connection' });
  peak = Math.max(peak, rssKb(d));
  endless.sent = sent;
  endless.response = response(c);
  assert.ok(sent < 512 * MB, `daemon read ${sent / MB} MB before cutting`);
  assert.ok(peak - before < 64 * 1024, `RSS grew by ${(peak - before) / 1024} MB`);
  await d.waitLog(/status=413 code=body_too_large/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('an endless chunked body: the client is told 413 as soon as it passes the limit', () => {
  assert.ok(endless.response, `no HTTP answer received after sending ${endless.sent / MB} MB`);
  h.assertError(endless.response, 413, /larger than 1024 bytes/);
  assert.equal(endless.response.headers.connection, 'close');
  assert.equal(endless.response.heads, 1);
  assert.ok(endless.sent < 64 * MB, `answered only after ${endless.sent / MB} MB`);
});

// Sends an endless chunked body with Node's own http client; resolves with what it saw.
function nodeEndless(d, route, headers = { 'Content-Type': 'application/json' }) {
  const http = require('node:http');
  const i = d.addr.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = http.request({ host: d.addr.slice(0, i), port: Number(d.addr.slice(i + 1)), method: 'POST',
      path: route, headers });
    let sent = 0;
    let done = false;
    let answered = false; // as a client does: an answer stops the upload
    const finish = (v) => { if (!done) { done = true; resolve({ ...v, sent }); req.destroy(); } };
    req.on('response', (res) => {
      let body = '';
      answered = true;
      res.on('data', (b) => { body += b; });
      res.on('end', () => finish({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', (e) => finish({ error: e.code }));
    });
    // Once answered, the server closing on the rest of the upload (EPIPE) is expected.
    req.on('error', (e) => { if (!answered) finish({ error: e.code }); });
    const chunk = Buffer.alloc(MB, 0x20);
    (function pump() {
      while (!done && !answered && sent < 256 * MB) {
        sent += MB;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
    }());
  });
}

test('an endless or oversized body: curl and Node\'s http client both read the 413', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  for (const route of [CHAT, '/health']) {
    const r = await nodeEndless(d, route);
    assert.equal(r.status, 413, `node, ${route}: ${JSON.stringify(r).slice(0, 200)}`);
    assert.equal(JSON.parse(r.body).error.code, 'body_too_large');
    // (How much Node writes before it reads the answer is up to Node: the daemon keeps reading
    // and dropping for a while, as nginx's lingering close does, so the answer is not lost.)
  }
  // curl stops sending when an error answer arrives mid-upload ("HTTP error before end of send").
  const big = `${fs.mkdtempSync('/tmp/mm-22-')}/body`;
  fs.writeFileSync(big, Buffer.alloc(48 * MB, 0x20));
  for (const extra of [['-H', 'Transfer-Encoding: chunked'], []]) {
    const r = await h.curl(['-H', 'Content-Type: application/json', ...extra, '--data-binary', `@${big}`,
      '-w', '\n%{http_code}', `${d.url}${CHAT}`]);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.at(-1), '413', `curl ${extra.join(' ')}: ${r.stdout.slice(0, 200)} ${r.stderr}`);
    assert.equal(JSON.parse(lines[0]).error.code, 'body_too_large');
  }
  fs.rmSync(big.replace(/\/body$/, ''), { recursive: true });
  assert.equal(await d.waitLogCount(/status=413 code=body_too_large msg=\S.* ip=127\.0\.0\.1/, 4), 4);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});

test('a body on a route that takes none (POST /health, no key needed) is not read forever', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const c = connect(d);
  await c.ready;
  c.s.write(head('POST', '/health', ['Content-Length: 10737418240']));
  // A fair server answers on the head alone; only if it does not, the body starts flowing.
  await h.waitFor(() => response(c) || c.closed, { timeout: 300, what: 'an early answer' }).catch(() => {});
  const stop = Date.now() + 1200;
  const chunk = Buffer.alloc(MB, 0x61);
  while (!c.closed && !response(c) && Date.now() < stop) {
    if (!c.s.write(chunk)) await new Promise((resolve) => { c.s.once('drain', resolve); c.s.once('close', resolve); setTimeout(resolve, 100); });
  }
  const r = response(c);
  c.s.destroy();
  await d.stop();
  assert.ok(r, 'no answer to a 10 GB body on /health after 1.5 s of sending');
  assert.ok(r.status === 413 || r.status === 405 || r.status === 400, `status ${r.status}`);
});

test('100 kB of headers → 431 and the connection closed; a 20 kB URL → 414', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  for (const extra of [[`X-Big: ${'a'.repeat(100000)}`],
    Array.from({ length: 3000 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}`)]) {
    const c = connect(d);
    await c.ready;
    c.s.write(head('GET', '/v1/models', extra));
    const r = await waitAnswer(c);
    // libmicrohttpd answers this one itself (HTML body); the status and the close are what count.
    assert.equal(r.status, 431, r.raw && r.raw.slice(0, 200));
    await h.waitFor(() => c.closed, { timeout: 2000, what: 'close after 431' });
  }
  const c = connect(d);
  await c.ready;
  c.s.write(head('GET', `/v1/models?q=${'x'.repeat(20000)}`));
  const r = await waitAnswer(c);
  h.assertError(r, 414, /longer than 8192 bytes/);
  assert.equal(r.json.error.code, 'uri_too_long');
  await h.waitFor(() => c.closed, { timeout: 2000, what: 'close after 414' });
  const long = await h.post(`${d.url}${CHAT}?${'y'.repeat(9000)}`, { model: 'm', messages: [] });
  h.assertError(long, 414);
  await d.waitLog(/status=414 code=uri_too_long/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('a head past maxHeaderBytes or maxUrlBytes but within MHD\'s memory gets our JSON 431/414, even at the edge', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  // Connection memory is maxHeaderBytes + 4 kB (HTTP_POOL_SLACK): a head near 20 kB leaves MHD
  // no room for an answer's head of its own, so ours goes out on the socket.
  for (const [what, req, status, code] of [
    ['18 kB header', head('GET', '/v1/models', [`X-Big: ${'a'.repeat(18000)}`]), 431, 'headers_too_large'],
    ['19.5 kB header', head('GET', '/v1/models', [`X-Big: ${'a'.repeat(19500)}`]), 431, 'headers_too_large'],
    ['40 headers of 420 bytes', head('GET', '/v1/models', Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'b'.repeat(420)}`)), 431, 'headers_too_large'],
    ['19.5 kB URL', head('GET', `/v1/models?q=${'x'.repeat(19500)}`), 414, 'uri_too_long'],
  ]) {
    const c = connect(d);
    await c.ready;
    c.s.write(req);
    const r = await waitAnswer(c);
    assert.ok(r.json, `${what}: ${r.raw && r.raw.slice(0, 120)}`);
    h.assertError(r, status);
    assert.equal(r.json.error.code, code, what);
    assert.equal(r.heads, 1, what);
    assert.equal(r.headers.connection, 'close', what);
    await h.waitFor(() => c.closed, { timeout: 2000, what: `close after ${what}` });
  }
  await d.waitLog(/status=431 code=headers_too_large msg="request head is larger than 16384 bytes" ip=127\.0\.0\.1/);
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="size"\} 4\b/);
  await d.stop();
});

const mhdMade = [
  ['100 kB header', head('GET', '/v1/models', [`X-Big: ${'a'.repeat(100000)}`]), 431],
  ['Content-Length: -1', head('POST', CHAT, ['Content-Length: -1']), 400],
  ['Content-Length: 10^23', head('POST', CHAT, ['Content-Length: 99999999999999999999999']), 413],
  ['100 kB URL', head('GET', `/v1/models?q=${'x'.repeat(100000)}`), 414],
];
const mhdSeen = [];

test('refusals libmicrohttpd makes itself have the right status, are logged once with id and address, and counted', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  for (const [what, req, status] of mhdMade) {
    const c = connect(d);
    await c.ready;
    c.s.write(req);
    const r = await waitAnswer(c);
    await h.waitFor(() => c.closed, { timeout: 2000, what: 'close' }).catch(() => {});
    c.s.destroy();
    mhdSeen.push([what, r]);
    assert.equal(r.status, status, what);
  }
  await d.waitLog(/status=414 code=uri_too_long .* by=libmicrohttpd/);
  assert.equal(d.logCount(/info http req=\S+ status=4\d\d code=\S+ msg=".*" ip=127\.0\.0\.1 .*by=libmicrohttpd/), 4);
  for (const [, , status] of mhdMade) {
    assert.equal(d.logCount(new RegExp(`status=${status} .*by=libmicrohttpd`)), 1, `${status} logged once`);
  }
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="size"\} 3\b/);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="malformed"\} 1\b/);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});

test('refusals libmicrohttpd makes itself are well-formed and JSON', {
  todo: 'libmicrohttpd 0.9.75 limit: these answers are made inside MHD before any callback of ours sees the '
    + 'request (a head larger than the connection memory, a Content-Length it cannot parse or hold), with its '
    + 'compile-time HTML bodies; for the Content-Length ones its parse_connection_headers queues the error and '
    + 'then goes on to build the response head a second time (fixed upstream after 0.9.75). Making the 100 kB '
    + 'head reach us would need a ~128 kB pool, which MHD zeroes after every request: ~+96 MB resident per '
    + '1000 keep-alive connections.',
}, () => {
  const problems = [];
  for (const [what, r] of mhdSeen) {
    if (r.heads !== 1) problems.push(`${what}: ${r.heads} status lines in one answer`);
    if (!r.json || !r.json.error) problems.push(`${what}: not an OpenAI error body`);
  }
  assert.deepEqual(problems, []);
});

test('two different Content-Length headers are refused with 400 (RFC 9112 §6.3)', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const c = connect(d);
  await c.ready;
  c.s.write(head('POST', CHAT, ['Content-Type: application/json', 'Content-Length: 5', 'Content-Length: 10737418240']));
  const r = await waitAnswer(c, 500).catch(() => null);
  c.s.destroy();
  await d.stop();
  assert.ok(r && r.status === 400, `answer: ${r ? r.status : 'none within 0.5 s'}`);
});

test('JSON nested 1000 levels deep → 400 mentioning nesting, no backend', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port, '  maxJsonBodyBytes: 1048576\n  maxJsonDepth: 64').replace('  maxJsonBodyBytes: 1024\n', '') });
  const n = 1000;
  for (const body of [
    `{"model":"m","x":${'['.repeat(n)}${']'.repeat(n)}}`,
    `{"x":${'{"a":'.repeat(n)}1${'}'.repeat(n)},"model":"m"}`,
    `${'['.repeat(n)}${']'.repeat(n)}`,
    `{"model":"m","x":${'['.repeat(100000)}`, // unterminated, far deeper than any stack
  ]) {
    const r = await h.post(`${d.url}${CHAT}`, body);
    h.assertError(r, 400, /nest/i);
    assert.equal(r.json.error.type, 'invalid_request_error');
  }
  await d.waitLog(/status=400 code=invalid_request msg="request body nests deeper than 64 levels"/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('slowloris: half a request head gets 408 after headerTimeoutSeconds, a stalled body 408 after bodyIdleTimeoutSeconds, an idle connection a quiet close', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const half = connect(d);
  const idle = connect(d);
  const body = connect(d);
  await Promise.all([half.ready, idle.ready, body.ready]);
  half.s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Ty');
  body.s.write(head('POST', CHAT, ['Content-Type: application/json', 'Content-Length: 100']) + '{"model":');
  const t0 = Date.now();
  await h.waitFor(() => half.closed && idle.closed && body.closed, { timeout: 3500, what: 'the daemon to close all three' });
  for (const [name, c] of [['half head', half], ['no bytes', idle], ['stalled body', body]]) {
    const ms = c.closedAt - t0;
    assert.ok(ms >= 700 && ms < 3000, `${name} closed after ${ms} ms`);
    // Nothing was answered that looked like success.
    assert.doesNotMatch(c.data, /HTTP\/1\.1 2\d\d/);
  }
  for (const [c, re] of [[half, /request head not complete in 1 s/], [body, /no request body byte in 1 s/]]) {
    const r = response(c);
    h.assertError(r, 408, re);
    assert.equal(r.json.error.code, 'request_timeout');
    assert.equal(r.headers.connection, 'close');
    assert.equal(r.heads, 1);
  }
  assert.equal(idle.data, '', 'an idle connection is closed without an answer');
  assert.equal(d.logCount(/info http req=\S+ status=408 code=request_timeout msg="request head not complete in 1 s" ip=127\.0\.0\.1/), 1);
  assert.equal(d.logCount(/info http req=\S+ status=408 code=request_timeout msg="no request body byte in 1 s" ip=127\.0\.0\.1/), 1);
  assert.equal(await d.waitLogCount(/access .*status=408/, 2), 2);
  assert.equal(d.logCount(/msg=spawned/), 0);
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="timeout"\} 2\b/);
  // The daemon still serves.
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});

test('slowloris: a head trickled one header at a time is still cut after headerTimeoutSeconds', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const c = connect(d);
  await c.ready;
  c.s.write('GET /v1/models HTTP/1.1\r\nHost: localhost\r\n');
  let i = 0;
  const timer = setInterval(() => { if (!c.closed) c.s.write(`X-Slow-${i++}: a\r\n`); }, 300);
  try {
    await h.waitFor(() => c.closed, { timeout: 2800, what: 'the daemon to cut a trickled head' });
  } finally {
    clearInterval(timer);
    c.s.destroy();
  }
  assert.ok(c.closedAt - c.t0 < 2800);
  h.assertError(response(c), 408, /request head not complete/);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});
