// Management API: POST /api/models/load/<m>, POST /api/models/unload[/<m>], GET /unload, and
// their interplay with requests in flight and with shutdown.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function spawns(d, model) {
  return [...d.stderr.matchAll(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g'))].map((x) => Number(x[1]));
}

async function request(d, method, route) {
  const res = await fetch(`${d.url}${route}`, { method });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

const streamRaw = h.streamRaw;

test('POST /api/models/load/<m> answers 200 once the model is ready', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 400
    aliases: [em]
  other:
    cmd: ${h.FAKE} --port \${PORT} --model other
`,
  });
  const t0 = Date.now();
  const r = await request(d, 'POST', '/api/models/load/m');
  assert.equal(r.status, 200, r.text);
  assert.ok(Date.now() - t0 >= 350, 'answered only once ready');
  assert.deepEqual(r.json, { model: 'm', state: 'ready' });
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.match(d.stderr, /sched model=m state=ready/);
  const list = await h.get(`${d.url}/v1/models`);
  assert.equal(list.json.data.find((x) => x.id === 'm').state, 'ready');
  const run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running.map((x) => [x.model, x.state, x.inflight, x.queued]), [['m', 'ready', 0, 0]]);
  // Again, by alias: already ready, no new start; the reply names the model's id.
  const again = await request(d, 'POST', '/api/models/load/em');
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json, { model: 'm', state: 'ready' });
  assert.equal(spawns(d, 'm').length, 1);
  // Loading another model follows the swap rules.
  const [pm] = spawns(d, 'm');
  const o = await request(d, 'POST', '/api/models/load/other');
  assert.equal(o.status, 200, o.text);
  assert.equal(h.isAlive(pm), false, 'm swapped out by the load of other');
  await d.stop();
});

test('concurrent loads of one model share a single start', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 300\n`,
  });
  const rs = await Promise.all([
    request(d, 'POST', '/api/models/load/m'),
    request(d, 'POST', '/api/models/load/m'),
    h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] }),
  ]);
  for (const r of rs) assert.equal(r.status, 200, r.text);
  assert.equal(spawns(d, 'm').length, 1);
  await d.stop();
});

test('load of a failing model: 502 with the backend\'s last lines; unknown model: 404', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  bad:\n    cmd: ${h.FAKE} --port \${PORT} --model bad --exit-at-start 3\n`,
  });
  const r = await request(d, 'POST', '/api/models/load/bad');
  h.assertError(r, 502, /model bad failed to start: exited with code 3 while starting/);
  assert.match(r.json.error.message, /error: unable to load model/);
  assert.match(r.json.error.message, /failed to load model file 'bad\.gguf'/);
  const u = await request(d, 'POST', '/api/models/load/nope');
  h.assertError(u, 404, /model nope not found/);
  assert.equal(u.json.error.type, 'not_found_error');
  await d.stop();
});

test('GET on the load and api unload routes is 405 naming the POST route', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  x:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const l = await request(d, 'GET', '/api/models/load/x');
  h.assertError(l, 405, /use POST \/api\/models\/load\/x/);
  assert.equal(l.headers.get('allow'), 'POST');
  // GET /unload is llama-swap's unload-all (tests/integration/45-compat-api.test.js).
  const au = await request(d, 'GET', '/api/models/unload');
  h.assertError(au, 405, /POST/);
  assert.equal(au.headers.get('allow'), 'POST');
  assert.deepEqual(spawns(d, 'x'), [], 'nothing was loaded');
  await d.stop();
});

test('POST /api/models/unload/<m> answers "OK" once stopped; unload of all answers {"msg":"ok"}', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
  c:
    cmd: ${h.FAKE} --port \${PORT} --model c
groups:
  all:
    swap: false
    members: [a, b, c]
`,
  });
  for (const m of ['a', 'b', 'c']) assert.equal((await request(d, 'POST', `/api/models/load/${m}`)).status, 200);
  const [pa] = spawns(d, 'a');
  const [pb] = spawns(d, 'b');
  const [pc] = spawns(d, 'c');
  const one = await request(d, 'POST', '/api/models/unload/a');
  assert.equal(one.status, 200, one.text);
  assert.equal(one.text, 'OK');
  assert.equal(h.isAlive(pa), false, 'a is gone when the unload answers');
  assert.ok(h.isAlive(pb) && h.isAlive(pc), 'the others still run');
  let run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running.map((x) => x.model).sort(), ['b', 'c']);
  // Unloading a stopped model is fine too.
  const idle = await request(d, 'POST', '/api/models/unload/a');
  assert.equal(idle.status, 200, idle.text);
  assert.equal(idle.text, 'OK');
  const unknown = await request(d, 'POST', '/api/models/unload/zzz');
  h.assertError(unknown, 404, /model zzz not found/);
  const all = await request(d, 'POST', '/api/models/unload');
  assert.equal(all.status, 200, all.text);
  assert.deepEqual(all.json, { msg: 'ok' });
  assert.equal(h.isAlive(pb), false);
  assert.equal(h.isAlive(pc), false);
  run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running, []);
  assert.match(d.stderr, /sched model=\* msg="unload requested" reason=api/);
  await d.stop();
});

