// Backend lifecycle: crashes and the crash-loop hold, stalled and slow starts, cmdStop,
// SIGKILL after unloadTimeout, and preloading at start-up.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function chat(d, model, extra = {}) {
  return h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }], ...extra });
}

function oneModel(port, flags, extra = '', top = '') {
  return `startPort: ${port}\n${top}models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m ${flags}\n${extra}`;
}

function spawns(d, model = 'm') {
  return [...d.stderr.matchAll(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g'))].map((x) => Number(x[1]));
}

const streamRaw = h.streamRaw;

test('a crash mid-stream stops the model; the next request restarts it', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--chunks 5 --chunk-delay 30 --crash-after-chunks 2'),
  });
  const s = await streamRaw(`${d.url}${CHAT}`, { model: 'm', stream: true, messages: [] });
  assert.equal(s.status, 200);
  assert.doesNotMatch(s.text, /\[DONE\]/, 'a cut stream must not end like a complete one');
  const [pid1] = spawns(d);
  await d.waitLog(/sched model=m msg="backend exited unexpectedly"/);
  await d.waitLog(/sched model=m state=stopped/);
  assert.equal(h.isAlive(pid1), false);
  const run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running, []);
  // A non-streamed request does not crash (no chunks): it restarts the model and answers.
  const r = await chat(d, 'm');
  assert.equal(r.status, 200, r.text);
  const pids = spawns(d);
  assert.equal(pids.length, 2, 'restarted once');
  assert.ok(h.isAlive(pids[1]));
  await d.stop();
});

test('crash loop: after maxCrashes the model is held back with 503 + Retry-After, then starts again',
  async (t) => {
    const port = await h.freePorts(1);
    const d = await h.startDaemon(t, {
      config: oneModel(port, '--exit-after 500', '', `crashBackoff:
  maxCrashes: 2
  windowSeconds: 30
  holdSeconds: 2
`),
    });
    // Two lives, each answering and then dying 500 ms after becoming ready.
    for (let i = 1; i <= 2; i++) {
      const r = await chat(d, 'm');
      assert.equal(r.status, 200, `life ${i}: ${r.text}`);
      await h.waitFor(() => d.logCount(/sched model=m msg="backend exited unexpectedly"/) === i,
        { what: `crash ${i}` });
      await d.waitLog(new RegExp(`(?:state=stopped[\\s\\S]*){${i}}`));
    }
    await d.waitLog(/sched model=m msg="crash loop: holding back" crashes=2/);
    const held = await chat(d, 'm');
    const heldAt = Date.now();
    h.assertError(held, 503, /model m crashed 2 times in 30 s; held back for [12] s/);
    assert.match(held.json.error.message, /last error: backend exited with code 0/);
    const ra = Number(held.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 2, `Retry-After ${held.headers.get('retry-after')}`);
    assert.equal(spawns(d).length, 2, 'no start while held');
    // Still held a moment later.
    const again = await chat(d, 'm');
    h.assertError(again, 503, /held back/);
    // After the hold it starts again.
    await h.sleep(Math.max(0, ra * 1000 - (Date.now() - heldAt)) + 100);
    const ok = await chat(d, 'm');
    assert.equal(ok.status, 200, ok.text);
    assert.equal(spawns(d).length, 3);
    await d.stop();
  });

test('crashes further apart than windowSeconds do not trigger the hold', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--exit-after 1100', '', 'crashBackoff:\n  maxCrashes: 2\n  windowSeconds: 1\n  holdSeconds: 30\n'),
  });
  for (let i = 1; i <= 3; i++) {
    const r = await chat(d, 'm');
    assert.equal(r.status, 200, `life ${i}: ${r.text}`);
    await h.waitFor(() => d.logCount(/sched model=m state=stopped/) === i, { what: `crash ${i}` });
  }
  assert.doesNotMatch(d.stderr, /crash loop/);
  assert.equal(d.logCount(/msg="backend exited unexpectedly"/), 3);
  await d.stop();
});

