// --config-dir: a -c file plus every *.yml/*.yaml of a directory, merged as llama-swap does.
// Models of every file serve; a conflict between files is a config error naming both places;
// SIGHUP and --watch-config re-read the whole set, and a bad set keeps the running config.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function chat(d, model) {
  return h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: 'hi' }] });
}

// Fixed ports, so adding or removing a model never moves another one's ${PORT}.
function model(id, reply, port) {
  return `  ${id}:\n    cmd: ${h.FAKE} --port ${port} --model ${id} --reply ${reply}\n` +
    `    proxy: http://127.0.0.1:${port}\n`;
}

// A base config (models: base) and a directory with a.yaml (models: fromA) and b.yml (fromB).
function setup(port) {
  const dir = h.tmpdir();
  const confd = path.join(dir, 'conf.d');
  fs.mkdirSync(confd);
  const base = `models:\n${model('base', 'zero', port)}`;
  fs.writeFileSync(path.join(confd, 'a.yaml'), `models:\n${model('fromA', 'one', port + 1)}`);
  fs.writeFileSync(path.join(confd, 'b.yml'), `logLevel: info\nmodels:\n${model('fromB', 'two', port + 2)}`);
  fs.writeFileSync(path.join(confd, 'notes.txt'), 'not a config file');
  return { dir, confd, base };
}

test('models of the -c file and of every file in --config-dir serve; -t lists the files', async (t) => {
  const port = await h.freePorts(3);
  const { dir, confd, base } = setup(port);
  const d = await h.startDaemon(t, { dir, config: base, args: ['--config-dir', confd] });
  await d.waitLog(/msg=ready .* config_dir="?\S+conf\.d"? files=3 models=3/);
  for (const [m, reply] of [['base', 'zero'], ['fromA', 'one'], ['fromB', 'two']]) {
    const r = await chat(d, m);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.content, reply);
  }
  const list = await h.get(`${d.url}/v1/models`);
  assert.deepEqual(list.json.data.map((x) => x.id).sort(), ['base', 'fromA', 'fromB']);
  await d.stop();

  const r = spawnSync(h.MODELMUX, ['-t', '-c', path.join(dir, 'config.yaml'), '--config-dir', confd],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^file: .*config\\.yaml\nfile: .*conf\\.d/a\\.yaml\nfile: .*conf\\.d/b\\.yml\n`));
  assert.match(r.stdout, /configuration OK\n$/);
  // --config-dir alone is enough.
  const alone = spawnSync(h.MODELMUX, ['-t', '--config-dir', confd], { encoding: 'utf8' });
  assert.equal(alone.status, 0, alone.stderr);
  assert.match(alone.stdout, /^fromA: /m);
  assert.doesNotMatch(alone.stdout, /^base: /m);
});

test('files that conflict are a config error with file:line:col of both, exit 1', async () => {
  const port = await h.freePorts(3);
  const { dir, confd, base } = setup(port);
  const cfg = path.join(dir, 'config.yaml');
  fs.writeFileSync(cfg, base);
  fs.writeFileSync(path.join(confd, 'c.yaml'),
    `logLevel: debug\nmodels:\n${model('fromA', 'again', port + 1)}`);
  const r = spawnSync(h.MODELMUX, ['-c', cfg, '--config-dir', confd, '-l', '127.0.0.1:0'],
    { encoding: 'utf8', timeout: 10000 * h.SLOW });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`conf\\.d/c\\.yaml:1:1: logLevel: conflicts with a different value at \\S*conf\\.d/b\\.yml:1:1\n`));
  assert.match(r.stderr, /conf\.d\/c\.yaml:3:3: models\.fromA: defined again; first defined at \S+conf\.d\/a\.yaml:2:3\n/);
  assert.match(r.stderr, /configuration has 2 errors/);
  // An error the decoder finds names the file it is in.
  fs.writeFileSync(path.join(confd, 'c.yaml'), `models:\n  fromC:\n    cmd: ${h.FAKE}\n    ttl: soon\n`);
  const r2 = spawnSync(h.MODELMUX, ['-t', '-c', cfg, '--config-dir', confd], { encoding: 'utf8' });
  assert.equal(r2.status, 1, r2.stderr);
  assert.match(r2.stderr, /conf\.d\/c\.yaml:4:5: models\.fromC\.ttl: /);
  // A directory that is not there.
  const r3 = spawnSync(h.MODELMUX, ['-t', '-c', cfg, '--config-dir', path.join(dir, 'nope')], { encoding: 'utf8' });
  assert.equal(r3.status, 1);
  assert.match(r3.stderr, /nope: No such file or directory/);
});

test('SIGHUP picks up a file added to the directory; a bad one keeps the running config', async (t) => {
  const port = await h.freePorts(4);
  const { dir, confd, base } = setup(port);
  const d = await h.startDaemon(t, { dir, config: base, args: ['--config-dir', confd] });
  h.assertError(await chat(d, 'added'), 404);
  assert.equal((await chat(d, 'fromA')).status, 200);

  fs.writeFileSync(path.join(confd, 'c.yaml'), `models:\n${model('added', 'three', port + 3)}`);
  d.signal('SIGHUP');
  await d.waitLog(/configuration reloaded" generation=2 models=4/);
  const r = await chat(d, 'added');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'three');

  // A file that repeats a model: refused, with both places; everything keeps serving.
  fs.writeFileSync(path.join(confd, 'd.yaml'), `models:\n${model('fromB', 'dup', port + 2)}`);
  d.signal('SIGHUP');
  await d.waitLog(/reload refused" error=".*conf\.d\/d\.yaml:2:3: models\.fromB: defined again; first defined at \S*conf\.d\/b\.yml:3:3/);
  await d.waitLog(/still running the previous one/);
  for (const m of ['base', 'fromA', 'fromB', 'added']) {
    assert.equal((await chat(d, m)).status, 200, m);
  }
  // Removing the bad file and a good one: the next reload drops the model of the good one.
  fs.unlinkSync(path.join(confd, 'd.yaml'));
  fs.unlinkSync(path.join(confd, 'a.yaml'));
  d.signal('SIGHUP');
  await d.waitLog(/configuration reloaded" generation=3 models=3/);
  h.assertError(await chat(d, 'fromA'), 404);
  assert.equal((await chat(d, 'added')).status, 200);
  await d.stop();
});

test('--watch-config notices a file added to the directory', async (t) => {
  const port = await h.freePorts(4);
  const { dir, confd, base } = setup(port);
  const d = await h.startDaemon(t, { dir, config: base, args: ['--config-dir', confd, '--watch-config'] });
  fs.writeFileSync(path.join(confd, 'z.yaml'), `models:\n${model('watched', 'four', port + 3)}`);
  await d.waitLog(/reloading configuration" why="?file changed/, 8000);
  await d.waitLog(/configuration reloaded" generation=2 models=4/);
  const r = await chat(d, 'watched');
  assert.equal(r.status, 200, r.text);
  // A file that is not *.yml/*.yaml is not a change.
  fs.writeFileSync(path.join(confd, 'z.yaml.bak'), 'anything');
  await h.sleep(2500);
  assert.equal(d.logCount(/reloading configuration/), 1);
  await d.stop();
});
