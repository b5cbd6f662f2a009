// The request queue: single-flight loads, a bounded FIFO per model (429 when full), a wait
// deadline (503), clients that give up while queued, and swaps that only block who they affect.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function chat(d, model, extra = {}, headers = {}) {
  return h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }], ...extra }, headers);
}

async function runningOf(d, model) {
  const r = await h.get(`${d.url}/running`);
  assert.equal(r.status, 200, r.text);
  return r.json.running.find((m) => m.model === model);
}

function readLines(file) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

test('50 concurrent requests to a stopped model: exactly one start, all 50 answered', async (t) => {
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
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    chat(d, 'm', { messages: [{ role: 'user', content: `n${i}` }] })));
  for (const r of rs) assert.equal(r.status, 200, r.text);
  assert.equal(readLines(startLog).length, 1, `one backend start: ${readLines(startLog)}`);
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1);
  assert.equal(d.logCount(/sched model=m state=starting/), 1);
  const m = await runningOf(d, 'm');
  assert.equal(m.queued, 0);
  assert.equal(m.inflight, 0);
  await d.stop();
});

test('a full queue answers 429 with Retry-After and an OpenAI error; the others are served', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
queue:
  maxPerModel: 2
models:
  slow:
    cmd: ${h.FAKE} --port \${PORT} --model slow --delay 700
    concurrencyLimit: 1
`,
  });
  const warm = await chat(d, 'slow');
  assert.equal(warm.status, 200, warm.text);
  // One in flight, two queued, the fourth refused.
  const first = chat(d, 'slow');
  await h.waitFor(async () => (await runningOf(d, 'slow')).inflight === 1, { what: 'first in flight' });
  const queued = [chat(d, 'slow'), chat(d, 'slow')];
  await h.waitFor(async () => (await runningOf(d, 'slow')).queued === 2, { what: 'two queued' });
  const t0 = Date.now();
  const refused = await chat(d, 'slow');
  assert.ok(Date.now() - t0 < 500, 'refused at once, not after waiting');
  h.assertError(refused, 429, /too many requests waiting for model slow/);
  assert.equal(refused.json.error.type, 'rate_limit_error');
  const ra = refused.headers.get('retry-after');
  assert.match(String(ra), /^\d+$/, `Retry-After: ${ra}`);
  assert.ok(Number(ra) >= 1);
  await d.waitLog(/sched model=slow msg="queue full"/);
  for (const r of [await first, ...(await Promise.all(queued))]) assert.equal(r.status, 200, r.text);
  await d.stop();
});

test('queue maxTotal bounds the waiters of all models together', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
queue:
  maxTotal: 1
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a --health-delay 600
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b --health-delay 600
groups:
  g:
    swap: false
    members: [a, b]
`,
  });
  const pa = chat(d, 'a');
  await h.waitFor(async () => (await runningOf(d, 'a'))?.queued === 1, { what: 'a queued' });
  const rb = await chat(d, 'b');
  h.assertError(rb, 429, /too many requests waiting for model b/);
  assert.ok(rb.headers.get('retry-after'), 'Retry-After on 429');
  assert.equal((await pa).status, 200);
  await d.stop();
});

test('a request waiting past maxWaitSeconds gets 503 with Retry-After; the load goes on', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
queue:
  maxWaitSeconds: 1
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --health-delay 2500
`,
  });
  const t0 = Date.now();
  const r = await chat(d, 'm');
  const took = Date.now() - t0;
  h.assertError(r, 503, /timed out after 1 s waiting for model m/);
  assert.ok(took >= 900 && took < 2200, `503 after ${took} ms, maxWaitSeconds is 1`);
  assert.match(String(r.headers.get('retry-after')), /^\d+$/);
  await d.waitLog(/sched model=m msg="queue wait deadline passed"/);
  // The start was not abandoned: the model becomes ready and serves the next request.
  await d.waitLog(/sched model=m state=ready/, 4000);
  const ok = await chat(d, 'm');
  assert.equal(ok.status, 200, ok.text);
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1);
  await d.stop();
});

test('a request waiting behind a busy model past maxWaitSeconds gets 503 too', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
queue:
  maxWaitSeconds: 1
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --chunks 5 --chunk-delay 300
    concurrencyLimit: 1
`,
  });
  assert.equal((await chat(d, 'm')).status, 200);
  const long = chat(d, 'm', { stream: true });
  await h.waitFor(async () => (await runningOf(d, 'm')).inflight === 1, { what: 'stream in flight' });
  const t0 = Date.now();
  const r = await chat(d, 'm');
  const took = Date.now() - t0;
  h.assertError(r, 503, /waiting for model m/);
  assert.ok(took >= 900 && took < 2000, `503 after ${took} ms`);
  assert.ok(r.headers.get('retry-after'), 'Retry-After on 503');
  const s = await long;
  assert.equal(s.status, 200);
  assert.match(s.text, /data: \[DONE\]/);
  await d.stop();
});