test('unload waits for an in-flight stream, which completes intact', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  s:
    cmd: ${h.FAKE} --port \${PORT} --model s --chunks 6 --chunk-delay 200
    unloadTimeout: 1
`,
  });
  assert.equal((await request(d, 'POST', '/api/models/load/s')).status, 200);
  const [pid] = spawns(d, 's');
  const stream = streamRaw(`${d.url}${CHAT}`, { model: 's', stream: true, messages: [] });
  await h.waitFor(async () => (await h.get(`${d.url}/running`)).json.running[0]?.inflight === 1,
    { what: 'stream in flight' });
  const unload = request(d, 'POST', '/api/models/unload/s').then((r) => ({ ...r, at: Date.now() }));
  // While the stream runs, a new request for s is not let in.
  const s = await stream;
  const u = await unload;
  assert.equal(s.status, 200);
  assert.equal(s.how, 'end');
  assert.match(s.text, /data: \[DONE\]\n\n$/);
  const events = s.text.split('\n\n').filter((e) => e.startsWith('data: {'));
  assert.equal(events.length, 7, `six content chunks and the final one: ${s.text}`);
  assert.equal(u.status, 200, u.text);
  assert.equal(u.text, 'OK');
  assert.ok(u.at >= s.at, 'the unload answered after the stream ended');
  assert.equal(h.isAlive(pid), false);
  assert.doesNotMatch(d.stderr, /grace period over/);
  // The stop began only once the stream was over (~1 s after the unload was asked for).
  const ts = (re) => Date.parse(d.stderr.match(re)[1]);
  const asked = ts(/^(\S+) info sched model=s msg="unload requested"/m);
  const stopping = ts(/^(\S+) info sched model=s msg="unloading" reason=api/m);
  assert.ok(stopping - asked >= 700, `stop began ${stopping - asked} ms after the unload request`);
  await d.stop();
});

test('unload during a start: the waiting load gets 503, the unload answers once stopped', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 1500\n`,
  });
  const load = request(d, 'POST', '/api/models/load/m');
  await d.waitLog(/sup model=m pid=\d+ msg=spawned/);
  const [pid] = spawns(d, 'm');
  const t0 = Date.now();
  const u = await request(d, 'POST', '/api/models/unload/m');
  assert.equal(u.status, 200, u.text);
  assert.ok(Date.now() - t0 < 1000, 'did not wait for the start to finish');
  assert.equal(h.isAlive(pid), false);
  const l = await load;
  h.assertError(l, 503, /model unloaded/);
  const run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running, []);
  await d.stop();
});

test('SIGTERM during an API load leaves no process behind and exits 0', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 5000\n`,
  });
  const load = request(d, 'POST', '/api/models/load/m').catch((e) => ({ status: 0, text: String(e) }));
  await d.waitLog(/sup model=m pid=\d+ msg=spawned/);
  const [pid] = spawns(d, 'm');
  const t0 = Date.now();
  d.signal('SIGTERM');
  const l = await load;
  assert.ok(l.status === 503 || l.status === 0, `load answer: ${l.status} ${l.text}`);
  if (l.status === 503) assert.match(l.text, /shutting down/);
  await d.stop();
  assert.ok(Date.now() - t0 < 4000, 'no wait for the health deadline');
  assert.equal(h.isAlive(pid), false);
});

for (const route of ['/api/models/unload/s', '/api/models/unload']) {
  test(`POST ${route} answers even when a request for the model arrives while it waits`, async (t) => {
    const port = await h.freePorts(1);
    const d = await h.startDaemon(t, {
      config: `startPort: ${port}\nmodels:\n  s:\n    cmd: ${h.FAKE} --port \${PORT} --model s --chunks 4 --chunk-delay 200\n`,
    });
    assert.equal((await request(d, 'POST', '/api/models/load/s')).status, 200);
    const [pid] = spawns(d, 's');
    const stream = streamRaw(`${d.url}${CHAT}`, { model: 's', stream: true, messages: [] });
    await h.waitFor(async () => (await h.get(`${d.url}/running`)).json.running[0]?.inflight === 1,
      { what: 'stream in flight' });
    const unload = request(d, 'POST', route);
    await d.waitLog(/sched model=\S+ msg="unload requested"/);
    const late = h.post(`${d.url}${CHAT}`, { model: 's', messages: [] });
    const s = await stream;
    assert.match(s.text, /data: \[DONE\]/);
    const u = await Promise.race([unload, h.sleep(1500).then(() => null)]);
    assert.ok(u, 'the unload answered within 1.5 s of the stream ending');
    assert.equal(u.status, 200, u.text);
    assert.equal(h.isAlive(pid), false, 'the process that was unloaded is gone');
    const l = await late;
    assert.ok(l.status === 200 || l.status === 503, `late request: ${l.status} ${l.text}`);
    await d.stop();
  });
}
