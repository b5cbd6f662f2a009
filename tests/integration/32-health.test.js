// Health routes: /health (liveness), /health/ready (readiness: 503 once stopping), and the
// detailed /api/health — healthy, degraded by a crash-loop hold, by a ready backend that stops
// answering or by listening beyond loopback without apiKeys, and unhealthy during shutdown.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const EXPOSED = /listening beyond loopback without apiKeys/;

function chat(d, model, extra = {}) {
  return h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }], ...extra });
}

// GET over a given agent (to reuse a connection opened before shutdown).
function agentGet(url, agent) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json, socket: res.socket });
      });
    });
    req.on('error', (e) => resolve({ error: e }));
  });
}

test('healthy: /health, /health/ready and /api/health with each model\'s state', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
queue:
  maxTotal: 40
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
`,
  });
  const live = await h.get(`${d.url}/health`);
  assert.equal(live.status, 200);
  assert.equal(live.text, 'OK');
  assert.match(live.headers.get('content-type'), /^text\/plain/);

  const ready = await h.get(`${d.url}/health/ready`);
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.json, { status: 'ready' });

  const h0 = await h.get(`${d.url}/api/health`);
  assert.equal(h0.status, 200, h0.text);
  assert.match(h0.headers.get('content-type'), /^application\/json/);
  const j0 = h0.json;
  assert.equal(j0.status, 'healthy', h0.text);
  assert.equal(typeof j0.version, 'string');
  assert.ok(j0.version.length > 0);
  assert.equal(typeof j0.uptime_seconds, 'number');
  assert.ok(j0.uptime_seconds >= 0 && j0.uptime_seconds < 60, `uptime ${j0.uptime_seconds}`);
  assert.equal(typeof j0.config_generation, 'number');
  assert.equal(j0.listen, d.addr);
  assert.deepEqual(j0.queue, { queued: 0, limit: 40 });
  assert.deepEqual(j0.warnings, []);
  assert.deepEqual(j0.models.map((m) => m.id), ['a', 'b']);
  for (const m of j0.models) {
    // (the web page's fields follow these: status.h)
    const { id, state, inflight, queued, starts, held_back: held } = m;
    assert.deepEqual({ id, state, inflight, queued, starts, held_back: held },
      { id: m.id, state: 'stopped', inflight: 0, queued: 0, starts: 0, held_back: false },
      `fresh model record ${JSON.stringify(m)}`);
    assert.equal(m.last_error, undefined);
  }

  // a runs: its state and start count follow; b stays stopped.
  assert.equal((await chat(d, 'a')).status, 200);
  const j1 = (await h.get(`${d.url}/api/health`)).json;
  assert.equal(j1.status, 'healthy');
  const a = j1.models.find((m) => m.id === 'a');
  assert.equal(a.state, 'ready');
  assert.equal(a.starts, 1);
  assert.equal(a.held_back, false);
  assert.equal(a.last_error, undefined, 'no last_error after a clean start');
  assert.equal(a.reachable, true, 'the health check that made it ready counts as an answer');
  assert.equal(typeof a.probe_age_ms, 'number');
  assert.equal(j1.models.find((m) => m.id === 'b').state, 'stopped');
  await h.waitFor(async () => (await h.get(`${d.url}/api/health`)).json.uptime_seconds > j0.uptime_seconds,
    { what: 'uptime to advance' });

  // The health routes are GET (and HEAD) only.
  h.assertError(await h.post(`${d.url}/health/ready`, ''), 405);
  h.assertError(await h.post(`${d.url}/api/health`, ''), 405);
  await d.stop();
});

test('a crash-loop hold makes /api/health degraded, with the model held back and its last error',
  async (t) => {
    const port = await h.freePorts(2);
    const d = await h.startDaemon(t, {
      config: `startPort: ${port}
crashBackoff:
  maxCrashes: 1
  holdSeconds: 5
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --exit-after 100
  ok:
    cmd: ${h.FAKE} --port \${PORT} --model ok
`,
    });
    const r = await chat(d, 'm');
    assert.equal(r.status, 200, r.text);
    await d.waitLog(/sched model=m msg="crash loop: holding back"/);

    const res = await h.get(`${d.url}/api/health`);
    assert.equal(res.status, 200, 'degraded still answers 200');
    const j = res.json;
    assert.equal(j.status, 'degraded', res.text);
    const m = j.models.find((x) => x.id === 'm');
    assert.equal(m.held_back, true);
    assert.equal(m.state, 'stopped');
    assert.equal(m.starts, 1);
    assert.match(String(m.last_error), /exited/, `last_error: ${m.last_error}`);
    assert.ok(j.warnings.some((w) => /held back/.test(w)), `warnings: ${JSON.stringify(j.warnings)}`);
    assert.equal(j.models.find((x) => x.id === 'ok').held_back, false);

    // Liveness and readiness are about the daemon, not one model.
    assert.equal((await h.get(`${d.url}/health`)).status, 200);
    assert.equal((await h.get(`${d.url}/health/ready`)).status, 200);
    h.assertError(await chat(d, 'm'), 503, /held back/);
    await d.stop();
  });

test('a ready backend that stops answering makes /api/health degraded, and healthy again once it answers',
  async (t) => {
    const port = await h.freePorts(2);
    const d = await h.startDaemon(t, {
      config: `startPort: ${port}
groups:
  both:
    swap: false
    members: [a, b]
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
    checkEndpoint: none
`,
    });
    assert.equal((await chat(d, 'a')).status, 200);
    // checkEndpoint: none — nothing known until a probe of the server's base URL answers.
    await h.waitFor(async () => (await chat(d, 'b')).status === 200, { what: 'b to serve' });
    const model = (j, id) => j.models.find((x) => x.id === id);
    await h.waitFor(async () => model((await h.get(`${d.url}/api/health`)).json, 'b').reachable === true,
      { timeout: 10000, interval: 200, what: 'b to be probed reachable' });

    const pid = Number(/sup model=a pid=(\d+) msg=spawned/.exec(d.stderr)[1]);
    process.kill(pid, 'SIGSTOP'); // alive, so the supervisor sees no exit, but it cannot answer
    let stopped = true;
    t.after(() => { if (stopped) try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } });
    const t0 = Date.now();
    let j;
    await h.waitFor(async () => {
      const r = await h.get(`${d.url}/api/health`);
      assert.equal(r.status, 200, r.text);
      j = r.json;
      return j.status === 'degraded';
    }, { timeout: 15000, interval: 200, what: '/api/health to say degraded' });
    // One probe at most per interval (3 s) plus its 2 s timeout, never the whole request.
    assert.ok(Date.now() - t0 < 12000, `took ${Date.now() - t0} ms`);
    assert.equal(model(j, 'a').state, 'ready');
    assert.equal(model(j, 'a').reachable, false);
    assert.equal(model(j, 'b').reachable, true);
    assert.ok(j.warnings.some((w) => /ready model a does not answer/.test(w)), JSON.stringify(j.warnings));
    await d.waitLog(/warn sup model=a pid=\d+ msg="backend does not answer"/);
    // /api/health itself never waited on the probe.
    const t1 = Date.now();
    assert.equal((await h.get(`${d.url}/api/health`)).status, 200);
    assert.ok(Date.now() - t1 < 1000, `took ${Date.now() - t1} ms`);

    process.kill(pid, 'SIGCONT');
    stopped = false;
    await h.waitFor(async () => (await h.get(`${d.url}/api/health`)).json.status === 'healthy',
      { timeout: 15000, interval: 200, what: '/api/health to be healthy again' });
    await d.waitLog(/sup model=a pid=\d+ msg="backend answers again"/);
    assert.equal((await chat(d, 'a')).status, 200);
    await d.stop();
  });

test('listening on 0.0.0.0 without apiKeys logs the exposure and degrades /api/health', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    listen: '0.0.0.0:0',
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m\n`,
  });
  assert.match(d.addr, /^0\.0\.0\.0:\d+$/);
  await d.waitLog(/warn main msg="listening beyond loopback without apiKeys/);
  const url = `http://127.0.0.1:${d.addr.split(':')[1]}`;
  const res = await h.get(`${url}/api/health`);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.status, 'degraded', res.text);
  assert.ok(res.json.warnings.some((w) => EXPOSED.test(w)), `warnings: ${JSON.stringify(res.json.warnings)}`);
  assert.equal(res.json.listen, d.addr);
  // /health keeps llama-swap's plain OK, and says so in a header.
  const hl = await fetch(`${url}/health`);
  assert.equal(await hl.text(), 'OK');
  assert.match(hl.headers.get('x-modelmux-warning'), EXPOSED);
  await d.stop();
});

