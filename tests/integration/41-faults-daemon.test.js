// Faults survived, part 2: the daemon itself under attack — SIGKILL, file descriptors run out,
// clients that leave at every phase, a storm of SIGHUPs under traffic. The map of which file
// covers each fault is at the top of 40-faults.test.js. d.stop() fails if any process carrying
// the daemon's MM_TEST_TAG environment variable survives.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function spawns(d, model = 'm') {
  return [...d.stderr.matchAll(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g'))].map((x) => Number(x[1]));
}

function connect(d) {
  const i = d.addr.lastIndexOf(':');
  const s = net.connect(Number(d.addr.slice(i + 1)), d.addr.slice(0, i));
  const c = { s, data: '', closed: false };
  s.on('data', (b) => { c.data += b.toString('latin1'); });
  s.on('error', () => {});
  s.on('close', () => { c.closed = true; });
  c.ready = new Promise((resolve) => s.once('connect', resolve));
  return c;
}

function chatHead(body) {
  return `POST ${CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
}

function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

function metric(text, name) {
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

test('SIGKILL of the daemon takes its backends with it (parent-death signal), loading ones too', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
groups:
  all:
    swap: false
    members: [a, slow]
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  slow:
    cmd: ${h.FAKE} --port \${PORT} --model slow --health-delay 60000
`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  const pending = h.post(`${d.url}${CHAT}`, { model: 'slow', messages: [] }).catch((e) => ({ error: e }));
  await d.waitLog(/sup model=slow pid=\d+ msg=spawned/);
  const pids = [...spawns(d, 'a'), ...spawns(d, 'slow')];
  assert.equal(pids.length, 2);
  for (const pid of pids) assert.ok(h.isAlive(pid));
  d.proc.kill('SIGKILL');
  await d.exited;
  assert.equal(d.exit.signal, 'SIGKILL');
  await h.waitFor(() => pids.every((pid) => !h.isAlive(pid)), { what: `backends ${pids} to die with the daemon` });
  const r = await pending;
  assert.ok(r.error, 'the waiting client sees its connection end, not an answer');
  await d.stop({ expectCode: null }); // checks that no tagged process is left
});

test('SIGKILL of the daemon also ends a backend\'s grandchild that called setsid', {
  todo: 'not reachable from inside: PR_SET_PDEATHSIG reaches direct children only and nobody is left to ' +
    'kill the rest; the systemd unit\'s cgroup (KillMode=mixed) covers it in production',
}, async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --fork-setsid-grandchild\n`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] })).status, 200);
  const g = Number((await d.waitLog(/line="fake: grandchild pid=(\d+)/))[1]);
  d.proc.kill('SIGKILL');
  await d.exited;
  await h.waitFor(() => !h.isAlive(g), { timeout: 2000, what: `grandchild ${g} to die` });
});

test('fd exhaustion: new connections wait (no crash, no busy loop, one warning); it recovers once fds free up',
  async (t) => {
    const port = await h.freePorts(1);
    const d = await h.startDaemon(t, {
      config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
    });
    assert.equal((await h.rawRequest(`${d.url}${CHAT}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"model":"m","messages":[]}',
    })).status, 200);
    const pid = d.proc.pid;
    const base = fs.readdirSync(`/proc/${pid}/fd`).length;
    // As `ulimit -n` would at start, but on the running daemon: room for a few connections.
    h.execFileSync('prlimit', ['--pid', String(pid), `--nofile=${base + 6}:`]);
    const held = [];
    for (let i = 0; i < 30; i++) held.push(connect(d));
    await d.waitLog(/warn http msg="out of file descriptors: new connections wait until one closes" connections=\d+/);
    // A connection the daemon had accepted still gets answers that need no new fd.
    const first = held[0];
    first.s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await h.waitFor(() => /^HTTP\/1\.1 200 /.test(first.data), { what: '/health on an accepted connection' });
    // A new connection is not served while fds are out (it waits in the backlog): no crash.
    const c0 = cpuTicks(pid);
    const late = await h.curl(['-m', '1', '-o', '/dev/null', '-w', '%{http_code}', `${d.url}/health`]);
    assert.notEqual(late.code, 0, `served although out of fds? ${late.stdout}`);
    assert.equal(d.exit, null, 'the daemon is alive');
    const spent = cpuTicks(pid) - c0;
    assert.ok(spent < 30, `the daemon spun the CPU while out of fds (${spent} ticks in ~1 s)`);
    assert.equal(d.logCount(/out of file descriptors/), 1, 'one warning, not one per attempt');
    // Freed: it accepts again by itself (MHD resumes accept() only on its next run), and serves.
    for (const c of held) c.s.destroy();
    await h.waitFor(async () => (await h.curl(['-m', '1', '-o', '/dev/null', '-w', '%{http_code}', `${d.url}/health`])).stdout === '200',
      { timeout: 5000, what: 'the daemon to accept again' });
    h.execFileSync('prlimit', ['--pid', String(pid), '--nofile=1024:']);
    const ok = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
    assert.equal(ok.status, 200, ok.text);
    await d.stop();
  });

