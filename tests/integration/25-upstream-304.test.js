// Review findings on the upstream paths (h-review): each test is one bug, failing until fixed.
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
// RFC 9110 8.6: a 304 may carry the Content-Length a 200 would have had; it never has a body.
// upstream ends the exchange at the head (UP_F_NONE; curl too) but reports content_length, and
// http.c's on_up_head sets up a "whole" buffer of that size for it, which never fills: on_up_done
// then finds phase PH_WAIT_UPSTREAM and answers 502 "no response". Both the direct path and the
// curl path.
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
