// Hot reload: SIGHUP and --watch-config apply a good file as a diff and keep a bad one out.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function spawnedPid(d, model) {
  const all = [...d.stderr.matchAll(new RegExp(`sup model=${model} pid=(\\d+) msg=spawned`, 'g'))];
  return all.length ? Number(all[all.length - 1][1]) : null;
}

function config(port, models) {
  return `startPort: ${port}\ngroups:\n  all:\n    swap: false\n    exclusive: false\n` +
    `    members: [${Object.keys(models).join(', ')}]\nmodels:\n` +
    Object.entries(models).map(([id, extra]) => `  ${id}:\n    cmd: ${h.FAKE} --port \${PORT} ${extra}\n`).join('');
}

test('SIGHUP keeps unchanged models running, restarts changed ones, stops removed ones', async (t) => {
  const port = await h.freePorts(4);
  const d = await h.startDaemon(t, {
    config: config(port, { keep: '--reply one', change: '--reply before', gone: '' }),
  });
  for (const m of ['keep', 'change', 'gone']) {
    const r = await h.post(`${d.url}${CHAT}`, { model: m, messages: [] });
    assert.equal(r.status, 200, r.text);
  }
  const keepPid = spawnedPid(d, 'keep');
  const changePid = spawnedPid(d, 'change');
  const gonePid = spawnedPid(d, 'gone');

  fs.writeFileSync(d.configPath, config(port, { keep: '--reply one', change: '--reply after', fresh: '' }));
  d.signal('SIGHUP');
  await d.waitLog(/configuration reloaded" generation=2/);

  // Unchanged: same process, still serving.
  const k = await h.post(`${d.url}${CHAT}`, { model: 'keep', messages: [] });
  assert.equal(k.json.choices[0].message.content, 'one');
  assert.equal(spawnedPid(d, 'keep'), keepPid);
  assert.ok(h.isAlive(keepPid));
  // Changed: restarted with the new command on its next request.
  const c = await h.post(`${d.url}${CHAT}`, { model: 'change', messages: [] });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.choices[0].message.content, 'after');
  assert.notEqual(spawnedPid(d, 'change'), changePid);
  assert.ok(!h.isAlive(changePid));
  // Removed: stopped, and unknown from now on.
  await h.waitFor(() => !h.isAlive(gonePid), { what: 'the removed model to stop' });
  h.assertError(await h.post(`${d.url}${CHAT}`, { model: 'gone', messages: [] }), 404);
  // Added: usable.
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'fresh', messages: [] })).status, 200);
  const health = await h.get(`${d.url}/api/health`);
  assert.equal(health.json.config_generation, 2);
  await d.stop();
});

test('a broken file keeps the running configuration and says why with file:line:col', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: config(port, { m: '' }) });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] })).status, 200);
  const pid = spawnedPid(d, 'm');
  fs.writeFileSync(d.configPath, `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n    ttl: soon\n`);
  d.signal('SIGHUP');
  await d.waitLog(/reload refused" error=".*config\.yaml:5:5: models\.m\.ttl: /);
  await d.waitLog(/still running the previous one/);
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] })).status, 200);
  assert.equal(spawnedPid(d, 'm'), pid);
  assert.ok(h.isAlive(pid));
  await d.stop();
});

test('--watch-config reloads when the file changes', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port, { a: '' }), args: ['--watch-config'] });
  fs.writeFileSync(d.configPath, config(port, { a: '', b: '' }));
  await d.waitLog(/reloading configuration" why="?file changed/, 8000);
  await d.waitLog(/configuration reloaded/);
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] })).status, 200);
  await d.stop();
});
