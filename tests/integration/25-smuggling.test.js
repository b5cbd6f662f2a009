// Request smuggling and header injection: every attack goes on a raw socket and is refused
// before anything starts (400/501 with an OpenAI error, the connection closed); the backend
// never sees the injected header or the hidden request.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

// Sends raw bytes and reads until the server closes (or a deadline), returning what came.
function raw(d, bytes, { localAddress } = {}) {
  const port = Number(d.addr.split(':').pop());
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    const chunks = [];
    const timer = setTimeout(() => { s.destroy(); resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: false }); }, 3000 * h.SLOW);
    s.on('data', (b) => chunks.push(b));
    s.on('error', reject);
    s.on('close', () => { clearTimeout(timer); resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: true }); });
    s.write(bytes);
  });
}

function answer(r) {
  const end = r.text.indexOf('\r\n\r\n');
  const status = Number(r.text.split(' ')[1]);
  return { status, head: r.text.slice(0, end), body: r.text.slice(end + 4), closed: r.closed };
}

const BODY = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';
const SMUGGLED = 'GET /echo?SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n';

function chat(extra, body = BODY) {
  return `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

test('header injection and framing attacks are refused before anything starts', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const attacks = [
    ['a bare CR smuggling Authorization', chat('X-N: a\rAuthorization: Bearer stolen\r\n'), 400, /CR, LF, NUL/],
    ['a bare CR smuggling Content-Length: 0 and a hidden request',
      chat('X-N: a\rContent-Length: 0\r\n', BODY + SMUGGLED), 400, /CR, LF, NUL/],
    ['whitespace before the colon', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      `Transfer-Encoding : chunked\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`, 400, /not a token/],
    ['Content-Length with Transfer-Encoding', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      `Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400, /both Content-Length/],
    ['an unknown transfer coding', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      'Transfer-Encoding: xchunked\r\n\r\n', 501, /other than chunked/],
    ['a transfer coding list', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      'Transfer-Encoding: chunked, identity\r\n\r\n', 400, /list/],
    ['no Host', 'GET /v1/models HTTP/1.1\r\n\r\n', 400, /no Host/],
    ['two Hosts', 'GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, /more than one Host/],
    ['a NUL in the request target', 'GET /health\0/../../etc HTTP/1.1\r\nHost: x\r\n\r\n', 400, /NUL/],
    // obs-fold: libmicrohttpd 0.9.75 merges a continuation into the field *name*, so one of
    // token characters alone would reach a backend as a plain, renamed field.
    ['an obs-fold (space) of token characters', chat('X-Fold: v\r\n tail\r\n'), 400, /folded/],
    ['an obs-fold (tab) of token characters', chat('X-Fold: v\r\n\ttail\r\n'), 400, /folded/],
    ['an obs-fold with blanks in it', chat('X-Fold: v\r\n  two words\r\n'), 400, /folded/],
    ['an obs-fold that spells Transfer-Encoding', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      `Transfer-: chunked\r\n Encoding\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400, /folded/],
    ['an obs-fold on the last line, bare LFs', 'GET /v1/models HTTP/1.1\nHost: x\nX-Last: v\n tail\n\n', 400, /folded/],
    ['a NUL cutting a header line', chat('X-A: b\0Authorization: Bearer stolen\r\n'), 400, /NUL/],
    ['a NUL cutting the last header line', 'GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: b\0junk\r\n\r\n', 400, /NUL/],
    ['a line starting with a NUL taken for the head\'s end', 'GET /v1/models HTTP/1.1\r\nHost: x\r\n' +
      '\0X-Hidden: 1\r\n\r\n', 400, /NUL/],
  ];
  for (const [what, bytes, status, re] of attacks) {
    const t0 = Date.now();
    const a = answer(await raw(d, bytes));
    assert.equal(a.status, status, `${what}: ${a.head}`);
    const e = JSON.parse(a.body).error;
    assert.match(e.message, re, what);
    assert.equal(e.code, status === 501 ? 'not_implemented' : 'invalid_request', what);
    assert.match(a.head, /\r\nConnection: close/i, `${what}: the connection is closed`);
    assert.ok(a.closed, `${what}: closed`);
    assert.ok(Date.now() - t0 < 2000 * h.SLOW, `${what}: answered at once`);
  }
  // Nothing reached a backend: the model was never even started.
  assert.equal(d.logCount(/model=m pid=\d+ msg=ready/), 0, 'no model was started by an attack:\n' + d.tail(60));
  assert.equal(await d.waitLogCount(/code=(invalid_request|not_implemented) msg="malformed request head/, attacks.length),
    attacks.length, d.tail(40));
  // And the clean form of the same request works, without the client's credentials.
  const ok = answer(await raw(d, chat('Authorization: Bearer client-key\r\nConnection: close\r\n')));
  assert.equal(ok.status, 200);
  const echo = JSON.parse(ok.body).echo;
  assert.equal(echo.headers.authorization, undefined);
  assert.equal(echo.path, '/v1/chat/completions');
  // A clean head that comes in many small pieces (so in many reads) is laid out the same.
  const port2 = Number(d.addr.split(':').pop());
  const pieces = await new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: port2 });
    const bytes = Buffer.from(chat('X-Piece: 1\r\nX-Empty:\r\nX-Blanks:   b  \r\nConnection: close\r\n'), 'latin1');
    const chunks = [];
    let off = 0;
    s.on('data', (b) => chunks.push(b));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    const next = () => {
      if (off >= bytes.length) return;
      s.write(bytes.subarray(off, off + 7));
      off += 7;
      setTimeout(next, 2);
    };
    next();
  });
  const pa = answer({ text: pieces, closed: true });
  assert.equal(pa.status, 200, pa.head);
  assert.equal(JSON.parse(pa.body).echo.headers['x-piece'], '1');
  assert.equal(JSON.parse(pa.body).echo.headers['x-blanks'].trim(), 'b');
  await d.stop();
});

// A request through a raw socket that waits for the JSON answer; returns { status, json }.
async function rawChat(d, extra, localAddress) {
  const a = answer(await raw(d, chat(`${extra}Connection: close\r\n`), { localAddress }));
  return { status: a.status, json: JSON.parse(a.body) };
}

test('hop-by-hop headers stop here; X-Forwarded-For and Forwarded say who the client is', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const r = await rawChat(d, 'Connection: X-Secret, keep-alive\r\nX-Secret: for-the-next-hop\r\n' +
    'Keep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Kept: yes\r\n');
  assert.equal(r.status, 200);
  const hd = r.json.echo.headers;
  assert.equal(hd['x-secret'], undefined, 'named in Connection: not forwarded');
  assert.equal(hd['keep-alive'], undefined);
  assert.equal(hd['x-kept'], 'yes');
  assert.equal(hd['x-forwarded-for'], '127.0.0.1', 'a claim from an untrusted peer is replaced');
  assert.equal(hd.forwarded, 'for=127.0.0.1;proto=http');
  assert.equal(hd['x-forwarded-proto'], 'http', 'the listener\'s scheme, from modelmux');
  await d.stop();
});

test('a client\'s own X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP stop here unless it is a trusted proxy', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\ntrustedProxies: ["127.0.0.2"]\n` +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const claims = 'X-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.internal\r\nX-Real-IP: 10.0.0.1\r\n' +
    'x-forwarded-port: 443\r\nTrue-Client-IP: 10.0.0.2\r\nX-Client-IP: 10.0.0.3\r\nX-Forwarded-Ssl: on\r\n' +
    'X-Forwarded-Server: front\r\n';
  // From an untrusted peer (127.0.0.3): dropped, and modelmux states the scheme itself.
  const u = await rawChat(d, claims, '127.0.0.3');
  assert.equal(u.status, 200);
  const hu = u.json.echo.headers;
  assert.equal(hu['x-forwarded-proto'], 'http', 'the client\'s https claim is replaced');
  for (const k of ['x-forwarded-host', 'x-real-ip', 'x-forwarded-port', 'true-client-ip', 'x-client-ip',
    'x-forwarded-ssl', 'x-forwarded-server']) {
    assert.equal(hu[k], undefined, `${k} from an untrusted peer reached the backend`);
  }
  // From the trusted front proxy (127.0.0.2): kept as it states them.
  const p = await rawChat(d, claims, '127.0.0.2');
  assert.equal(p.status, 200);
  const hp = p.json.echo.headers;
  assert.equal(hp['x-forwarded-proto'], 'https', 'the front proxy\'s scheme is kept, not doubled');
  assert.equal(hp['x-forwarded-host'], 'admin.internal');
  assert.equal(hp['x-real-ip'], '10.0.0.1');
  // A trusted proxy that says nothing of the scheme gets modelmux's.
  const q = await rawChat(d, '', '127.0.0.2');
  assert.equal(q.json.echo.headers['x-forwarded-proto'], 'http');
  await d.stop();
});

