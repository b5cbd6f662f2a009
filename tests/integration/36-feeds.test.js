// Logs and events over HTTP: /logs, /logs/stream[/<model>], /api/events; slow readers stay bounded.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function config(port, extra = '') {
  return `startPort: ${port}\nmodels:\n  a:\n    cmd: ${h.FAKE} --port \${PORT} --model a ${extra}\n` +
    `  b:\n    cmd: ${h.FAKE} --port \${PORT} --model b\n`;
}

// Reads a streaming response incrementally; returns { res, done, text(), error(), stop() }.
// It reads through the body's own reader rather than `for await`, which under Debian's Node 18
// (undici) once missed the abort and waited minutes: stop() aborts the request and cancels the
// reader, then waits at most FOLLOW_STOP_MS for the loop; no follower reads past FOLLOW_MAX_MS.
const FOLLOW_STOP_MS = 3000;
const FOLLOW_MAX_MS = 60000;

function within(promise, ms) {
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function follow(url) {
  const ctl = new AbortController();
  const res = await fetch(url, { signal: ctl.signal });
  const reader = res.body.getReader();
  let text = '';
  let error = null;
  const cancel = () => {
    ctl.abort();
    reader.cancel().catch(() => {});
  };
  const limit = setTimeout(() => {
    error = error || new Error(`the feed was still open after ${FOLLOW_MAX_MS} ms`);
    cancel();
  }, FOLLOW_MAX_MS);
  limit.unref();
  const done = (async () => {
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        text += dec.decode(value, { stream: true });
      }
    } catch (e) { error = error || e; /* aborted, or cut */ }
    clearTimeout(limit);
  })();
  return {
    res, done, text: () => text, error: () => error,
    stop: async () => { cancel(); await within(done, FOLLOW_STOP_MS); },
  };
}

test('/logs has recent history; /logs/stream/<model> follows one model live', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  // A running backend's output is read in batches (SUP_PIPE_GAP_MS): its line may follow the answer.
  const logs = await h.waitFor(async () => {
    const l = await h.get(`${d.url}/logs`);
    return /backend model=a pid=\d+ stream=stderr line="fake: POST \/v1\/chat\/completions"/.test(l.text) && l;
  }, { what: "the backend's line in /logs" });
  assert.equal(logs.status, 200);
  assert.match(logs.headers.get('content-type'), /text\/plain/);
  assert.match(logs.text, /sched model=a state=ready/);

  const f = await follow(`${d.url}/logs/stream/b?no-history`);
  assert.equal(f.res.status, 200);
  assert.equal(f.res.headers.get('x-accel-buffering'), 'no');
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] })).status, 200);
  await h.waitFor(() => /sched model=b state=ready/.test(f.text()), { what: 'b in the stream' });
  await h.waitFor(() => /model="b"/.test(f.text()), { what: "b's access line" });
  assert.doesNotMatch(f.text(), /model=a /, 'only lines about b');
  assert.doesNotMatch(f.text(), /msg=ready version/, 'no history with ?no-history');
  await f.stop();
  await d.stop();
});

test('stopping the daemon ends open feeds cleanly and it exits 0, even as their clients leave', async (t) => {
  const port = await h.freePorts(2);
  // Followers that stay: both streams end with what they hold, as a finished response.
  const d = await h.startDaemon(t, { config: config(port) });
  const logs = await follow(`${d.url}/logs/stream`);
  const events = await follow(`${d.url}/api/events`);
  await h.waitFor(() => /"model":"b"/.test(events.text()), { what: 'the events snapshot' });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  await h.waitFor(() => /model="a"/.test(logs.text()), { what: "a's access line in the feed" });
  await d.stop();
  for (const f of [logs, events]) {
    const outcome = await Promise.race([f.done.then(() => 'ended'), h.sleep(3000).then(() => 'open')]);
    assert.equal(outcome, 'ended');
    assert.equal(f.error(), null, 'a clean end, not a cut');
  }
  assert.equal(d.logCount(/access .*path="\/(logs\/stream|api\/events)" status=200 .*end=ok/), 2);
  // With no model running the loop ends at once: the feed still gets its end.
  const d3 = await h.startDaemon(t, { config: config(port) });
  const hist = await follow(`${d3.url}/logs/stream`);
  await h.waitFor(() => /msg=ready version/.test(hist.text()), { what: 'the history' });
  await d3.stop();
  assert.equal(await Promise.race([hist.done.then(() => 'ended'), h.sleep(3000).then(() => 'open')]), 'ended');
  assert.equal(hist.error(), null, 'a clean end, not a cut');
  // A follower that leaves just as the daemon is told to stop (still suspended when MHD stops:
  // libmicrohttpd aborted the process on that).
  for (let i = 0; i < 5; i++) {
    const d2 = await h.startDaemon(t, { config: config(port) });
    const f = await follow(`${d2.url}/logs/stream/b?no-history`);
    await f.stop();
    await d2.stop();
  }
});

