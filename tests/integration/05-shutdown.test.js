// Shutdown: TERM/INT stop every backend and exit 0, a backend ignoring TERM is killed after
// unloadTimeout, and a second signal exits at once. d.stop() checks nothing is left behind.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function oneModel(port, flags, extra = '') {
  return `startPort: ${port}\n${extra}models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m ${flags}\n`;
}

// Sends a signal and resolves with how long the daemon took to exit.
async function signalAndTime(d, sig, limitMs) {
  const t0 = Date.now();
  d.signal(sig);
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), limitMs * h.SLOW); });
  const outcome = await Promise.race([d.exited, timeout]);
  clearTimeout(timer);
  assert.notEqual(outcome, 'timeout', `modelmux still running ${limitMs} ms after ${sig}\n${d.tail()}`);
  return Date.now() - t0;
}

test('SIGTERM while a model is loading: the waiting client gets 503, exit 0, nothing left', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--health-delay 3000') });
  const pending = h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] }).catch((e) => ({ error: e }));
  const m = await d.waitLog(/sup model=m pid=(\d+) msg=spawned/);
  const pid = Number(m[1]);
  assert.ok(h.isAlive(pid));

  const took = await signalAndTime(d, 'SIGTERM', 2500);
  assert.ok(took < 2000, `exited after ${took} ms, before the 3 s load would have finished`);
  assert.equal(d.exit.code, 0, d.tail());
  assert.equal(h.isAlive(pid), false);
  assert.match(d.stderr, /main msg="stopping" signal=Terminated/);
  assert.match(d.stderr, /sched model=m msg="unloading" reason=shutdown/);
  assert.match(d.stderr, /main msg=exited/);

  const r = await pending;
  assert.ok(!r.error, `the waiting request got no answer: ${r.error}`);
  h.assertError(r, 503, /shutting down/);
  assert.equal(r.headers.get('retry-after'), '5');
  await d.stop();
});

test('a backend that ignores SIGTERM is SIGKILLed after unloadTimeout on shutdown', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--ignore-term', 'unloadTimeout: 1\n') });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(r.status, 200, r.text);
  const pid = Number((await d.waitLog(/sup model=m pid=(\d+) msg=spawned/))[1]);

  const took = await signalAndTime(d, 'SIGTERM', 5000);
  assert.ok(took >= 900, `waited the grace period (${took} ms)`);
  assert.equal(d.exit.code, 0, d.tail());
  assert.equal(h.isAlive(pid), false);
  assert.match(d.stderr, new RegExp(`sup model=m pid=${pid} msg=stopping grace_ms=1000`));
  assert.match(d.stderr, new RegExp(`sup model=m pid=${pid} msg="grace period over, sending SIGKILL"`));
  assert.match(d.stderr, /msg=exited status="killed by signal 9/);
  await d.stop();
});

test('SIGINT stops the backends and exits 0', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '') });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(r.status, 200, r.text);
  const pid = Number((await d.waitLog(/sup model=m pid=(\d+) msg=spawned/))[1]);

  const took = await signalAndTime(d, 'SIGINT', 3000);
  assert.ok(took < 2000, `exited after ${took} ms`);
  assert.equal(d.exit.code, 0, d.tail());
  assert.equal(h.isAlive(pid), false);
  assert.match(d.stderr, /main msg="stopping" signal=Interrupt/);
  assert.match(d.stderr, /main msg="every backend stopped"/);
  assert.doesNotMatch(d.stderr, /sending SIGKILL/, 'a well-behaved backend stops on TERM');
  await d.stop();
});

test('a second SIGTERM exits at once, killing a backend still in its grace period', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--ignore-term', 'unloadTimeout: 30\n') });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(r.status, 200, r.text);
  const pid = Number((await d.waitLog(/sup model=m pid=(\d+) msg=spawned/))[1]);

  d.signal('SIGTERM');
  await d.waitLog(/sup model=m pid=\d+ msg=stopping grace_ms=30000/);
  // The backend ignores TERM: the daemon is now waiting out its 30 s grace period.
  assert.equal(d.exit, null, 'still waiting for the backend');
  const took = await signalAndTime(d, 'SIGTERM', 3000);
  assert.ok(took < 2000, `exited ${took} ms after the second signal`);
  assert.equal(d.exit.code, 0, d.tail());
  assert.match(d.stderr, /main msg="second stop signal, exiting at once"/);
  await h.waitFor(() => !h.isAlive(pid), { what: `backend ${pid} to be gone` });
  await d.stop();
});

test('after SIGTERM the daemon accepts no new connections', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--ignore-term', 'unloadTimeout: 2\n') });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(r.status, 200, r.text);
  d.signal('SIGTERM');
  await d.waitLog(/main msg="stopping"/);
  // While the backend's grace period runs, the listener is closed: a new connection is refused.
  const c = await h.curl(['-m', '2', `${d.url}/health`]);
  assert.equal(c.code, 7, `curl: ${c.code} ${c.stdout} ${c.stderr}`);
  assert.match(c.stderr, /Couldn't connect|Connection refused/);
  // A request on a connection that was already open is refused politely.
  const late = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] }).catch((e) => ({ error: e }));
  if (!late.error) h.assertError(late, 503, /shutting down/);
  assert.equal(d.exit, null, 'still stopping the backend');
  await d.stop();
});
