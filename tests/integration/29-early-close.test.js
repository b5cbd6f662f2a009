// Clients that leave in the middle of a request (issue 16, item 8): half a head, or a head and
// half a body, then the close, all in one go. libmicrohttpd 0.9.75 takes its short read for a
// drained socket and would never look again: the connection sat in CLOSE_WAIT holding the request
// until the 60 s idle timeout. Now the request ends as a client abort and the connection closes
// at once, which an operator sees in the access log and the connections gauge.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function config() {
  // A backend that is never reached: none of these requests gets that far. No rate limit: the
  // test opens hundreds of connections from one address.
  return `rateLimit: {perIP: {rate: 0}}
models:
  m:
    cmd: /bin/sleep 3600
    proxy: http://127.0.0.1:9
    checkEndpoint: none
`;
}

async function connections(d) {
  const m = await h.get(`${d.url}/metrics`);
  return Number(/^modelmux_http_connections (\d+)$/m.exec(m.text)[1]);
}

// Opens a connection, writes `bytes` and is gone right after (the FIN follows the bytes within
// a tick); resolves once the bytes are out.
function sendAndLeave(d, bytes) {
  const i = d.addr.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = net.connect(Number(d.addr.slice(i + 1)), d.addr.slice(0, i));
    s.on('error', () => resolve());
    s.on('connect', () => s.write(bytes, () => setImmediate(() => { s.destroy(); resolve(); })));
  });
}

test('clients gone after half a head or half a body are let go at once, their requests ended as client aborts', async (t) => {
  const d = await h.startDaemon(t, { config: config() });
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'a question that never ends' }] });
  const head = (path, id) => `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: ${id}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const shapes = {
    'half a head': (id) => head(CHAT, id).slice(0, 70),
    'head and half a JSON body': (id) => head(CHAT, id) + body.slice(0, body.length >> 1),
    'head and half an upstream body': (id) => head('/upstream/m/v1/x', id) + body.slice(0, body.length >> 1),
  };
  // The lost close was a race (the FIN read with the bytes before it): many clients at once.
  const ROUNDS = 5;
  const N = 20;
  for (let r = 0; r < ROUNDS; r++) {
    await Promise.all(Object.entries(shapes).flatMap(([what, bytes]) =>
      Array.from({ length: N }, (_, k) => sendAndLeave(d, bytes(`${what.replace(/ /g, '-')}-${r}-${k}`)))));
  }
  // Within a second nothing is left open but the connection asking (it was 60 s)...
  await h.waitFor(async () => (await connections(d)) === 1,
    { timeout: 1000, interval: 50, what: 'the connections gauge back to 1' });
  // ... and each request whose head was complete ended in the access log as a client abort.
  await d.waitLogCount(/ access req=head-and-half-an?-(JSON|upstream)-body-\d+-\d+ .* end=client_abort/, 2 * N * ROUNDS, 1000);
  await d.stop();
});

test('a client that sends a whole request and closes its side at once still gets its answer', async (t) => {
  const d = await h.startDaemon(t, { config: config() });
  const i = d.addr.lastIndexOf(':');
  const got = await new Promise((resolve) => {
    const s = net.connect(Number(d.addr.slice(i + 1)), d.addr.slice(0, i));
    let text = '';
    s.on('error', () => {});
    s.on('data', (c) => { text += c; });
    s.on('close', () => resolve(text));
    s.on('connect', () => s.end('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
  });
  assert.match(got, /^HTTP\/1\.1 200 /);
  await h.waitFor(async () => (await connections(d)) === 1, { timeout: 1000, what: 'the connections gauge back to 1' });
  await d.stop();
});
