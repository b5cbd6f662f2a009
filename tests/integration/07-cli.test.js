// The command line: -t, config errors, -h, --version, bad options and addresses, listen: from
// the config, and env:/macros reaching the backend.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('./lib/harness');

function run(args, opts = {}) {
  const r = spawnSync(h.MODELMUX, args, { encoding: 'utf8', timeout: 10000 * h.SLOW, ...opts });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function writeConfig(text, name = 'config.yaml') {
  const dir = h.tmpdir();
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return { dir, file };
}

test('-t prints each model\'s argv, resolved executable and proxy, then "configuration OK"', () => {
  const { file } = writeConfig(`startPort: 7100
macros:
  greeting: "hello there"
models:
  alpha:
    cmd: ${h.FAKE} --port \${PORT} --model \${MODEL_ID} --reply "\${greeting}"
  beta:
    cmd: |
      ${h.FAKE}
        --port \${PORT}
        --chunks 3
    proxy: http://127.0.0.1:\${PORT}
`);
  const r = run(['-t', '-c', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, [
    `alpha: ${h.FAKE} --port 7100 --model alpha --reply "hello there"`,
    `  exe: ${fs.realpathSync(h.FAKE)}`,
    '  proxy: http://127.0.0.1:7100',
    `beta: ${h.FAKE} --port 7101 --chunks 3`,
    `  exe: ${fs.realpathSync(h.FAKE)}`,
    '  proxy: http://127.0.0.1:7101',
    'configuration OK',
    '',
  ].join('\n'));
  assert.equal(r.stderr, '');
});

test('a config with several errors lists every one as file:line:col: key: reason, exit 1', () => {
  const { file } = writeConfig(`startPort: 7100
healthCheckTimeout: soon
noSuchKey: 1
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --reply \${env.MM_IT_SURELY_UNSET_VAR}
  b:
    name: no command here
`, 'bad.yaml');
  const env = { ...process.env };
  delete env.MM_IT_SURELY_UNSET_VAR;
  const x = run(['-t', '-c', file], { env });
  assert.equal(x.code, 1, x.stderr);
  assert.equal(x.stdout, '', 'nothing on stdout');
  const lines = x.stderr.trimEnd().split('\n');
  const has = (re) => assert.ok(lines.some((l) => re.test(l)), `no line matches ${re}:\n${x.stderr}`);
  has(/^\S*bad\.yaml:2:1: healthCheckTimeout: expected an integer$/);
  has(/^\S*bad\.yaml:3:1: noSuchKey: unknown key$/);
  has(/^\S*bad\.yaml:6:\d+: models\.a\.cmd: environment variable MM_IT_SURELY_UNSET_VAR is not set$/);
  has(/^\S*bad\.yaml:7:3: models\.b\.cmd: missing required key$/);
  assert.match(lines[lines.length - 1], /^modelmux: \S*bad\.yaml: configuration has \d+ errors$/);
  const n = Number(/has (\d+) errors/.exec(lines[lines.length - 1])[1]);
  assert.equal(lines.length - 1, n, 'the count matches the lines printed');
  for (const l of lines.slice(0, -1)) assert.match(l, /^\S+:\d+:\d+: [\w.]+: .+/);
  // Serving (without -t) refuses the same file the same way.
  const s = run(['-c', file, '-l', '127.0.0.1:0']);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /noSuchKey: unknown key/);
});

test('a missing config file is a clear error, exit 1', () => {
  const r = run(['-t', '-c', '/nonexistent/dir/modelmux.yaml']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/dir\/modelmux\.yaml/);
  assert.match(r.stderr, /No such file or directory|cannot (open|read)/i);
});

test('-h prints usage, exit 0; --version prints the version; a bad option exits 2', () => {
  for (const flag of ['-h', '--help']) {
    const r = run([flag]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: modelmux \[-t\] \[-c FILE\] \[--config-dir DIR\] \[-l ADDR\]/);
    assert.match(r.stdout, /-c, --config FILE/);
    assert.match(r.stdout, /--config-dir DIR/);
    assert.match(r.stdout, /--version/);
    assert.equal(r.stderr, '');
  }
  const v = run(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^modelmux \d+\.\d+\.\d+\S*\n$/);

  const bad = run(['--no-such-option']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unrecognized option '--no-such-option'/);
  assert.match(bad.stderr, /usage: modelmux/);
  assert.equal(bad.stdout, '');

  const extra = run(['stray-argument']);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /unexpected argument: stray-argument/);

  const noarg = run(['-c']);
  assert.equal(noarg.code, 2);
});

