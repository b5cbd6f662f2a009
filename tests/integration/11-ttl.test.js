// ttl / globalTTL: an idle model is unloaded ttl seconds after its last request ended; activity
// (short requests or one long stream) keeps it loaded.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

async function chat(d, model) {
  const r = await h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, `${model}: ${r.text}`);
  return r;
}

async function running(d) {
  const r = await h.get(`${d.url}/running`);
  assert.equal(r.status, 200, r.text);
  return r.json.running;
}

// Streams a request to its end; resolves with the raw text and how it ended.
function stream(url, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('ttl: 1 unloads an idle model about a second after its last request', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m
    ttl: 1
`,
  });
  await chat(d, 'm');
  const done = Date.now();
  const pid = Number((await d.waitLog(/sup model=m pid=(\d+) msg=spawned/))[1]);
  const run = await running(d);
  assert.equal(run.length, 1);
  assert.equal(run[0].model, 'm');
  assert.equal(run[0].ttl, 1);
  await d.waitLog(/sched model=m msg="unloading" reason=ttl/, 4000);
  const unloadedAfter = Date.now() - done;
  assert.ok(unloadedAfter >= 800, `unloaded only ${unloadedAfter} ms after the request ended`);
  assert.ok(unloadedAfter < 2500, `unloaded ${unloadedAfter} ms after the request ended, ttl is 1 s`);
  await d.waitLog(/sched model=m state=stopped/);
  assert.deepEqual(await running(d), []);
  assert.equal(h.isAlive(pid), false, 'backend gone');
  const list = await h.get(`${d.url}/v1/models`);
  assert.equal(list.json.data[0].state, 'stopped');
  // The next request starts it again.
  await chat(d, 'm');
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 2);
  await d.stop();
});

test('requests every 400 ms keep a ttl: 1 model loaded; it unloads once they stop', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m
    ttl: 1
`,
  });
  await chat(d, 'm');
  const t0 = Date.now();
  // 2 s of traffic: twice the ttl, counted from the first request.
  while (Date.now() - t0 < 2000) {
    await h.sleep(400);
    await chat(d, 'm');
  }
  assert.doesNotMatch(d.stderr, /reason=ttl/, 'unloaded while requests kept coming');
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1, 'one start for all requests');
  const last = Date.now();
  await d.waitLog(/sched model=m msg="unloading" reason=ttl/, 4000);
  const idle = Date.now() - last;
  assert.ok(idle >= 800 && idle < 2500, `unloaded ${idle} ms after the last request`);
  await d.stop();
});

test('ttl counts from the end of a long stream: a 2.5 s stream with ttl: 1 is not cut', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  s:
    cmd: ${h.FAKE} --port \${PORT} --model s --chunks 10 --chunk-delay 250
    ttl: 1
`,
  });
  await chat(d, 's'); // loaded, and its ttl timer armed
  const t0 = Date.now();
  const r = await stream(`${d.url}${CHAT}`, { model: 's', stream: true, messages: [] });
  const end = Date.now();
  assert.equal(r.status, 200);
  assert.ok(end - t0 >= 2000, `the stream took ${end - t0} ms`);
  assert.match(r.text, /data: \[DONE\]\n\n$/, `stream complete: ${r.text.slice(-200)}`);
  const events = r.text.split('\n\n').filter((s) => s.startsWith('data: {'));
  assert.equal(events.length, 11, 'ten content chunks and the final one');
  assert.doesNotMatch(d.stderr, /reason=ttl/, 'unloaded during the stream');
  assert.equal(d.logCount(/sup model=s pid=\d+ msg=spawned/), 1);
  await d.waitLog(/sched model=s msg="unloading" reason=ttl/, 4000);
  const idle = Date.now() - end;
  assert.ok(idle >= 800, `unloaded ${idle} ms after the stream ended, ttl is 1 s`);
  await d.stop();
});

test('globalTTL applies to models with ttl -1 (the default); ttl: 0 never unloads', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
globalTTL: 1
models:
  dflt:
    cmd: ${h.FAKE} --port \${PORT} --model dflt
  minus:
    cmd: ${h.FAKE} --port \${PORT} --model minus
    ttl: -1
  keep:
    cmd: ${h.FAKE} --port \${PORT} --model keep
    ttl: 0
groups:
  all:
    swap: false
    members: [dflt, minus, keep]
`,
  });
  await Promise.all([chat(d, 'dflt'), chat(d, 'minus'), chat(d, 'keep')]);
  const run = await running(d);
  assert.deepEqual(run.map((m) => [m.model, m.ttl]).sort(), [['dflt', 1], ['keep', 0], ['minus', 1]]);
  await d.waitLog(/sched model=dflt msg="unloading" reason=ttl/, 4000);
  await d.waitLog(/sched model=minus msg="unloading" reason=ttl/, 4000);
  await h.waitFor(async () => (await running(d)).length === 1, { what: 'two models unloaded' });
  // keep is still there well past the global ttl.
  await h.sleep(800);
  assert.deepEqual((await running(d)).map((m) => m.model), ['keep']);
  assert.doesNotMatch(d.stderr, /model=keep msg="unloading"/);
  await d.stop();
});
