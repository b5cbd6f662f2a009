// WebSockets on /upstream/<model>/…: the backend's own 101 reaches the client, then frames go
// both ways unchanged; the gate applies as to any request; an open socket holds its model
// (unless compat.ignoreWebsockets); closes on either side and at shutdown end the tunnel.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const h = require('./lib/harness');

// Opens a socket; resolves { ws, headers } on a 101, or { status, headers, json } on a refusal.
function wsOpen(url, { protocols = [], headers = {}, ca } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers, handshakeTimeout: 15000 * h.SLOW, ca });
    let upgrade = {};
    const inbox = [];
    const waiters = [];
    ws.on('upgrade', (res) => { upgrade = res.headers; });
    ws.on('message', (data, binary) => {
      const m = { data, binary };
      if (waiters.length) waiters.shift()(m); else inbox.push(m);
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((res) => waiters.push(res)));
    ws.on('open', () => resolve({ ws, headers: upgrade }));
    ws.on('unexpected-response', (req, res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
        req.destroy();
      });
    });
    ws.on('error', (e) => reject(e));
  });
}

// A daemon with one model, "echo", serving the fake backend's /ws.
async function echoDaemon(t) {
  const port = await h.freePorts(2);
  return h.startDaemon(t, { config: `startPort: ${port}
models:
  echo:
    cmd: ${h.FAKE} --port \${PORT}
` });
}

function wsUrl(d, p) {
  return d.url.replace(/^http/, 'ws') + p;
}

