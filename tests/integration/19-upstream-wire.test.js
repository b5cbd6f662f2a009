// The upstream direct path (our own HTTP/1.1 client, for http:// backends at an IP address)
// against a scripted backend that writes exact bytes: framing, connection reuse, the
// keep-alive race, malformed answers, early answers, and the curl path beside it.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const net = require('node:net');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

// A scripted backend on 127.0.0.1. Each request (head, then Content-Length body) goes to
// onRequest(req, sock); onHead(req, sock), when given, sees the head first and takes the socket
// over by returning true. b.conns counts the connections accepted.
async function rawBackend(t, onRequest, { onHead } = {}) {
  const b = { conns: [], reqs: [] };
  b.server = net.createServer((sock) => {
    const conn = b.conns.length;
    b.conns.push(sock);
    sock.setNoDelay(true);
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let req = null;
    let parts = [];
    let got = 0;
    let nth = 0;
    let taken = false;
    sock.on('data', (chunk) => {
      if (taken) return;
      if (req) {
        parts.push(chunk);
        got += chunk.length;
      } else {
        buf = Buffer.concat([buf, chunk]);
      }
      for (;;) {
        if (!req) {
          const e = buf.indexOf('\r\n\r\n');
          if (e < 0) return;
          const head = buf.subarray(0, e).toString('latin1');
          const [method, target] = head.split(' ');
          const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
          req = { conn, nth: nth++, head, method, target, len: cl ? Number(cl[1]) : 0 };
          parts = [buf.subarray(e + 4)];
          got = parts[0].length;
          if (onHead && onHead(req, sock)) {
            taken = true;
            return;
          }
        }
        if (got < req.len) return;
        const all = Buffer.concat(parts);
        req.body = all.subarray(0, req.len);
        buf = all.subarray(req.len);
        const r = req;
        req = null;
        b.reqs.push(r);
        onRequest(r, sock);
      }
    });
  });
  await new Promise((resolve) => b.server.listen(0, '127.0.0.1', resolve));
  b.port = b.server.address().port;
  t.after(() => {
    for (const s of b.conns) s.destroy();
    b.server.close();
  });
  return b;
}

function config(models) {
  return 'models:\n' + Object.entries(models).map(([name, proxy]) =>
    `  ${name}:\n    cmd: /bin/sleep 3600\n    proxy: ${proxy}\n    checkEndpoint: none\n`).join('');
}

async function daemonFor(t, b) {
  return h.startDaemon(t, { config: config({ m: `http://127.0.0.1:${b.port}` }) });
}

// A response with a Content-Length, as bytes.
function resp(body, extra = '', status = '200 OK') {
  return `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

// Every request is bounded: an answer that never comes fails the test instead of hanging it.
async function call(d, path, { method = 'POST', body, headers = {}, ms = 8000 } = {}) {
  const res = await fetch(`${d.url}${path}`, { method, headers, body, signal: AbortSignal.timeout(ms * h.SLOW) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

function chat(d, extra = {}) {
  return call(d, CHAT, { body: JSON.stringify({ model: 'm', messages: [], ...extra }),
    headers: { 'Content-Type': 'application/json' } });
}

// Warn and error lines in the log that none of `allowed` explains.
function assertLogClean(d, allowed = []) {
  const bad = d.stderr.split('\n').filter((l) => /^\S+ (warn|error) /.test(l) &&
    !allowed.some((re) => re.test(l)));
  assert.deepEqual(bad, [], 'unexpected warn/error log lines');
}

const FAILED_502 = /warn http req=\S+ status=502 code=backend_unavailable msg="model m: backend request failed: /;

function multipart(file) {
  const B = 'wireboundary7';
  return {
    type: `multipart/form-data; boundary=${B}`,
    body: Buffer.concat([
      Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n--${B}\r\n` +
        'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'),
      file, Buffer.from(`\r\n--${B}--\r\n`)]),
  };
}

test('Content-Length answers: exact bytes and headers, and the second request reuses the connection', async (t) => {
  const body = '{"answer":"yes"}\n';
  const b = await rawBackend(t, (req, sock) =>
    sock.write(resp(body, 'X-Backend: one\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n')));
  const d = await daemonFor(t, b);
  const sent = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  for (let i = 0; i < 2; i++) {
    const r = await call(d, CHAT, { body: sent, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, body);
    assert.equal(r.headers.get('x-backend'), 'one');
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('content-length'), String(body.length));
    assert.equal(r.headers.get('keep-alive'), null, 'hop-by-hop fields stay with the backend');
  }
  assert.equal(b.conns.length, 1, 'one backend connection for two sequential requests');
  assert.equal(b.reqs.length, 2);
  for (const q of b.reqs) {
    assert.match(q.head, new RegExp(`^POST /v1/chat/completions HTTP/1\\.1\\r\\nHost: 127\\.0\\.0\\.1:${b.port}\\r\\n`));
    assert.match(q.head, new RegExp(`\\r\\nContent-Length: ${Buffer.byteLength(sent)}$`));
    assert.equal(q.body.toString(), sent);
  }
  assertLogClean(d);
  await d.stop();
});