test('POST /api/models/load while held back also carries Retry-After', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--exit-after 500', '', 'crashBackoff:\n  maxCrashes: 1\n  holdSeconds: 5\n'),
  });
  assert.equal((await chat(d, 'm')).status, 200);
  await d.waitLog(/crash loop: holding back/);
  const r = await h.post(`${d.url}/api/models/load/m`, '');
  h.assertError(r, 503, /held back/);
  assert.match(String(r.headers.get('retry-after')), /^\d+$/, 'Retry-After on the API refusal');
  await d.stop();
});

test('loadStallTimeout: a start with no output and no health answer fails in ~1 s with 502', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
healthCheckTimeout: 120
loadStallTimeout: 1
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --listen-delay 5000
  own:
    cmd: ${h.FAKE} --port \${PORT} --model own --listen-delay 2000
    loadStallTimeout: 0
`,
  });
  const t0 = Date.now();
  const r = await chat(d, 'm');
  const took = Date.now() - t0;
  h.assertError(r, 502, /model m failed to start: no output and no health answer for 1 s \(loadStallTimeout\)/);
  assert.ok(took >= 900 && took < 3000, `failed after ${took} ms (healthCheckTimeout is 120 s)`);
  const pid = spawns(d)[0];
  await d.waitLog(/sched model=m state=stopped/);
  assert.equal(h.isAlive(pid), false, 'the stalled backend is killed');
  // A per-model 0 turns the stall check off: the same backend is still starting after 1.5 s.
  const own = chat(d, 'own');
  const early = await Promise.race([own.then((x) => `answered ${x.status}`), h.sleep(1400).then(() => 'waiting')]);
  assert.equal(early, 'waiting');
  const late = await own;
  assert.equal(late.status, 200, late.text);
  await d.stop();
});

test('loadStallTimeout does not fail a slow start that answers health checks', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--health-delay 2000', '    loadStallTimeout: 1\n'),
  });
  const r = await chat(d, 'm');
  assert.equal(r.status, 200, r.text);
  assert.doesNotMatch(d.stderr, /loadStallTimeout/);
  await d.stop();
});

test('a per-model healthCheckTimeout: 1 gives 504 after ~1 s although the global is 120', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
healthCheckTimeout: 120
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --never-healthy
    healthCheckTimeout: 1
  hang:
    cmd: ${h.FAKE} --port \${PORT} --model hang --health-hang
    healthCheckTimeout: 1
`,
  });
  const timed = async (model) => {
    const t0 = Date.now();
    const r = await chat(d, model);
    return { model, r, took: Date.now() - t0 };
  };
  for (const { model, r, took } of await Promise.all([timed('m'), timed('hang')])) {
    h.assertError(r, 504, new RegExp(`model ${model} failed to start: health check timed out after 1 s`));
    assert.ok(took >= 900 && took < 3000, `${model}: 504 after ${took} ms`);
    await d.waitLog(new RegExp(`sched model=${model} state=stopped`));
  }
  await d.stop();
});

test('cmdStop runs with ${PID} to stop the backend', async (t) => {
  const port = await h.freePorts(1);
  const dir = h.tmpdir();
  const d = await h.startDaemon(t, {
    dir,
    config: oneModel(port, '', '    cmdStop: /bin/kill -TERM ${PID}\n'),
  });
  assert.equal((await chat(d, 'm')).status, 200);
  const [pid] = spawns(d);
  const u = await h.post(`${d.url}/api/models/unload/m`, '');
  assert.equal(u.status, 200, u.text);
  const m = await d.waitLog(new RegExp(`sup model=m pid=${pid} msg="running cmdStop" stop_pid=(\\d+)`), 4000);
  await d.waitLog(new RegExp(`sup model=m pid=${pid} msg=exited status="exited with code 0"`));
  assert.doesNotMatch(d.stderr, /grace period over/);
  assert.equal(h.isAlive(pid), false);
  await h.waitFor(() => !h.isAlive(Number(m[1])), { what: 'cmdStop process reaped' });
  await d.stop();
});