function requestLog(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('echo: text, a 1 MB binary frame, ping; the backend\'s 101 headers; clean close both ways', async (t) => {
  const port = await h.freePorts(2);
  const dir = h.tmpdir();
  const log = path.join(dir, 'requests.jsonl');
  const d = await h.startDaemon(t, { dir, config: `startPort: ${port}
models:
  echo:
    cmd: ${h.FAKE} --port \${PORT} --request-log ${log}
` });
  // The model is started on demand by the upgrade itself.
  const { ws, headers } = await wsOpen(wsUrl(d, '/upstream/echo/ws'), { protocols: ['chat.v1', 'chat.v2'] });
  assert.equal(ws.protocol, 'chat.v1');
  assert.equal(headers['access-control-allow-origin'], undefined, 'the backend\'s CORS header is dropped');
  assert.ok(headers['x-request-id'] === undefined || typeof headers['x-request-id'] === 'string');

  ws.send('hello through modelmux');
  let m = await ws.next();
  assert.equal(m.binary, false);
  assert.equal(m.data.toString(), 'hello through modelmux');

  const big = crypto.randomBytes(1 << 20);
  ws.send(big);
  m = await ws.next();
  assert.equal(m.binary, true);
  assert.ok(Buffer.compare(m.data, big) === 0, '1 MB frame comes back byte for byte');

  const pong = new Promise((res) => ws.once('pong', (p) => res(p.toString())));
  ws.ping('are-you-there');
  assert.equal(await pong, 'are-you-there');

  // The operator sees it open.
  assert.match((await h.get(`${d.url}/metrics`)).text, /^modelmux_websockets_open 1$/m);

  // Many small frames in a burst arrive in order.
  for (let i = 0; i < 200; i++) ws.send(`n${i}`);
  for (let i = 0; i < 200; i++) assert.equal((await ws.next()).data.toString(), `n${i}`);

  ws.close(1000, 'done');
  const c = await ws.closed;
  assert.equal(c.code, 1000);
  await d.waitLog(/msg="websocket closed" model="?echo"? to_backend=\d+ to_client=\d+/);
  assert.match((await h.get(`${d.url}/metrics`)).text, /^modelmux_websockets_open 0$/m);

  // What reached the backend: the upgrade itself, with our request id and no client credentials.
  const up = requestLog(log).find((r) => r.path === '/ws');
  assert.ok(up, 'the backend saw the upgrade request');
  const hk = Object.fromEntries(Object.entries(up.headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(hk.upgrade.toLowerCase(), 'websocket');
  assert.match(hk['x-request-id'], /^[0-9a-f]+$/);
  await d.stop();
});

test('backend-initiated close and a dropped backend connection both reach the client', async (t) => {
  const d = await echoDaemon(t);
  let { ws } = await wsOpen(wsUrl(d, '/upstream/echo/ws'));
  ws.send('close-me');
  let c = await ws.closed;
  assert.equal(c.code, 1000);
  assert.equal(c.reason, 'bye');

  ({ ws } = await wsOpen(wsUrl(d, '/upstream/echo/ws')));
  ws.send('bye');
  c = await ws.closed;
  assert.equal(c.code, 1006, 'no close frame: an abnormal closure');
  await d.waitLog(/msg="websocket closed".*why="closed"/);

  // The daemon still serves after both.
  ({ ws } = await wsOpen(wsUrl(d, '/upstream/echo/ws')));
  ws.send('still here');
  assert.equal((await ws.next()).data.toString(), 'still here');
  ws.close();
  await ws.closed;
  await d.stop();
});

test('the gate: no key 401, wrong origin 403, traversal 400, unknown model 404; the key never reaches the backend', async (t) => {
  const port = await h.freePorts(2);
  const dir = h.tmpdir();
  const log = path.join(dir, 'requests.jsonl');
  const d = await h.startDaemon(t, { dir, config: `startPort: ${port}
apiKeys: ["ws-key-123"]
cors:
  allowedOrigins: ["http://app.example:3000"]
models:
  echo:
    cmd: ${h.FAKE} --port \${PORT} --request-log ${log}
` });
  let r = await wsOpen(wsUrl(d, '/upstream/echo/ws'));
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'invalid_api_key');
  assert.match(r.headers['www-authenticate'], /Bearer/);

  r = await wsOpen(wsUrl(d, '/upstream/echo/ws'), { headers: { Authorization: 'Bearer nope' } });
  assert.equal(r.status, 401);

  // A page on another origin cannot ride the user's credentials (cross-site WebSocket hijacking).
  r = await wsOpen(wsUrl(d, '/upstream/echo/ws'), {
    headers: { Authorization: 'Bearer ws-key-123', Origin: 'http://evil.example' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'origin_not_allowed');

  r = await wsOpen(wsUrl(d, '/upstream/echo/a%2f..%2f..%2fsecret'), {
    headers: { Authorization: 'Bearer ws-key-123' } });
  assert.equal(r.status, 400);
  r = await wsOpen(wsUrl(d, '/upstream/nosuch/ws'), { headers: { Authorization: 'Bearer ws-key-123' } });
  assert.equal(r.status, 404);
  assert.equal(requestLog(log).length, 0, 'nothing refused reached a backend');

  const ok = await wsOpen(wsUrl(d, '/upstream/echo/ws'), {
    headers: { Authorization: 'Bearer ws-key-123', Origin: 'http://app.example:3000', Cookie: 'sid=secret' } });
  ok.ws.send('authorised');
  assert.equal((await ok.ws.next()).data.toString(), 'authorised');
  ok.ws.close();
  await ok.ws.closed;
  const up = requestLog(log).find((x) => x.path === '/ws');
  const keys = Object.keys(up.headers).map((k) => k.toLowerCase());
  assert.ok(!keys.includes('authorization') && !keys.includes('cookie'), `credentials forwarded: ${keys}`);
  assert.doesNotMatch(JSON.stringify(up.headers), /ws-key-123|secret/);
  await d.stop();
});

test('a backend that refuses the upgrade: its status, with an OpenAI error', async (t) => {
  const d = await echoDaemon(t);
  const r = await wsOpen(wsUrl(d, '/upstream/echo/no-such-path'));
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'upgrade_refused');
  assert.match(r.json.error.message, /answered 404/);
  await d.stop();
});

test('an open socket holds its model against the TTL; compat.ignoreWebsockets does not', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: `startPort: ${port}
groups:
  all:
    swap: false
    members: [held, ignored]
models:
  held:
    cmd: ${h.FAKE} --port \${PORT}
    ttl: 1
  ignored:
    cmd: ${h.FAKE} --port \${PORT}
    ttl: 1
    compat:
      ignoreWebsockets: true
` });
  const running = async () => (await h.get(`${d.url}/running`)).json.running.map((m) => m.model).sort();

  // ignoreWebsockets: the socket neither loads the model...
  let r = await wsOpen(wsUrl(d, '/upstream/ignored/ws'));
  assert.equal(r.status, 409);
  assert.equal(r.json.error.code, 'model_not_loaded');

  // ...nor keeps it: loaded by an HTTP request, it is unloaded by its TTL under an open socket.
  assert.equal((await h.get(`${d.url}/upstream/ignored/health`)).status, 200);
  const ig = await wsOpen(wsUrl(d, '/upstream/ignored/ws'));
  ig.ws.send('x');
  await ig.ws.next();

  const held = await wsOpen(wsUrl(d, '/upstream/held/ws'));
  held.ws.send('y');
  await held.ws.next();
  await d.waitLog(/model=ignored .*reason=ttl|unload.*model=ignored.*ttl|model=ignored.*ttl/, 10000);
  await ig.ws.closed; // its backend went away with the model
  await h.waitFor(async () => (await running()).join() === 'held', { what: 'only held running', timeout: 5000 });

  // The held model outlives several TTLs while its socket is open...
  const t0 = Date.now();
  await h.waitFor(() => Date.now() - t0 > 2500, { timeout: 4000, what: 'time to pass' });
  assert.deepEqual(await running(), ['held']);
  held.ws.send('still');
  assert.equal((await held.ws.next()).data.toString(), 'still');
  // ...and goes once it closes.
  held.ws.close();
  await held.ws.closed;
  await h.waitFor(async () => (await running()).length === 0, { what: 'held unloaded by ttl', timeout: 8000 });
  await d.stop();
});

