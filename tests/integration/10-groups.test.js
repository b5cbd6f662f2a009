// Groups (llama-swap rules): swap inside a group, exclusive across groups, persistent members
// that nothing evicts. Checked through /running and the backends' pids.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

// The pid of the n-th spawn (0-based) of `model`, from the daemon log.
async function pidOf(d, model, n = 0) {
  const re = new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g');
  const all = await h.waitFor(() => {
    const m = [...d.stderr.matchAll(re)];
    return m.length > n ? m : null;
  }, { what: `spawn #${n} of ${model}` });
  return Number(all[n][1]);
}

async function chat(d, model) {
  const r = await h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, `${model}: ${r.text}`);
  assert.equal(r.json.echo.model, model);
  return r;
}

async function running(d) {
  const r = await h.get(`${d.url}/running`);
  assert.equal(r.status, 200, r.text);
  return r.json.running.map((m) => m.model).sort();
}

function models(names) {
  return names.map((n) => `  ${n}:\n    cmd: ${h.FAKE} --port \${PORT} --model ${n}\n`).join('');
}

test('a group with swap: false runs its members together', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['a', 'b', 'c'])}
groups:
  together:
    swap: false
    members: [a, b]
`,
  });
  await chat(d, 'a');
  const pidA = await pidOf(d, 'a');
  await chat(d, 'b');
  const pidB = await pidOf(d, 'b');
  assert.ok(h.isAlive(pidA), 'a still runs next to b');
  assert.ok(h.isAlive(pidB));
  assert.deepEqual(await running(d), ['a', 'b']);
  // Both answer again without a restart.
  await chat(d, 'a');
  await chat(d, 'b');
  assert.equal(d.logCount(/sup model=a pid=\d+ msg=spawned/), 1);
  assert.equal(d.logCount(/sup model=b pid=\d+ msg=spawned/), 1);
  assert.doesNotMatch(d.stderr, /msg="unloading"/);
  // c lives in the default group, which is exclusive: loading it stops both.
  await chat(d, 'c');
  assert.equal(h.isAlive(pidA), false, 'a evicted by the exclusive default group');
  assert.equal(h.isAlive(pidB), false, 'b evicted by the exclusive default group');
  assert.deepEqual(await running(d), ['c']);
  await d.stop();
});

test('loading a member of an exclusive group evicts the members of other groups', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['a1', 'a2', 'x'])}
groups:
  shared:
    swap: false
    exclusive: false
    members: [a1, a2]
  solo:
    exclusive: true
    members: [x]
`,
  });
  await chat(d, 'a1');
  await chat(d, 'a2');
  const p1 = await pidOf(d, 'a1');
  const p2 = await pidOf(d, 'a2');
  assert.deepEqual(await running(d), ['a1', 'a2']);
  await chat(d, 'x');
  const px = await pidOf(d, 'x');
  assert.equal(h.isAlive(p1), false, 'a1 evicted');
  assert.equal(h.isAlive(p2), false, 'a2 evicted');
  assert.ok(h.isAlive(px));
  assert.deepEqual(await running(d), ['x']);
  assert.match(d.stderr, /sched model=a1 msg="unloading" reason=swap/);
  assert.match(d.stderr, /sched model=a2 msg="unloading" reason=swap/);
  // Both were reaped before x was spawned.
  const xAt = d.stderr.indexOf(`sup model=x pid=${px} msg=spawned`);
  assert.ok(d.stderr.indexOf(`pid=${p1} msg=exited`) < xAt, 'a1 reaped before x spawned');
  assert.ok(d.stderr.indexOf(`pid=${p2} msg=exited`) < xAt, 'a2 reaped before x spawned');
  await d.stop();
});

test('loading a member of a non-exclusive group leaves other groups running', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['a', 'b'])}
groups:
  first:
    members: [a]
  second:
    exclusive: false
    members: [b]
`,
  });
  await chat(d, 'a');
  const pa = await pidOf(d, 'a');
  await chat(d, 'b');
  const pb = await pidOf(d, 'b');
  assert.ok(h.isAlive(pa), 'a survives the load of b');
  assert.ok(h.isAlive(pb));
  assert.deepEqual(await running(d), ['a', 'b']);
  assert.doesNotMatch(d.stderr, /msg="unloading"/);
  await d.stop();
});

test('a persistent group\'s member survives the load of an exclusive group', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['embed', 'big1', 'big2'])}
groups:
  always:
    persistent: true
    swap: false
    exclusive: false
    members: [embed]
  llms:
    swap: true
    exclusive: true
    members: [big1, big2]
`,
  });
  await chat(d, 'embed');
  const pe = await pidOf(d, 'embed');
  await chat(d, 'big1');
  const p1 = await pidOf(d, 'big1');
  assert.ok(h.isAlive(pe), 'embed survives big1');
  assert.deepEqual(await running(d), ['big1', 'embed']);
  await chat(d, 'big2');
  assert.equal(h.isAlive(p1), false, 'big1 swapped out for big2');
  assert.ok(h.isAlive(pe), 'embed survives big2');
  assert.deepEqual(await running(d), ['big2', 'embed']);
  await chat(d, 'embed');
  assert.equal(d.logCount(/sup model=embed pid=\d+ msg=spawned/), 1, 'embed never restarted');
  assert.doesNotMatch(d.stderr, /sched model=embed msg="unloading"/);
  await d.stop();
});

test('swap: true swaps within the group; a non-exclusive group next to it is untouched', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['a', 'b', 'side'])}
groups:
  pair:
    swap: true
    exclusive: false
    members: [a, b]
  other:
    swap: true
    exclusive: false
    members: [side]
`,
  });
  await chat(d, 'side');
  const ps = await pidOf(d, 'side');
  await chat(d, 'a');
  const pa = await pidOf(d, 'a');
  assert.deepEqual(await running(d), ['a', 'side']);
  await chat(d, 'b');
  const pb = await pidOf(d, 'b');
  assert.equal(h.isAlive(pa), false, 'a swapped out by b');
  assert.ok(h.isAlive(pb));
  assert.ok(h.isAlive(ps), 'side untouched');
  assert.deepEqual(await running(d), ['b', 'side']);
  assert.match(d.stderr, /sched model=a msg="unloading" reason=swap/);
  assert.ok(d.stderr.indexOf(`pid=${pa} msg=exited`) < d.stderr.indexOf(`pid=${pb} msg=spawned`),
    'a reaped before b spawned');
  // And back: a new process for a.
  await chat(d, 'a');
  const pa2 = await pidOf(d, 'a', 1);
  assert.notEqual(pa2, pa);
  assert.equal(h.isAlive(pb), false, 'b swapped out by a');
  assert.ok(h.isAlive(ps), 'side still untouched');
  await d.stop();
});

test('members of a persistent group with swap: true still swap among themselves', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
${models(['e1', 'e2', 'x'])}
groups:
  embedders:
    persistent: true
    swap: true
    exclusive: false
    members: [e1, e2]
`,
  });
  await chat(d, 'e1');
  const p1 = await pidOf(d, 'e1');
  await chat(d, 'e2');
  assert.equal(h.isAlive(p1), false, 'e1 swapped out by e2 within its own group');
  assert.deepEqual(await running(d), ['e2']);
  // Other groups still cannot evict it.
  await chat(d, 'x');
  assert.deepEqual(await running(d), ['e2', 'x']);
  await d.stop();
});