test('trustedProxies: a front proxy\'s X-Forwarded-For names the client, and keys its rate limit', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\ntrustedProxies: ["127.0.0.2", "10.0.0.0/8"]\n` +
      'rateLimit:\n  perIP: {rate: 0.001, burst: 2}\n' +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const via = (client) => rawChat(d, `X-Forwarded-For: ${client}, 10.1.2.3\r\n`, '127.0.0.2');
  const a = await via('203.0.113.9');
  assert.equal(a.status, 200);
  assert.equal(a.json.echo.headers['x-forwarded-for'], '203.0.113.9, 10.1.2.3, 127.0.0.2');
  assert.equal(a.json.echo.headers.forwarded, 'for=203.0.113.9;proto=http');
  assert.equal((await via('203.0.113.9')).status, 200);
  assert.equal((await via('203.0.113.9')).status, 429, 'the forwarded client has used its burst');
  assert.equal((await via('198.51.100.4')).status, 200, 'another client behind the same proxy has its own');
  // The same header from an untrusted peer is not believed: its own address is keyed.
  const u = await rawChat(d, 'X-Forwarded-For: 192.0.2.1\r\n', '127.0.0.3');
  assert.equal(u.status, 200);
  assert.equal(u.json.echo.headers['x-forwarded-for'], '127.0.0.3');
  await d.stop();
});