test('shutdown closes open sockets at once instead of waiting out the grace', async (t) => {
  const d = await echoDaemon(t);
  const { ws } = await wsOpen(wsUrl(d, '/upstream/echo/ws'));
  ws.send('hi');
  await ws.next();
  const t0 = Date.now();
  await d.stop();
  assert.ok(Date.now() - t0 < 10000, `shutdown took ${Date.now() - t0} ms`);
  const c = await ws.closed;
  assert.ok(c.code === 1006 || c.code === 1000, `close code ${c.code}`);
  assert.match(d.stderr, /msg="websocket closed".*why="shutdown"/);
});

test('WSS: the same tunnel over the TLS listener', async (t) => {
  const dir = h.tmpdir();
  const { spawnSync } = require('node:child_process');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { dir, config: `startPort: ${port}
tls:
  cert: ${dir}/c.pem
  key: ${dir}/k.pem
models:
  echo:
    cmd: ${h.FAKE} --port \${PORT}
` });
  const { ws } = await wsOpen(`wss://${d.addr}/upstream/echo/ws`, { ca: fs.readFileSync(path.join(dir, 'c.pem')) });
  // libmicrohttpd 0.9.75 relays upgraded TLS through a tiny buffer: frames arrive whole but
  // slowly, so this stays modest (see README, WebSockets).
  const big = crypto.randomBytes(16 * 1024);
  ws.send('over tls');
  assert.equal((await ws.next()).data.toString(), 'over tls');
  ws.send(big);
  assert.ok(Buffer.compare((await ws.next()).data, big) === 0);
  ws.close(1000);
  assert.equal((await ws.closed).code, 1000);
  await d.waitLog(/msg="websocket closed"/);
  await d.stop();
});

test('a swap or an unload is not held up by an open socket: the socket is closed so the model can stop', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT}
  b:
    cmd: ${h.FAKE} --port \${PORT}
` });
  let { ws } = await wsOpen(wsUrl(d, '/upstream/a/ws'));
  ws.send('x');
  await ws.next();
  // b evicts a (one model at a time): a's socket ends instead of making b wait for ever.
  const t0 = Date.now();
  const r = await h.post(`${d.url}/v1/chat/completions`, { model: 'b', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);
  assert.ok(Date.now() - t0 < 5000, `b waited ${Date.now() - t0} ms`);
  await ws.closed;
  await d.waitLog(/msg="websocket ended: its model must stop" model="?a"?/);

  // An unload answers once stopped, socket or not.
  ({ ws } = await wsOpen(wsUrl(d, '/upstream/b/ws')));
  ws.send('y');
  await ws.next();
  const u = await h.post(`${d.url}/api/models/unload/b`, {});
  assert.equal(u.status, 200, u.text);
  await ws.closed;
  assert.match((await h.get(`${d.url}/metrics`)).text, /^modelmux_websockets_open 0$/m);
  await d.stop();
});
