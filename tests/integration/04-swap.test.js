// Swapping: one model at a time in the default group, a single start however many requests
// wait, and no eviction of a model that is still streaming.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

async function spawnedPid(d, model) {
  const m = await d.waitLog(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`));
  return Number(m[1]);
}

test('requesting B swaps A out: A is stopped, B runs, /running lists only B', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a --reply "I am A"
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b --reply "I am B"
`,
  });
  const ra = await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] });
  assert.equal(ra.status, 200, ra.text);
  assert.equal(ra.json.choices[0].message.content, 'I am A');
  const pidA = await spawnedPid(d, 'a');
  assert.ok(h.isAlive(pidA), 'A runs');
  let running = await h.get(`${d.url}/running`);
  assert.deepEqual(running.json.running.map((m) => [m.model, m.state]), [['a', 'ready']]);

  const rb = await h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] });
  assert.equal(rb.status, 200, rb.text);
  assert.equal(rb.json.choices[0].message.content, 'I am B');
  const pidB = await spawnedPid(d, 'b');
  assert.notEqual(pidA, pidB);
  assert.equal(h.isAlive(pidA), false, 'A was stopped before B answered');
  assert.ok(h.isAlive(pidB), 'B runs');
  assert.match(d.stderr, /sched model=a msg="unloading" reason=swap/);
  // A was gone before B was even spawned.
  assert.ok(d.stderr.indexOf(`sup model=a pid=${pidA} msg=exited`) < d.stderr.indexOf(`sup model=b pid=${pidB} msg=spawned`),
    'A exited before B was spawned');

  running = await h.get(`${d.url}/running`);
  assert.equal(running.status, 200);
  assert.deepEqual(running.json.running.map((m) => m.model), ['b']);
  assert.equal(running.json.running[0].state, 'ready');
  assert.equal(running.json.running[0].proxy, `http://127.0.0.1:${port + 1}`);
  const models = await h.get(`${d.url}/v1/models`);
  assert.deepEqual(models.json.data.map((m) => [m.id, m.state]), [['a', 'stopped'], ['b', 'ready']]);

  // And back to A: a new process.
  const ra2 = await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] });
  assert.equal(ra2.status, 200, ra2.text);
  assert.equal(h.isAlive(pidB), false, 'B stopped in turn');
  assert.equal(d.logCount(/sup model=a pid=\d+ msg=spawned/), 2);
  await d.stop();
});

test('20 concurrent requests for a stopped model cause exactly one start', async (t) => {
  const port = await h.freePorts(1);
  const dir = h.tmpdir();
  const startLog = path.join(dir, 'starts.log');
  const d = await h.startDaemon(t, {
    dir,
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 300 --start-log ${startLog}
`,
  });
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    h.post(`${d.url}${CHAT}`, { model: 'm', messages: [{ role: 'user', content: `q${i}` }] })));
  for (const r of rs) assert.equal(r.status, 200, r.text);
  const ids = new Set(rs.map((r) => r.headers.get('x-request-id')));
  assert.equal(ids.size, 20, 'twenty distinct requests');
  const starts = fs.readFileSync(startLog, 'utf8').split('\n').filter(Boolean);
  assert.equal(starts.length, 1, `backend starts: ${starts}`);
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1);
  assert.equal(d.logCount(/sched model=m state=starting/), 1);
  await h.waitFor(() => d.logCount(/access req=\S+ method=POST path="\/v1\/chat\/completions" status=200/) === 20,
    { what: 'twenty access lines' });
  await d.stop();
});

// Streams, recording the events and when the stream ended.
function stream(url, body, onEvent = () => {}) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      let text = '';
      let seen = 0;
      res.setEncoding('utf8');
      res.on('data', (s) => {
        text += s;
        const n = text.split('\n\n').length - 1;
        for (; seen < n; seen++) onEvent(seen);
      });
      res.on('end', () => resolve({ status: res.statusCode, text, endedAt: Date.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('a model that is streaming is not evicted; the other model answers afterwards', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a --chunks 10 --chunk-delay 100
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
`,
  });
  let firstEvent;
  const gotFirst = new Promise((resolve) => { firstEvent = resolve; });
  const sa = stream(`${d.url}${CHAT}`, { model: 'a', stream: true, messages: [] },
    (i) => { if (i === 0) firstEvent(); });
  await gotFirst;
  const pidA = await spawnedPid(d, 'a');

  const rbP = h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] }).then((r) => ({ ...r, at: Date.now() }));
  const a = await sa;
  const rb = await rbP;

  assert.equal(a.status, 200);
  const events = a.text.split('\n\n').filter(Boolean);
  assert.equal(events.length, 12, `10 chunks, the final one and [DONE]: ${a.text}`);
  assert.equal(events[11], 'data: [DONE]');
  const content = events.slice(0, 10).map((e) => JSON.parse(e.slice(6)).choices[0].delta.content).join('');
  assert.equal(content, 'Hello from the modelmux demo backend. Hello from the modelmux');

  assert.equal(rb.status, 200, rb.text);
  assert.ok(rb.at >= a.endedAt, 'B answered after A finished streaming');
  assert.equal(h.isAlive(pidA), false, 'A was swapped out once idle');
  assert.match(d.stderr, /sched model=a msg="unloading" reason=swap/);
  assert.equal(d.logCount(/backend closed the response early/), 0);
  await d.stop();
});