test('chunked answers: extensions, trailers, bare-LF framing and a trickle all give the exact body', async (t) => {
  const scripts = [
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n7 ; x="y" ;z\r\n, world\r\n0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n',
    'HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n5\nhello\n7\n, world\n0\n\n',
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n' +
      'A\r\nhello, wor\r\n2;e=1\r\nld\r\n0\r\nX-T: 1\r\n\r\n',
  ];
  const b = await rawBackend(t, async (req, sock) => {
    const s = scripts[b.reqs.length - 1];
    if (b.reqs.length < 3) {
      sock.write(s);
      return;
    }
    // One byte at a time: every state of the decoder sees its input split.
    for (const c of s) {
      sock.write(c);
      await h.sleep(1);
    }
  });
  const d = await daemonFor(t, b);
  for (let i = 0; i < scripts.length; i++) {
    const r = await chat(d);
    assert.equal(r.status, 200, `script ${i}: ${r.text}`);
    assert.equal(r.text, 'hello, world', `script ${i}`);
    assert.equal(r.headers.get('content-type'), 'text/plain');
    assert.equal(r.headers.get('x-trailer'), null, 'trailers are not turned into headers');
  }
  assert.equal(b.conns.length, 1, 'each chunked body ended exactly where it should: the connection stayed usable');
  assertLogClean(d);
  await d.stop();
});

