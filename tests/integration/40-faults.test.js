// Faults survived, part 1: backends that misbehave. Each scenario checks what the client sees,
// the daemon's log line, and — through d.stop(), which fails when any process carrying the
// daemon's MM_TEST_TAG environment variable is still alive — that no process is left behind.
//
// Where each fault of issue #9 (point 2) is covered:
//   backend exits at start ............ 03-errors "a backend that exits at start gives 502…"
//   exits during health checks ........ 40-faults "a backend that exits while its health check says loading…"
//   exits mid-stream .................. 03-errors "a backend crashing mid-stream…", 13-lifecycle "a crash mid-stream…"
//   never answers its health check .... 13-lifecycle "a per-model healthCheckTimeout: 1…" (--health-hang → 504)
//   accepts, never answers a request .. 40-faults "a backend that accepts a request and never answers…"
//   answers malformed HTTP ............ 40-faults "malformed HTTP from a backend…"
//   its port already taken ............ 40-faults "a backend whose port is already taken…"
//   executable missing ................ 03-errors "a command missing at load … one gone since gives 502"
//   executable not executable ......... 40-faults "an executable that lost its x bit…"
//   child ignores SIGTERM ............. 05-shutdown, 13-lifecycle (SIGKILL after unloadTimeout)
//   grandchild that calls setsid ...... 40-faults "a grandchild that calls setsid is stopped with its backend…"
//   daemon killed with SIGKILL ........ 41-faults-daemon "SIGKILL of the daemon takes its backends with it"
//   fd exhaustion ..................... 41-faults-daemon "fd exhaustion…"
//   client disconnecting at each phase  41-faults-daemon "a client leaving at every phase…"
//                                       (+ 12-queue "…disconnects while queued…", 16-backpressure mid-stream)
//   slowloris headers and bodies ...... 22-limits "slowloris: …" (headerTimeoutSeconds, bodyIdleTimeoutSeconds)
//   SIGHUP storm under traffic ........ 41-faults-daemon "50 SIGHUPs while requests run…"
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function oneModel(port, flags, extra = '', top = '') {
  return `startPort: ${port}\n${top}models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m ${flags}\n${extra}`;
}

function spawns(d, model = 'm') {
  return [...d.stderr.matchAll(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g'))].map((x) => Number(x[1]));
}

// fetch with a deadline, so an answer that never comes fails the test instead of hanging it.
async function postWithin(url, body, ms = 8000) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ms * h.SLOW),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

function chat(d, model = 'm', extra = {}) {
  return postWithin(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }], ...extra });
}

async function running(d) {
  return (await h.get(`${d.url}/running`)).json.running;
}

test('a backend that exits while its health check says loading: 502 with its last lines, at once', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--health-delay 60000 --exit-while-starting 600', '', 'healthCheckTimeout: 30\n'),
  });
  const t0 = Date.now();
  const r = await chat(d);
  const took = Date.now() - t0;
  h.assertError(r, 502, /model m failed to start: exited with code 4 while starting/);
  assert.equal(r.json.error.code, 'backend_start_failed');
  assert.match(r.json.error.message, /giving up while starting/, 'the backend\'s last line is quoted');
  assert.ok(took >= 500 && took < 3000, `answered after ${took} ms, not at healthCheckTimeout`);
  // It was polled (and answered 503) before it died.
  await d.waitLog(/sup model=m pid=\d+ msg=exited status="exited with code 4"/);
  await d.waitLog(/sched model=m state=stopped/);
  assert.deepEqual(await running(d), []);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});

test('a backend that accepts a request and never answers: 502 after timeouts.responseHeader, model kept', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--delay 86400000', '    timeouts:\n      responseHeader: 1\n'),
  });
  const t0 = Date.now();
  const r = await chat(d);
  const took = Date.now() - t0;
  h.assertError(r, 502, /model m: backend request failed: timed out waiting for the response headers/);
  assert.equal(r.json.error.code, 'backend_unavailable');
  assert.ok(took >= 900 && took < 4000, `answered after ${took} ms`);
  await d.waitLog(/warn http req=\S+ status=502 code=backend_unavailable msg="model m: backend request failed: timed out/);
  // The backend is hung on that request, not dead: the model stays loaded, nothing in flight.
  await h.waitFor(async () => {
    const run = await running(d);
    return run.length === 1 && run[0].state === 'ready' && run[0].inflight === 0;
  }, { what: 'the model ready with nothing in flight' });
  // A hung backend is still stopped on shutdown (its stuck connection thread does not hold it up).
  await d.stop();
});