test('a cmdStop that does not stop the backend is followed by SIGKILL after unloadTimeout', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '', '    cmdStop: /bin/true ${PID}\n    unloadTimeout: 1\n'),
  });
  assert.equal((await chat(d, 'm')).status, 200);
  const [pid] = spawns(d);
  const t0 = Date.now();
  const r = await h.post(`${d.url}/api/models/unload/m`, '');
  const took = Date.now() - t0;
  assert.equal(r.status, 200, r.text);
  assert.ok(took >= 900 && took < 2500, `unload took ${took} ms`);
  assert.match(d.stderr, /model=m pid=\d+ msg="running cmdStop"/);
  assert.match(d.stderr, /model=m pid=\d+ msg="grace period over, sending SIGKILL"/);
  assert.equal(h.isAlive(pid), false);
  await d.stop();
});

test('a backend that ignores SIGTERM is SIGKILLed on unload after unloadTimeout: 1', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--ignore-term', '    unloadTimeout: 1\n    ttl: 1\n'),
  });
  assert.equal((await chat(d, 'm')).status, 200);
  const [pid] = spawns(d);
  await d.waitLog(/sched model=m msg="unloading" reason=ttl/, 4000);
  const t0 = Date.now();
  await d.waitLog(new RegExp(`sup model=m pid=${pid} msg="grace period over, sending SIGKILL"`), 3000);
  assert.ok(Date.now() - t0 >= 700, 'SIGKILL only after the grace period');
  await d.waitLog(new RegExp(`sup model=m pid=${pid} msg=exited status="killed by signal 9`));
  assert.equal(h.isAlive(pid), false);
  await d.waitLog(/sched model=m state=stopped/);
  await d.stop();
});

test('hooks.on_startup.preload loads a model at start without any request', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 200
    aliases: [mm]
    ttl: 1
  other:
    cmd: ${h.FAKE} --port \${PORT} --model other
hooks:
  on_startup:
    preload: [mm]
`,
  });
  await d.waitLog(/sched model=m state=ready/);
  await d.waitLog(/sched model=m msg=preloaded/);
  const run = await h.get(`${d.url}/running`);
  assert.deepEqual(run.json.running.map((x) => [x.model, x.state, x.inflight]), [['m', 'ready', 0]]);
  assert.equal(spawns(d, 'other').length, 0);
  // A request finds it loaded: no second start.
  assert.equal((await chat(d, 'm')).status, 200);
  assert.equal(spawns(d).length, 1);
  // Its ttl still applies after the preload.
  await d.waitLog(/sched model=m msg="unloading" reason=ttl/, 4000);
  await d.stop();
});

test('an unknown preload id fails modelmux -t with exit 1', () => {
  const dir = h.tmpdir();
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, `models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
hooks:
  on_startup:
    preload: [m, nope]
`);
  const r = spawnSync(h.MODELMUX, ['-t', '-c', file], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /hooks\.on_startup\.preload\[1\]: unknown model "nope"/);
  assert.doesNotMatch(r.stdout, /configuration OK/);
});

test('checkEndpoint: none — the model is ready once spawned, with no health probe', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: `models:
  m:
    cmd: ${h.FAKE} --port ${port} --listen-delay 300
    proxy: http://127.0.0.1:${port}
    checkEndpoint: none
    healthCheckTimeout: 5
` });
  const r = await h.post(`${d.url}/api/models/load/m`, {});
  assert.ok(r.status === 200, r.text);
  await d.waitLog(/model=m pid=\d+ msg=ready ms=\d+/);
  assert.doesNotMatch(d.stderr, /health check timed out/);
  await d.stop();
});