test('a body until close (no length, no chunks) arrives whole; the next request opens a new connection', async (t) => {
  const big = 'x'.repeat(100000) + 'end';
  const b = await rawBackend(t, (req, sock) => {
    if (req.conn === 0) sock.end(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${big}`);
    else if (req.conn === 1) sock.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhttp0');
    else sock.write(resp('{}'));
  });
  const d = await daemonFor(t, b);
  const r = await chat(d);
  assert.equal(r.status, 200);
  assert.equal(r.text, big);
  const r2 = await chat(d);
  assert.equal(r2.status, 200);
  assert.equal(r2.text, 'http0');
  // An HTTP/1.0 answer without keep-alive closes too.
  const r3 = await chat(d);
  assert.equal(r3.status, 200);
  assert.equal(r3.text, '{}');
  assert.equal(b.conns.length, 3);
  assertLogClean(d);
  await d.stop();
});

test('Connection: close is honoured even when the backend keeps the socket open', async (t) => {
  const b = await rawBackend(t, (req, sock) =>
    sock.write(resp(`{"n":${b.reqs.length}}`, req.conn === 0 ? 'Connection: close\r\n' : '')));
  const d = await daemonFor(t, b);
  assert.equal((await chat(d)).text, '{"n":1}');
  // The daemon closes its side: the backend sees the end of that connection.
  await h.waitFor(() => b.conns[0].readableEnded || b.conns[0].destroyed, { what: 'the daemon to close connection 0' });
  const r = await chat(d);
  assert.equal(r.status, 200);
  assert.equal(r.text, '{"n":2}');
  assert.equal(b.conns.length, 2);
  assertLogClean(d);
  await d.stop();
});

test('keep-alive race: a backend closing kept connections, at once or later, costs the client nothing', async (t) => {
  const b = await rawBackend(t, (req, sock) => {
    sock.write(resp('{"ok":true}'));
    if (req.conn === 0) sock.end(); // right after the answer, without saying Connection: close
    else setTimeout(() => sock.end(), 300);
  });
  const d = await daemonFor(t, b);
  for (let i = 0; i < 2; i++) assert.equal((await chat(d)).status, 200);
  // Connection 1 is idle in the pool when the backend closes it.
  await h.waitFor(() => b.conns[1] && b.conns[1].destroyed, { what: 'the backend to close connection 1' });
  assert.equal((await chat(d)).status, 200);
  assert.equal(b.conns.length, 3);
  assertLogClean(d);
  await d.stop();
});

// Answers with what the backend received of the request.
function echo(req, sock) {
  sock.write(resp(JSON.stringify({ target: req.target, len: req.body.length, sha: sha(req.body) })));
}

// A JSON body and a multipart upload (spooled, pulled piece by piece, rewound for a retry), each
// sent when the pool holds a connection the backend is about to drop.
async function retried(b, d, size) {
  assert.equal((await chat(d)).status, 200); // connection 0, now kept
  const json = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'y'.repeat(size) }] });
  const r = await call(d, CHAT, { body: json, headers: { 'Content-Type': 'application/json' }, ms: 5000 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { target: CHAT, len: Buffer.byteLength(json), sha: sha(json) });
  assert.equal(b.conns.length, 2);
  const mp = multipart(crypto.randomBytes(size));
  const u = await call(d, '/v1/audio/transcriptions', { body: mp.body, headers: { 'Content-Type': mp.type }, ms: 5000 });
  assert.equal(u.status, 200, u.text);
  assert.deepEqual(u.json, { target: '/v1/audio/transcriptions', len: mp.body.length, sha: sha(mp.body) });
  assert.equal(b.conns.length, 3);
  assertLogClean(d);
  await d.stop();
}

test('keep-alive race: a reused connection reset while the body goes out is retried once, with the whole body', async (t) => {
  // The first request on every reused connection: its head is read, the rest left unread
  // (the daemon's sending stalls), then the connection is reset.
  const b = await rawBackend(t, echo, {
    onHead: (req, sock) => {
      if (req.nth !== 1) return false;
      sock.pause();
      setTimeout(() => sock.destroy(), 50);
      return true;
    },
  });
  const d = await daemonFor(t, b);
  await retried(b, d, 12 * 1024 * 1024); // more than the socket buffers hold
});

test('keep-alive race: a reused connection closed after taking the whole request is retried once, with the whole body', async (t) => {
  // The first request on every reused connection is read whole, then the socket is closed.
  const b = await rawBackend(t, (req, sock) => (req.nth === 1 ? sock.destroy() : echo(req, sock)));
  const d = await daemonFor(t, b);
  await retried(b, d, 300000);
  assert.deepEqual(b.reqs.map((q) => [q.conn, q.nth]), [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]]);
});

test('malformed answers: 502 naming the problem, one log line each, and the daemon serves on', async (t) => {
  const pad = Array.from({ length: 800 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(80)}\r\n`).join('');
  const cases = [
    ['ICY 200 OK\r\nContent-Length: 2\r\n\r\n{}', /bad status line/],
    ['HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n{}', /bad status line/],
    ['HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 2\r\n\r\n{}', /bad header line/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', /conflicting Content-Length values/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 2, 2x\r\n\r\n{}', /bad Content-Length/],
    [`HTTP/1.1 200 OK\r\n${pad}`, /response head too large/], // no end in sight, connection held open
    [`HTTP/1.1 200 OK\r\n${pad}\r\n{}`, /response head too large/],
    ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n', /101 to a request without Upgrade/],
  ];
  const b = await rawBackend(t, (req, sock) => {
    const i = b.reqs.length - 1;
    sock.write(i < cases.length ? cases[i][0] : resp('{"fine":1}'));
  });
  const d = await daemonFor(t, b);
  for (const [, re] of cases) {
    const r = await chat(d);
    h.assertError(r, 502, /^model m: backend request failed: malformed response from the backend: /);
    assert.match(r.json.error.message, re);
    assert.equal(r.json.error.code, 'backend_unavailable');
  }
  await d.waitLog(/status=502 code=backend_unavailable msg="model m: backend request failed: malformed response from the backend: 101/);
  assert.equal(d.logCount(FAILED_502), cases.length);
  const ok = await chat(d);
  assert.equal(ok.status, 200);
  assert.equal(ok.text, '{"fine":1}');
  assertLogClean(d, [FAILED_502]);
  await d.stop();
});

test('a bad chunk: a plain answer is cut off (never complete), an event stream ends with an error event naming it', async (t) => {
  const b = await rawBackend(t, (req, sock) => {
    const sse = JSON.parse(req.body).stream;
    sock.write(`HTTP/1.1 200 OK\r\nContent-Type: ${sse ? 'text/event-stream' : 'text/plain'}\r\n` +
      'Transfer-Encoding: chunked\r\n\r\n' + (sse ? 'f\r\ndata: {"a":1}\n\n\r\n' : '') + 'zz\r\nnot a chunk\r\n');
  });
  const d = await daemonFor(t, b);
  const plain = await h.streamRaw(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  // The head went out before the body was known to be broken: the answer is cut, never complete.
  assert.equal(plain.status, 200);
  assert.notEqual(plain.how, 'end', `a broken answer must not look complete: ${JSON.stringify(plain)}`);
  assert.equal(plain.text, '');
  const s = await h.streamRaw(`${d.url}${CHAT}`, { model: 'm', stream: true, messages: [] });
  assert.equal(s.status, 200);
  assert.ok(s.text.startsWith('data: {"a":1}\n\ndata: {"error":'), JSON.stringify(s.text));
  const err = JSON.parse(s.text.slice('data: {"a":1}\n\ndata: '.length)).error;
  assert.equal(err.code, 'backend_stream_error');
  assert.match(err.message, /^model m: the backend stopped in the middle of the response \(malformed response from the backend: bad chunk size\)$/);
  assert.ok(s.text.endsWith('}\n\n'));
  const EARLY = /warn http req=\S+ model=m msg="backend closed the response early" reason="malformed response from the backend: bad chunk size"/;
  await h.waitFor(() => d.logCount(EARLY) === 2, { what: 'two "closed the response early" lines' });
  assertLogClean(d, [EARLY, FAILED_502]);
  await d.stop();
});

test('a backend closing before its Content-Length is reached: 502 when nothing went out, else a cut answer', async (t) => {
  const b = await rawBackend(t, (req, sock) => {
    const i = b.reqs.length;
    if (i === 1) sock.end(resp('{}').replace('Content-Length: 2', 'Content-Length: 100'));
    else if (i === 2) sock.end(`HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n${'z'.repeat(100000)}`);
    else if (i === 3) {
      sock.end('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n' +
        'f\r\ndata: {"a":1}\n\n\r\n9\r\ndata: {"b\r\n');
    } else sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/js'); // inside the head
  });
  const d = await daemonFor(t, b);
  const small = await chat(d);
  h.assertError(small, 502, /^model m: backend request failed: the backend closed the connection before the end of the response$/);

  const big = await h.streamRaw(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(big.status, 200);
  assert.notEqual(big.how, 'end', 'a cut answer must not end cleanly');
  assert.ok(big.text.length <= 100000 && /^z*$/.test(big.text), `${big.text.length} bytes`);

  const s = await h.streamRaw(`${d.url}${CHAT}`, { model: 'm', stream: true, messages: [] });
  assert.equal(s.status, 200);
  const pre = 'data: {"a":1}\n\ndata: {"b\n\ndata: ';
  assert.ok(s.text.startsWith(pre), JSON.stringify(s.text));
  const err = JSON.parse(s.text.slice(pre.length)).error;
  assert.equal(err.code, 'backend_stream_error');
  assert.match(err.message, /the backend stopped in the middle of the response \(the backend closed the connection before the end of the response\)/);
  assert.doesNotMatch(s.text, /\[DONE\]/);

  const head = await chat(d);
  h.assertError(head, 502, /the backend closed the connection in the middle of the response head/);
  const EARLY = /warn http req=\S+ model=m msg="backend closed the response early" reason="the backend closed the connection before the end of the response"/;
  await h.waitFor(() => d.logCount(EARLY) === 2, { what: 'two "closed the response early" lines' });
  assertLogClean(d, [EARLY, FAILED_502]);
  await d.stop();
});

test('1xx interim answers pass as the final one; 204 and HEAD end without a body', async (t) => {
  const b = await rawBackend(t, async (req, sock) => {
    const i = b.reqs.length;
    if (i === 1) sock.write(`HTTP/1.1 100 Continue\r\n\r\n${resp('{"after":100}')}`);
    else if (i === 2) {
      sock.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
      await h.sleep(50);
      sock.write(resp('{"after":103}'));
    } else if (i === 3) sock.write('HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n');
    else if (i === 4) sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12345\r\nETag: "e1"\r\n\r\n');
    else sock.write(resp(`{"last":"${req.method} ${req.target}"}`));
  });
  const d = await daemonFor(t, b);
  const r1 = await chat(d);
  assert.equal(r1.status, 200);
  assert.equal(r1.text, '{"after":100}');
  const r2 = await chat(d);
  assert.equal(r2.status, 200);
  assert.equal(r2.text, '{"after":103}');
  assert.equal(r2.headers.get('link'), null, 'the interim head\'s fields are not the final head\'s');
  const r3 = await call(d, '/upstream/m/nothing', { method: 'DELETE', ms: 3000 });
  assert.equal(r3.status, 204);
  assert.equal(r3.text, '');
  assert.equal(r3.headers.get('x-empty'), 'yes');
  const r4 = await call(d, '/upstream/m/file.bin', { method: 'HEAD', ms: 3000 });
  assert.equal(r4.status, 200);
  assert.equal(r4.headers.get('etag'), '"e1"');
  assert.equal(b.reqs[3].method, 'HEAD');
  // Had the daemon waited for a body, this answer would have been taken for one.
  const r5 = await call(d, '/upstream/m/after', { method: 'GET', ms: 3000 });
  assert.equal(r5.text, '{"last":"GET /after"}');
  assert.equal(b.conns.length, 1, 'every answer ended where it should: one connection for all');
  assertLogClean(d);
  await d.stop();
});

test('an early 413 while a large body is still going out reaches the client, without a hang', async (t) => {
  const answer = '{"error":"too large for me"}';
  let seen = 0;
  const b = await rawBackend(t, () => {}, {
    onHead: (req, sock) => {
      sock.write(resp(answer, 'Connection: close\r\n', '413 Payload Too Large'));
      // Read a little more of the body, then close on the rest (a reset, with data unread).
      sock.on('data', (c) => {
        seen += c.length;
        if (seen > 256 * 1024) sock.destroy();
      });
      return true;
    },
  });
  const d = await daemonFor(t, b);
  const body = crypto.randomBytes(8 * 1024 * 1024);
  for (let i = 0; i < 2; i++) {
    seen = 0;
    const t0 = Date.now();
    const r = await call(d, '/upstream/m/upload', { body, headers: { 'Content-Type': 'application/octet-stream' }, ms: 15000 });
    assert.ok(Date.now() - t0 < 10000 * h.SLOW, `took ${Date.now() - t0} ms`);
    // Even when the reset lands while the body is still going out, the answer already in the
    // socket is read and passed on.
    assert.equal(r.status, 413, r.text);
    assert.equal(r.text, answer);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(b.conns.length, i + 1, 'a connection the backend closed is never reused');
  }
  assertLogClean(d, [FAILED_502]);
  await d.stop();
});

test('the curl path (a host name) still works beside the direct one, streaming or not', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  c:\n    cmd: ${h.FAKE} --port \${PORT} --model c --chunks 3\n` +
      '    proxy: http://localhost:${PORT}\n',
  });
  const r = await call(d, CHAT, { body: JSON.stringify({ model: 'c', messages: [{ role: 'user', content: 'hi' }] }),
    headers: { 'Content-Type': 'application/json' }, ms: 15000 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'Hello from the modelmux demo backend.');
  assert.equal(r.json.echo.headers.host, `localhost:${port}`, 'the request went through curl, by name');
  const s = await h.streamRaw(`${d.url}${CHAT}`, { model: 'c', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(s.status, 200);
  assert.equal(s.how, 'end');
  const events = s.text.split('\n\n').filter(Boolean);
  assert.equal(events[events.length - 1], 'data: [DONE]');
  const text = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0].delta.content || '').join('');
  assert.equal(text, 'Hello from the');
  assertLogClean(d);
  await d.stop();
});

test('a refused connection: 502 "cannot connect" at once, and again on the next request', async (t) => {
  // A port just bound and released: nothing listens on it.
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = srv.address().port;
  await new Promise((resolve) => srv.close(resolve));
  const d = await h.startDaemon(t, { config: config({ m: `http://127.0.0.1:${port}` }) });
  for (let i = 0; i < 2; i++) {
    const t0 = Date.now();
    const r = await chat(d);
    h.assertError(r, 502, /^model m: backend request failed: cannot connect to the backend: Connection refused$/);
    assert.ok(Date.now() - t0 < 2000 * h.SLOW, `answered after ${Date.now() - t0} ms`);
  }
  await h.waitFor(() => d.logCount(FAILED_502) === 2, { what: 'two 502 log lines' });
  assertLogClean(d, [FAILED_502]);
  await d.stop();
});

// RFC 9110 8.6: a 304 may carry the Content-Length a 200 would have had; it never has a body.
// Nothing waits for one, on either path.
for (const [path, host] of [['direct', '127.0.0.1'], ['curl', 'localhost']]) {
  test(`a 304 with a Content-Length reaches the client as a 304 (${path} path)`, async (t) => {
    const b = await rawBackend(t, (req, sock) => {
      if (b.reqs.length === 1) sock.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 20\r\n\r\n');
      else sock.write(resp('{"after":304}'));
    });
    const d = await h.startDaemon(t, { config: config({ m: `http://${host}:${b.port}` }) });
    const r = await call(d, '/upstream/m/index.html', { method: 'GET', headers: { 'If-None-Match': '"v1"' }, ms: 3000 });
    assert.equal(r.status, 304, r.text);
    assert.equal(r.headers.get('etag'), '"v1"');
    const r2 = await call(d, '/upstream/m/after', { method: 'GET', ms: 3000 });
    assert.equal(r2.text, '{"after":304}');
    assertLogClean(d);
    await d.stop();
  });
}
