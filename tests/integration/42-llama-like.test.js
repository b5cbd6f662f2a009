// A backend that behaves on the wire as llama-server does (the fake's --llama-like mode: head
// and body in two writes with Nagle on, 3 HTTP threads each held by a connection until it has
// been idle 5 s, /props total_slots, abort on SIGTERM), and the two things it did to a proxy:
// a 40 ms delayed ACK on every reply after the first on a kept connection, and a 5 s stall
// for requests beyond the backend's threads. Both are shown on the fake first (so the fake
// keeps reproducing them), then fixed through modelmux.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const BODY = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });

// One POST on `agent` (a keep-alive agent, or false for a new connection); resolves to
// { status, ms }.
function timedPost(port, model, agent) {
  const body = BODY.replace('"m"', JSON.stringify(model));
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const rq = http.request({
      host: '127.0.0.1', port, path: CHAT, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    rq.on('error', reject);
    rq.end(body);
  });
}

async function sequential(port, model, agent, n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const r = await timedPost(port, model, agent);
    assert.equal(r.status, 200);
    ms.push(r.ms);
  }
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function portOf(d, model) {
  return h.get(`${d.url}/running`).then((r) => {
    const m = r.json.running.find((x) => x.model === model);
    return { port: Number(new URL(m.proxy).port), m };
  });
}

// The delayed ACK is 40 ms (Linux's minimum); a reply that waits for it takes at least that.
// Through modelmux the median of 20 replies must stay under half of it: on a loaded 2-core CI
// (or under ASan) a reply through the proxy costs a few ms, far from 20, while one ACK delay
// alone is 40. The median ignores the odd slow reply a busy machine makes.
test('non-streamed chat: a keep-alive client direct waits ~40 ms a reply; through modelmux (both upstream clients) it does not', async (t) => {
  const p1 = await h.freePorts(2);
  const p2 = p1 + 1;
  const d = await h.startDaemon(t, {
    config: `models:
  m:
    cmd: ${h.FAKE} --llama-like --port ${p1} --model m --threads 3 --parallel 1
    proxy: http://127.0.0.1:${p1}
  c:
    cmd: ${h.FAKE} --llama-like --port ${p2} --model c --threads 3 --parallel 1
    proxy: http://localhost:${p2}
groups:
  both:
    swap: false
    members: [m, c]
`,
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const addr = new URL(d.url);
  for (const model of ['m', 'c']) {
    assert.equal((await timedPost(addr.port, model, agent)).status, 200, `${model} loads`);
  }
  // The problem, on the fake itself: a kept connection, a delayed ACK per reply.
  const direct = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => direct.destroy());
  const ka = await sequential(p1, 'm', direct, 8);
  assert.ok(median(ka.slice(1)) >= 30, `a keep-alive client direct waits for the ACK: ${ka.map(Math.round)}`);
  direct.destroy();
  // Through modelmux: the direct HTTP/1.1 client (an IP) and the libcurl path (a host name).
  for (const model of ['m', 'c']) {
    const ms = await sequential(addr.port, model, agent, 20);
    assert.ok(median(ms) < 20, `${model}: median ${median(ms).toFixed(1)} ms: ${ms.map(Math.round)}`);
  }
  await d.stop();
});

// 8 at once against 3 HTTP threads. Before: each upstream connection holds a thread until it
// has been idle for the backend's keep-alive, so requests 4..8 waited ~4-5 s for one. Now the
// model's concurrency is what /props says (total_slots), the rest wait in modelmux's queue and
// go on the connections that are free.
test('8 concurrent requests against a 3-thread backend: none waits a second longer than the others', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `models:
  m:
    cmd: ${h.FAKE} --llama-like --port ${port} --model m --threads 3 --slots 2 --delay 20
    proxy: http://127.0.0.1:${port}
`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, BODY)).status, 200);
  // The limit is learned once the backend is ready, and shown.
  await h.waitFor(async () => (await portOf(d, 'm')).m.concurrency_from === 'props', { what: '/props learned' });
  const { m } = await portOf(d, 'm');
  assert.equal(m.concurrency, 2);
  await d.waitLog(/sched model=m msg="backend concurrency" slots=2 from=props/);
  for (let round = 0; round < 2; round++) {
    const t0 = Date.now();
    const rs = await Promise.all(Array.from({ length: 8 }, () =>
      h.post(`${d.url}${CHAT}`, BODY).then((r) => ({ status: r.status, ms: Date.now() - t0 }))));
    for (const r of rs) assert.equal(r.status, 200);
    const ms = rs.map((r) => r.ms);
    assert.ok(Math.max(...ms) - Math.min(...ms) < 1000, `round ${round}: ${ms}`);
  }
  await d.stop();
});