test('listening on 0.0.0.0 with apiKeys: no exposure warning, healthy', async (t) => {
  const port = await h.freePorts(1);
  const key = 'k-0123456789abcdef0123456789abcdef';
  const d = await h.startDaemon(t, {
    listen: '0.0.0.0:0',
    config: `startPort: ${port}
apiKeys:
  - {key: "${key}", admin: true}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m
`,
  });
  const url = `http://127.0.0.1:${d.addr.split(':')[1]}`;
  const res = await h.get(`${url}/api/health`, { Authorization: `Bearer ${key}` });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.status, 'healthy', res.text);
  assert.deepEqual(res.json.warnings, []);
  assert.equal((await fetch(`${url}/health`)).headers.get('x-modelmux-warning'), null);
  assert.doesNotMatch(d.stderr, EXPOSED);
  // /health needs no key.
  assert.equal((await h.get(`${url}/health`)).status, 200);
  await d.stop();
});

test('during shutdown /health/ready answers 503 (or the connection is refused)', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m --chunks 10 --chunk-delay 200\n`,
  });
  // A kept-alive connection, opened before the signal.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const before = await agentGet(`${d.url}/health/ready`, agent);
  assert.equal(before.status, 200);
  const sock = before.socket;

  // A stream in flight keeps the daemon stopping for ~2 s.
  const stream = fetch(`${d.url}${CHAT}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', stream: true, messages: [] }),
  }).then(async (res) => ({ status: res.status, text: await res.text() }));
  await d.waitLog(/backend model=m .*POST \/v1\/chat\/completions/);
  d.signal('SIGTERM');
  await d.waitLog(/main msg="stopping"/);
  assert.equal(d.exit, null, 'still draining the stream');

  // A new connection is refused.
  const c = await h.curl(['-m', '2', `${d.url}/health/ready`]);
  assert.equal(c.code, 7, `curl: ${c.code} ${c.stdout} ${c.stderr}`);

  // On the open connection, readiness says stopping and the detailed view unhealthy.
  const during = await agentGet(`${d.url}/health/ready`, agent);
  if (during.error) {
    assert.match(during.error.code, /ECONNREFUSED|ECONNRESET|EPIPE/, String(during.error));
  } else {
    assert.equal(during.socket, sock, 'the request went over the connection opened before');
    assert.equal(during.status, 503, during.text);
    assert.deepEqual(during.json, { status: 'stopping' });
    const detail = await agentGet(`${d.url}/api/health`, agent);
    if (!detail.error) {
      assert.equal(detail.status, 503, detail.text);
      assert.equal(detail.json.status, 'unhealthy');
    }
  }
  assert.equal(d.exit, null, 'still draining the stream');
  const s = await stream;
  assert.equal(s.status, 200);
  assert.match(s.text, /data: \[DONE\]/);
  agent.destroy();
  await d.stop();
});