test('a model start that runs out of fds answers 502 naming the cause; the next one succeeds', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n` });
  const pid = d.proc.pid;
  const c = connect(d);
  await c.ready;
  await h.waitFor(() => fs.readdirSync(`/proc/${pid}/fd`).length > 0, { what: 'fds' });
  // Every fd but the ones in use: the spawn's pipes cannot be made.
  await h.sleep(50);
  const used = fs.readdirSync(`/proc/${pid}/fd`).length;
  h.execFileSync('prlimit', ['--pid', String(pid), `--nofile=${used + 1}:`]);
  const body = '{"model":"m","messages":[]}';
  c.s.write(chatHead(body) + body);
  await h.waitFor(() => /\r\n\r\n\{.*\}$/.test(c.data), { what: 'an answer' });
  assert.match(c.data, /^HTTP\/1\.1 502 /);
  const json = JSON.parse(c.data.slice(c.data.indexOf('\r\n\r\n') + 4));
  assert.equal(json.error.code, 'backend_start_failed');
  assert.match(json.error.message, /model m failed to start: .*Too many open files/);
  await d.waitLog(/warn sched model=m msg="start failed" .*Too many open files/);
  assert.equal(spawns(d).length, 0);
  c.s.destroy();
  h.execFileSync('prlimit', ['--pid', String(pid), '--nofile=1024:']);
  const ok = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(ok.status, 200, ok.text);
  await d.stop();
});

test('a client leaving at every phase (head, body, load, queue, stream) leaks nothing', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 700 --chunks 40 --chunk-delay 50
    concurrencyLimit: 1
`,
  });
  const body = JSON.stringify({ model: 'm', stream: true, messages: [] });
  const metrics0 = (await h.get(`${d.url}/metrics`)).text;
  // 1. Half a head, then gone.
  const head = connect(d);
  await head.ready;
  head.s.write(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nContent-Ty`);
  // 2. A head and part of the body, then gone.
  const part = connect(d);
  await part.ready;
  part.s.write(chatHead(body) + body.slice(0, 10));
  await h.sleep(100);
  head.s.destroy();
  part.s.destroy();
  // 3. A whole request that starts the model, gone while it loads.
  const load = connect(d);
  await load.ready;
  load.s.write(chatHead(body) + body);
  await d.waitLog(/sup model=m pid=\d+ msg=spawned/);
  load.s.destroy();
  // The load goes on (a start is never wasted) and ends ready, with nobody waiting.
  await d.waitLog(/sched model=m state=ready/, 5000);
  // 4. One request holds the only slot (a long stream); another queues behind it, then leaves.
  const ctl = new AbortController();
  const res = await fetch(`${d.url}${CHAT}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body, signal: ctl.signal,
  });
  const reader = res.body.getReader();
  await reader.read();
  const queued = connect(d);
  await queued.ready;
  queued.s.write(chatHead(body) + body);
  await h.waitFor(async () => {
    const run = (await h.get(`${d.url}/running`)).json.running;
    return run[0] && run[0].queued === 1 && run[0].inflight === 1;
  }, { what: 'one in flight, one queued' });
  queued.s.destroy();
  await h.waitFor(async () => (await h.get(`${d.url}/running`)).json.running[0].queued === 0,
    { what: 'the queue to empty' });
  // 5. The stream's client leaves in the middle.
  ctl.abort();
  await d.waitLog(/end=client_abort/);
  // Nothing leaked: nothing in flight or queued, no connection counted, same fds, one backend.
  await h.waitFor(async () => {
    const run = (await h.get(`${d.url}/running`)).json.running;
    return run.length === 1 && run[0].state === 'ready' && run[0].inflight === 0 && run[0].queued === 0;
  }, { what: 'the model ready, idle' });
  await h.waitFor(async () => {
    const m = (await h.rawRequest(`${d.url}/metrics`)).text;
    return metric(m, 'modelmux_http_connections') === 1 &&
      metric(m, 'modelmux_process_open_fds') <= metric(metrics0, 'modelmux_process_open_fds') + 4;
  }, { what: 'connections back to just this one, fds back to the start (+ the backend\'s pipes and one kept upstream connection)' });
  const pids = spawns(d);
  assert.equal(pids.length, 1, 'one start for all of it');
  assert.ok(h.isAlive(pids[0]));
  // Still serving, with the slot free.
  const ok = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(ok.status, 200, ok.text);
  await d.stop();
});

test('50 SIGHUPs while requests run: every request gets a complete answer, the daemon lives on', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
groups:
  all:
    swap: false
    members: [s, q]
models:
  s:
    cmd: ${h.FAKE} --port \${PORT} --model s --chunks 10 --chunk-delay 30
  q:
    cmd: ${h.FAKE} --port \${PORT} --model q --delay 20
`,
  });
  // Load both first, so the storm hits requests in flight.
  for (const m of ['s', 'q']) assert.equal((await h.post(`${d.url}${CHAT}`, { model: m, messages: [] })).status, 200);
  const reqs = [];
  for (let i = 0; i < 30; i++) {
    reqs.push(i % 2 === 0
      ? h.streamRaw(`${d.url}${CHAT}`, { model: 's', stream: true, messages: [] })
      : h.post(`${d.url}${CHAT}`, { model: 'q', messages: [] }));
  }
  for (let i = 0; i < 50; i++) {
    d.signal('SIGHUP');
    await h.sleep(5);
  }
  const results = await Promise.all(reqs);
  results.forEach((r, i) => {
    assert.equal(r.status, 200, `request ${i}: ${r.text}`);
    if (i % 2 === 0) {
      assert.match(r.text, /data: \[DONE\]\n\n$/, `stream ${i} complete`);
      assert.equal(r.how, 'end', `stream ${i} ended ${r.how}`);
    } else {
      assert.equal(r.json.object, 'chat.completion');
    }
  });
  await d.waitLog(/configuration reloaded/);
  assert.equal(d.exit, null);
  assert.doesNotMatch(d.stderr, /reload refused/);
  // The configuration did not change: no backend was restarted.
  assert.equal(spawns(d, 's').length, 1);
  assert.equal(spawns(d, 'q').length, 1);
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'q', messages: [] })).status, 200);
  await d.stop();
});