test('malformed HTTP from a backend: 502 with an OpenAI error; a broken chunk ends an SSE stream in error', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
groups:
  all:
    swap: false
    members: [head, chunk]
models:
  head:
    cmd: ${h.FAKE} --port \${PORT} --model head --malformed head
  chunk:
    cmd: ${h.FAKE} --port \${PORT} --model chunk --malformed chunk
`,
  });
  const r = await chat(d, 'head');
  h.assertError(r, 502, /model head: backend request failed: /);
  assert.equal(r.json.error.code, 'backend_unavailable');
  await d.waitLog(/status=502 /);

  const s = await h.streamRaw(`${d.url}${CHAT}`, { model: 'chunk', stream: true, messages: [] });
  assert.equal(s.status, 200);
  const events = s.text.split('\n\n').filter((x) => x.startsWith('data: '));
  const last = JSON.parse(events[events.length - 1].slice(6));
  assert.equal(last.error.code, 'backend_stream_error', s.text);
  assert.doesNotMatch(s.text, /\[DONE\]/);
  await d.waitLog(/model=chunk msg="backend closed the response early"/);

  // The daemon is fine, and so are the two backends' processes (they only spoke badly).
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await h.waitFor(async () => (await running(d)).every((x) => x.inflight === 0), { what: 'nothing in flight' });
  for (const pid of [...spawns(d, 'head'), ...spawns(d, 'chunk')]) assert.ok(h.isAlive(pid));
  await d.stop();
});

test('a backend whose port is already taken by another program: 502 naming the failure, retried later', async (t) => {
  const port = await h.freePorts(1);
  // Another program holds the port: it accepts connections and says nothing.
  const held = [];
  const squatter = net.createServer((s) => { held.push(s); s.on('error', () => {}); });
  await new Promise((resolve) => squatter.listen(port, '127.0.0.1', resolve));
  t.after(() => { for (const s of held) s.destroy(); squatter.close(); });
  const d = await h.startDaemon(t, { config: oneModel(port, '', '', 'healthCheckTimeout: 10\n') });
  const t0 = Date.now();
  const r = await chat(d);
  h.assertError(r, 502, /model m failed to start: exited with code 1 while starting/);
  assert.match(r.json.error.message, /cannot listen on 127\.0\.0\.1/);
  assert.ok(Date.now() - t0 < 3000, 'not held until healthCheckTimeout');
  await d.waitLog(/sched model=m state=stopped/);
  // Once the port is free again, the same model starts.
  for (const s of held) s.destroy();
  await new Promise((resolve) => squatter.close(resolve));
  const ok = await chat(d);
  assert.equal(ok.status, 200, ok.text);
  await d.stop();
});

test('an executable that lost its x bit after load: 502 "cannot execute … Permission denied"', async (t) => {
  const port = await h.freePorts(1);
  const dir = h.tmpdir();
  const copy = path.join(dir, 'backend-copy');
  fs.copyFileSync(h.FAKE, copy);
  fs.chmodSync(copy, 0o755);
  const d = await h.startDaemon(t, { config: oneModel(port, '').replace(h.FAKE, copy) });
  fs.chmodSync(copy, 0o644);
  const r = await chat(d);
  h.assertError(r, 502, /cannot execute .*backend-copy: Permission denied/);
  assert.equal(r.json.error.code, 'backend_start_failed');
  await d.waitLog(/status=502 /);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  // Fixed on disk: the next request starts it.
  fs.chmodSync(copy, 0o755);
  assert.equal((await chat(d)).status, 200);
  await d.stop();
});

function grandchild(d, model = 'm') {
  const m = new RegExp(`backend model=${model} pid=\\d+ stream=stderr line="fake: grandchild pid=(\\d+) sid=(\\d+)"`).exec(d.stderr);
  return m && { pid: Number(m[1]), sid: Number(m[2]) };
}

test('a grandchild that calls setsid is stopped with its backend on unload and on shutdown', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--fork-setsid-grandchild', '    unloadTimeout: 1\n') });
  assert.equal((await chat(d)).status, 200);
  const g1 = await h.waitFor(() => grandchild(d), { what: 'the grandchild line' });
  assert.equal(g1.sid, g1.pid, 'the grandchild left the backend\'s session and group');
  assert.ok(h.isAlive(g1.pid));
  // Unload: the backend and its escaped grandchild both go.
  const u = await h.post(`${d.url}/api/models/unload/m`, '');
  assert.equal(u.status, 200, u.text);
  await h.waitFor(() => !h.isAlive(g1.pid), { what: `grandchild ${g1.pid} gone after unload` });
  // The daemon's stderr is read apart from the HTTP answers: wait for the line, do not assume it.
  await d.waitLog(new RegExp(`sup model=m pid=\\d+ msg="descendant outside the process group" stray_pid=${g1.pid} pgid=${g1.pid}`));
  // Load again, then stop the daemon: d.stop() fails if the new grandchild survives.
  assert.equal((await chat(d)).status, 200);
  await h.waitFor(() => grandchild(d) && d.logCount(/line="fake: grandchild pid=/) === 2, { what: 'second grandchild' });
  await d.stop();
});

test('a grandchild that calls setsid and ignores SIGTERM is SIGKILLed after unloadTimeout', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, '--fork-setsid-grandchild --ignore-term', '    unloadTimeout: 1\n'),
  });
  assert.equal((await chat(d)).status, 200);
  const g = await h.waitFor(() => grandchild(d), { what: 'the grandchild line' });
  const [pid] = spawns(d);
  const u = await h.post(`${d.url}/api/models/unload/m`, '');
  assert.equal(u.status, 200, u.text);
  await d.waitLog(new RegExp(`sup model=m pid=${pid} msg="grace period over, sending SIGKILL"`));
  await h.waitFor(() => !h.isAlive(g.pid) && !h.isAlive(pid), { what: 'backend and grandchild gone' });
  await d.stop();
});

test('a grandchild that escaped a backend that crashed is killed when the daemon exits', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, '--fork-setsid-grandchild --exit-after 300') });
  assert.equal((await chat(d)).status, 200);
  const g = await h.waitFor(() => grandchild(d), { what: 'the grandchild line' });
  await d.waitLog(/sched model=m msg="backend exited unexpectedly"/);
  // The backend crashed by itself, so nothing walked its tree before it went: the grandchild
  // is now the daemon's child (subreaper) and lives on until the daemon exits.
  assert.ok(h.isAlive(g.pid));
  assert.equal(Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${g.pid}/status`, 'utf8'))[1]), d.proc.pid);
  await d.stop();
  assert.match(d.stderr, new RegExp(`sup msg="killing a leftover process" pid=${g.pid}`));
});