test('-l with a bad or busy address exits 1 with a clear message', async () => {
  const { file } = writeConfig(`models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`);
  for (const addr of ['nonsense', '127.0.0.1:99999', '127.0.0.1:', '[::1:80']) {
    const r = run(['-c', file, '-l', addr]);
    assert.equal(r.code, 1, `${addr}: ${r.stderr}`);
    assert.match(r.stderr, /invalid listen address/, addr);
    assert.doesNotMatch(r.stderr, /msg=ready/);
  }
  const r = run(['-c', file, '-l', '203.0.113.7:8080']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot listen on 203\.0\.113\.7:8080: Cannot assign requested address/);

  // A port in use.
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const busy = srv.address().port;
  try {
    const b = run(['-c', file, '-l', `127.0.0.1:${busy}`]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy}: Address already in use`));
  } finally {
    srv.close();
  }
});

test('listen: from the config is used when no -l is given', async (t) => {
  const port = await h.freePorts(1);
  const { dir, file } = writeConfig(`listen: 127.0.0.1:${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`);
  const p = spawn(h.MODELMUX, ['-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (b) => { err += b.toString(); });
  const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } });

  await h.waitFor(() => /msg=ready/.test(err), { what: 'ready line' });
  assert.match(err, new RegExp(`msg=ready version=\\S+ listen=127\\.0\\.0\\.1:${port} `));
  const r = await h.get(`http://127.0.0.1:${port}/health`);
  assert.equal(r.status, 200);
  assert.equal(r.text, 'OK');
  p.kill('SIGTERM');
  const ex = await exited;
  assert.deepEqual(ex, { code: 0, signal: null }, err);
});

test('-l wins over listen: in the config', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `listen: 127.0.0.1:${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  assert.notEqual(d.addr, `127.0.0.1:${port}`, 'the -l 127.0.0.1:0 of the harness is used');
  assert.equal((await h.get(`${d.url}/health`)).status, 200);
  await d.stop();
});

test('env: and macros reach the backend', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    env: { MM_IT_FROM_DAEMON_ENV: 'inherited' },
    // A shell is refused as a command unless allowedCommands names it exactly.
    config: `startPort: ${port}
allowedCommands: [${fs.realpathSync('/bin/sh')}, ${path.dirname(h.FAKE)}/]
macros:
  word: macro-value
  both: "\${word} twice"
models:
  withenv:
    cmd: sh -c 'exec ${h.FAKE} --port \${PORT} --model \${MODEL_ID} --reply "$MM_IT_GREETING $MM_IT_FROM_DAEMON_ENV"'
    env:
      - "MM_IT_GREETING=hi-from-env"
  withmacro:
    cmd: ${h.FAKE} --port \${PORT} --model \${MODEL_ID} --reply "\${both} \${env.MM_IT_FROM_DAEMON_ENV}"
`,
  });
  const a = await h.post(`${d.url}/v1/chat/completions`, { model: 'withenv', messages: [] });
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.choices[0].message.content, 'hi-from-env inherited');

  const b = await h.post(`${d.url}/v1/chat/completions`, { model: 'withmacro', messages: [] });
  assert.equal(b.status, 200, b.text);
  assert.equal(b.json.choices[0].message.content, 'macro-value twice inherited');
  // ${MODEL_ID} became the model's id: the fake backend names itself after --model.
  assert.match(d.stderr, /backend model=withmacro pid=\d+ stream=stderr line="fake: listening on 127\.0\.0\.1:\d+ model=withmacro /);
  await d.stop();
});

test('a relative executable in cmd is found beside the config file, from any working directory', () => {
  const dir = h.tmpdir();
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.copyFileSync(h.FAKE, path.join(dir, 'bin', 'demo-backend'));
  fs.chmodSync(path.join(dir, 'bin', 'demo-backend'), 0o755);
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, 'models:\n  m:\n    cmd: bin/demo-backend --port ${PORT}\n');
  const x = spawnSync(h.MODELMUX, ['-t', '-c', file], { cwd: '/', encoding: 'utf8' });
  assert.equal(x.status, 0, x.stderr);
  assert.match(x.stdout, new RegExp(`exe: ${fs.realpathSync(dir)}/bin/demo-backend`));
  assert.match(x.stdout, /configuration OK/);
});