test('a client that disconnects while queued leaves the queue at once and never reaches the backend',
  async (t) => {
    const port = await h.freePorts(1);
    const dir = h.tmpdir();
    const reqLog = path.join(dir, 'requests.log');
    const d = await h.startDaemon(t, {
      dir,
      config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m --delay 1000 --request-log ${reqLog}
    concurrencyLimit: 1
`,
    });
    const busy = chat(d, 'm', {}, { 'X-Mark': 'busy' });
    await h.waitFor(async () => (await runningOf(d, 'm'))?.inflight === 1, { timeout: 5000, what: 'busy in flight' });
    const ac = new AbortController();
    const gone = fetch(`${d.url}${CHAT}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Mark': 'gave-up' },
      body: JSON.stringify({ model: 'm', messages: [] }),
      signal: ac.signal,
    }).then(() => 'answered', (e) => e.name);
    await h.waitFor(async () => (await runningOf(d, 'm')).queued === 1, { what: 'second request queued' });
    ac.abort();
    assert.equal(await gone, 'AbortError');
    const t0 = Date.now();
    await h.waitFor(async () => (await runningOf(d, 'm')).queued === 0, { timeout: 500, what: 'queue to empty' });
    assert.ok(Date.now() - t0 < 500);
    const b = await busy;
    assert.equal(b.status, 200, b.text);
    // Give a wrongly kept request the chance to reach the backend, then look.
    await h.sleep(300);
    const m = await runningOf(d, 'm');
    assert.equal(m.inflight, 0);
    const logged = readLines(reqLog).map((l) => JSON.parse(l)).filter((o) => o.path === CHAT);
    assert.equal(logged.length, 1, `only the busy request reached the backend: ${JSON.stringify(logged)}`);
    assert.doesNotMatch(fs.readFileSync(reqLog, 'utf8'), /gave-up/);
    await d.stop();
  });

test('a pending swap does not hold up requests to a model it does not affect', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a --chunks 6 --chunk-delay 200
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
  p:
    cmd: ${h.FAKE} --port \${PORT} --model p
groups:
  llms:
    members: [a, b]
  keep:
    persistent: true
    exclusive: false
    members: [p]
`,
  });
  assert.equal((await chat(d, 'p')).status, 200);
  assert.equal((await chat(d, 'a')).status, 200);
  const stream = chat(d, 'a', { stream: true }); // ~1.2 s; a cannot be evicted meanwhile
  await h.waitFor(async () => (await runningOf(d, 'a')).inflight === 1, { what: 'a streaming' });
  const tb = Date.now();
  const wantB = chat(d, 'b'); // waits for a to finish
  // b stays pending while a streams (a busy model is never evicted); /running does not list a
  // stopped model's waiters, so prove it over a short window.
  const early = await Promise.race([wantB.then(() => 'answered'), h.sleep(300).then(() => 'pending')]);
  assert.equal(early, 'pending', 'b must wait for a\'s stream');
  assert.doesNotMatch(d.stderr, /model=a msg="unloading"/, 'busy a not evicted');
  // p answers at once although a swap is pending.
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    const r = await chat(d, 'p');
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - t0 < 400, `p took ${Date.now() - t0} ms behind the pending swap`);
  }
  const s = await stream;
  assert.match(s.text, /data: \[DONE\]/, 'a\'s stream completes intact');
  const rb = await wantB;
  assert.equal(rb.status, 200, rb.text);
  assert.ok(Date.now() - tb >= 600, 'b waited for a');
  assert.equal(d.logCount(/sup model=p pid=\d+ msg=spawned/), 1, 'p never restarted');
  await d.stop();
});

test('queue maxPerModel: 0 either fails the config check or still lets a request load the model', async (t) => {
  const port = await h.freePorts(1);
  const config = `startPort: ${port}\nqueue:\n  maxPerModel: 0\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m\n`;
  const dir = h.tmpdir();
  fs.writeFileSync(path.join(dir, 'c.yaml'), config);
  const { spawnSync } = require('node:child_process');
  const check = spawnSync(h.MODELMUX, ['-t', '-c', path.join(dir, 'c.yaml')], { encoding: 'utf8', timeout: 10000 });
  if (check.status === 1) {
    assert.match(check.stderr, /queue\.maxPerModel/);
    return;
  }
  const d = await h.startDaemon(t, { config });
  const r = await chat(d, 'm');
  assert.equal(r.status, 200, `a model that can never be loaded: ${r.text}`);
  await d.stop();
});

test('a busy model wanted for a swap is not stopped only to be restarted for its own older waiters', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a --delay 300
    concurrencyLimit: 1
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b
`,
  });
  assert.equal((await chat(d, 'a')).status, 200);
  const first = chat(d, 'a');
  await h.waitFor(async () => (await runningOf(d, 'a')).inflight === 1, { what: 'a busy' });
  const second = chat(d, 'a'); // queued behind the first, before b asks
  await h.waitFor(async () => (await runningOf(d, 'a')).queued === 1, { what: 'a queued' });
  const b = chat(d, 'b');
  const rs = await Promise.all([first, second, b]);
  for (const r of rs) assert.equal(r.status, 200, r.text);
  // Either a serves its older waiter before it goes (one start), or b runs before a comes back.
  const starts = [...d.stderr.matchAll(/sched model=(\w+) state=starting/g)].map((m) => m[1]);
  assert.ok(starts.join(',') === 'a,b' || starts.join(',') === 'a,b,a',
    `start order ${starts.join(',')}: a was restarted ahead of b just to be stopped again`);
  await d.stop();
});