test('the problem on the fake: with concurrencyLimit above its threads, requests wait seconds for one', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `models:
  m:
    cmd: ${h.FAKE} --llama-like --port ${port} --model m --threads 3 --slots 2 --delay 20
    proxy: http://127.0.0.1:${port}
    concurrencyLimit: 8
`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, BODY)).status, 200);
  const { m } = await portOf(d, 'm');
  assert.deepEqual([m.concurrency, m.concurrency_from], [8, 'config']);
  const t0 = Date.now();
  const ms = await Promise.all(Array.from({ length: 8 }, () =>
    h.post(`${d.url}${CHAT}`, BODY).then((r) => { assert.equal(r.status, 200); return Date.now() - t0; })));
  // Held until our idle connections close (timeouts.idleConn, 4 s) or the backend's 5 s.
  assert.ok(Math.max(...ms) - Math.min(...ms) > 2500, `the fake stalls as llama-server does: ${ms}`);
  await d.stop();
});

test('-np/--parallel in cmd sets the concurrency when /props says nothing; the queue holds the rest (429 + Retry-After when full)', async (t) => {
  const port = await h.freePorts(1);
  // The plain fake's /props has no total_slots (it would with --slots): argv's --parallel stands.
  const d = await h.startDaemon(t, {
    config: `queue:
  maxPerModel: 2
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --delay 600 --parallel 1
startPort: ${port}
`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, BODY)).status, 200);
  const { m } = await portOf(d, 'm');
  assert.deepEqual([m.concurrency, m.concurrency_from], [1, 'argv']);
  const first = h.post(`${d.url}${CHAT}`, BODY);
  await h.waitFor(async () => (await portOf(d, 'm')).m.inflight === 1, { what: 'one in flight' });
  const queued = [h.post(`${d.url}${CHAT}`, BODY), h.post(`${d.url}${CHAT}`, BODY)];
  await h.waitFor(async () => (await portOf(d, 'm')).m.queued === 2, { what: 'two queued' });
  const refused = await h.post(`${d.url}${CHAT}`, BODY);
  h.assertError(refused, 429, /too many requests waiting for model m/);
  assert.match(String(refused.headers.get('retry-after')), /^[1-9]\d*$/);
  for (const r of [await first, ...(await Promise.all(queued))]) assert.equal(r.status, 200, r.text);
  await d.stop();
});

// llama-server aborts (signal 6) on SIGTERM. What the operator sees: one line saying how it
// ended and that we had asked it to stop (stopped=yes); no crash, no last_error, no hold-back.
test('a backend that aborts on SIGTERM is a normal stop, not a crash', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `models:
  m:
    cmd: ${h.FAKE} --llama-like --port ${port} --model m
    proxy: http://127.0.0.1:${port}
`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, BODY)).status, 200);
  const u = await h.post(`${d.url}/api/models/unload/m`, '');
  assert.equal(u.status, 200, u.text);
  await d.waitLog(/sup model=m pid=\d+ msg=exited status="killed by signal 6 \(Aborted\)" stopped=yes/);
  const health = await h.get(`${d.url}/api/health`);
  const hm = health.json.models.find((x) => x.id === 'm');
  assert.equal(hm.state, 'stopped');
  assert.equal(hm.last_error, undefined);
  assert.equal(hm.held_back, false);
  assert.doesNotMatch(d.stderr, /crash/i);
  // It starts again on the next request.
  assert.equal((await h.post(`${d.url}${CHAT}`, BODY)).status, 200);
  await d.stop();
  assert.match(d.stderr, /msg=exited status="killed by signal 6 \(Aborted\)" stopped=yes[^\n]*\n(?:.*\n)*.*main msg=exited/);
});