test('a feed asked for during the stop, on a kept-alive connection, gets its history and an end', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port, '--chunks 40 --chunk-delay 50') });
  // A 2 s stream keeps the daemon in its grace period.
  const slow = h.streamRaw(`${d.url}${CHAT}`, { model: 'a', stream: true, messages: [] });
  await d.waitLog(/sched model=a state=ready/);
  const [host, p] = d.addr.split(':');
  const sock = net.connect(Number(p), host);
  let got = '';
  sock.on('data', (b) => { got += b.toString('latin1'); });
  sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  await h.waitFor(() => got.endsWith('\r\n\r\nOK'), { what: 'the /health answer' });
  got = '';
  d.signal('SIGTERM');
  await d.waitLog(/msg="stopping" signal=/);
  sock.write('GET /logs/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  await h.waitFor(() => got.endsWith('\r\n0\r\n\r\n'), { timeout: 3000, what: 'the feed, ended' });
  assert.match(got, /^HTTP\/1\.1 200 /);
  assert.match(got, /msg="stopping" signal=/);
  sock.destroy();
  assert.equal((await slow).how, 'end');
  await d.stop();
});

test('/api/events: a snapshot of every model, then each state change', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const f = await follow(`${d.url}/api/events`);
  assert.match(f.res.headers.get('content-type'), /text\/event-stream/);
  await h.waitFor(() => /"model":"b","state":"stopped"/.test(f.text()), { what: 'snapshot' });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  await h.waitFor(() => /"model":"a","state":"ready"/.test(f.text()), { what: 'a ready event' });
  const events = f.text().split('\n\n').filter(Boolean).map((e) => JSON.parse(e.replace(/^data: /, '')));
  const states = events.filter((e) => e.model === 'a').map((e) => e.state);
  assert.deepEqual(states, ['stopped', 'starting', 'ready']);
  assert.ok(events.every((e) => e.type === 'modelStatus'));
  await f.stop();
  await d.stop();
});

test('a log reader that never reads does not grow the daemon, and learns what it missed', async (t) => {
  const port = await h.freePorts(2);
  // The backend prints 150 000 lines at start: about 15 MB through the daemon's log.
  const d = await h.startDaemon(t, { config: config(port, '--stderr-lines 150000') });
  const [host, p] = d.addr.split(':');
  const sock = net.connect(Number(p), host);
  await new Promise((resolve) => sock.once('connect', resolve));
  sock.write(`GET /logs/stream?no-history HTTP/1.1\r\nHost: x\r\n\r\n`);
  sock.pause(); // never read
  const before = h.rssKb(d.proc.pid);
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  // (a plain substring test: the daemon's stderr is many megabytes by now)
  await h.waitFor(() => d.stderr.includes('fake: loading layer 149999"'),
    { timeout: 60000, interval: 200, what: 'the last backend line' });
  const after = h.rssKb(d.proc.pid);
  if (!h.SANITIZED) assert.ok(after - before < 16 * 1024, `RSS grew ${after - before} kB`);
  // Now read: the stream says how many lines it dropped.
  let got = '';
  sock.on('data', (b) => { got += b.toString(); });
  sock.resume();
  await h.waitFor(() => /-- \d+ lines missed --/.test(got), { timeout: 10000, what: 'the missed marker' });
  sock.destroy();
  await d.stop();
});

test('logFormat: json writes one JSON object per line with the same fields', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: `logFormat: json\n${config(port)}` });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] }, { 'X-Request-ID': 'json-1' });
  assert.equal(r.status, 200);
  await h.waitFor(() => d.stderr.includes('"module":"access"'), { what: 'the access line' });
  await d.stop();
  const lines = d.stderr.trim().split('\n').filter((l) => l.startsWith('{'));
  const objs = lines.map((l) => JSON.parse(l));
  assert.ok(objs.some((o) => o.module === 'main' && o.msg === 'ready' && /^127\.0\.0\.1:/.test(o.listen)));
  const access = objs.find((o) => o.module === 'access');
  assert.equal(access.req, 'json-1');
  assert.equal(access.status, '200');
  assert.equal(access.path, '/v1/chat/completions');
  assert.ok(objs.some((o) => o.module === 'backend' && o.model === 'a' && /fake: POST/.test(o.line)));
});
