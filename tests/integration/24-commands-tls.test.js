// Security gate, what may run and how we listen: shells and env tricks refused by `-t`,
// allowedCommands by directory and exact path, `exe:` lines; HTTPS with tls.cert/tls.key, and
// broken key material refused at load.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('./lib/harness');

const FAKE_DIR = `${path.dirname(fs.realpathSync(h.FAKE))}/`;

// Runs `modelmux -t` on a config; { code, out, err }.
function check(yaml, { dir = h.tmpdir(), env = {} } = {}) {
  const cfg = path.join(dir, 'config.yaml');
  fs.writeFileSync(cfg, yaml);
  const r = spawnSync(h.MODELMUX, ['-t', '-c', cfg], { cwd: dir, env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr, all: r.stdout + r.stderr };
}

function model(cmd, extra = '') {
  return `models:\n  m:\n    cmd: ${cmd}\n    proxy: http://127.0.0.1:1\n${extra}`;
}

// A throwaway directory with executables named like shells (copies of true) and symlinks.
function binDir() {
  const dir = h.tmpdir();
  const t = fs.realpathSync('/bin/true');
  fs.copyFileSync(t, path.join(dir, 'busybox'));
  fs.chmodSync(path.join(dir, 'busybox'), 0o755);
  fs.copyFileSync(t, path.join(dir, 'harmless'));
  fs.chmodSync(path.join(dir, 'harmless'), 0o755);
  fs.symlinkSync(fs.realpathSync('/bin/sh'), path.join(dir, 'notashell'));
  return dir;
}

test('shells and shell-running env are refused by -t with exit 1 and file:line:col', () => {
  const bin = binDir();
  const cases = [
    `sh -c 'echo hi'`,
    '/bin/sh -c x',
    '/usr/bin/env -S sh -c x',
    'env --split-string="sh -c x"',
    'env -vS sh',
    'bash -c x',
    'env bash -c x',
    'env -i FOO=1 sh -c x',
    'env -u HOME sh -c x',
    'env -- dash -c x',
    `${bin}/busybox sh`,
    `${bin}/notashell -c x`, // a symlink to a shell under another name
    `env ${bin}/notashell -c x`,
  ];
  for (const cmd of cases) {
    const r = check(model(cmd));
    assert.equal(r.code, 1, `accepted: cmd: ${cmd}\n${r.all}`);
    assert.match(r.err, /config\.yaml:3:5: models\.m\.cmd: .*shell interpreters are not allowed/, `cmd: ${cmd}\n${r.err}`);
    assert.doesNotMatch(r.out, /configuration OK/);
  }
  // busybox by name only is not installed here: refused too (not found).
  assert.equal(check(model('busybox sh')).code, 1);
  // cmdStop is checked the same way.
  const stop = check(`models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n    cmdStop: sh -c "kill \${PID}"\n`);
  assert.equal(stop.code, 1, stop.all);
  assert.match(stop.err, /config\.yaml:4:5: models\.m\.cmdStop: sh: shell interpreters/);
});

test('env with a short option that takes an argument, combined (-iu NAME), cannot hide a shell', {
}, () => {
  const r = check(model('env -iu true sh -c x'));
  assert.equal(r.code, 1, `accepted: env -iu true sh -c x\n${r.all}`);
  const bin = binDir();
  const r2 = check(`allowedCommands: [/usr/bin/, /bin/]\n${model(`env -iu true ${bin}/harmless`)}`);
  assert.equal(r2.code, 1, `allowedCommands bypassed: env -iu true ${bin}/harmless\n${r2.all}`);
});

test('common wrappers (nice, timeout, setsid, nohup, stdbuf) cannot hide a shell', {
}, () => {
  const through = [];
  for (const cmd of ['nice sh -c x', 'timeout 5 sh -c x', 'setsid bash -c x', 'nohup sh -c x', 'stdbuf -o0 sh -c x']) {
    if (check(model(cmd)).code !== 1) through.push(cmd);
  }
  assert.deepEqual(through, []);
});

test('a shell under another name, interpreters given inline code, and strictCommands are refused by -t', () => {
  const dir = h.tmpdir();
  const renamed = path.join(dir, 'llama-server');
  fs.copyFileSync(fs.realpathSync('/bin/sh'), renamed); // a copy: another inode, same bytes
  fs.chmodSync(renamed, 0o755);
  const refused = [
    [`${renamed} -c "exec nc -l 4444"`, /llama-server: shell interpreters are not allowed/],
    ['python3 -c "import os; os.system(1)"', /python3: an interpreter given its program inline \(python -c\)/],
    ['perl -e "exec q(x)"', /perl: an interpreter given its program inline \(perl -e\)/],
    ["awk 'BEGIN{system(\"x\")}'", /awk: an interpreter given its program inline \(an awk program\)/],
    ['env python3 -c x', /python3: an interpreter given its program inline/],
    // Through a wrapper: the word it runs is known by its file, and its inline code is seen.
    [`nice ${renamed} -c "exec nc -l 4444"`, /nice runs \S+llama-server, a shell: shell interpreters are not allowed/],
    ['timeout 5 perl -wE "exec q(x)"', /timeout runs perl, an interpreter given its program inline \(perl -e\)/],
    ['nice python3 -W ignore -Ic "import os"', /nice runs python3, an interpreter given its program inline \(python -c\)/],
    ['python3 -W ignore -Ic "import os"', /python3: an interpreter given its program inline \(python -c\)/],
  ].filter(([cmd]) => !/python3/.test(cmd) || spawnSync('python3', ['-V']).status === 0);
  for (const [cmd, re] of refused) {
    const r = check(model(cmd));
    assert.equal(r.code, 1, `${cmd}: ${r.all}`);
    assert.match(r.err, /config\.yaml:3:5: models\.m\.cmd: /, cmd);
    assert.match(r.err, re, cmd);
  }
  // A script run by an interpreter (no inline code) is not refused for it.
  const script = path.join(dir, 'server.pl');
  fs.writeFileSync(script, '1;\n');
  assert.equal(check(model(`perl -w ${script}`)).code, 0);
  // strictCommands: only exact allowedCommands entries may run; a directory is not enough.
  const fake = fs.realpathSync(h.FAKE);
  const strict = (allowed) => check(`strictCommands: true\n${allowed}` + model(`${fake} --port 9`));
  const none = strict('');
  assert.equal(none.code, 1);
  assert.match(none.err, /strictCommands is on: only the executables allowedCommands lists by exact path may run/);
  assert.equal(strict(`allowedCommands: ["${FAKE_DIR}"]\n`).code, 1);
  const exact = strict(`allowedCommands: ["${fake}"]\n`);
  assert.equal(exact.code, 0, exact.all);
  assert.match(exact.out, /configuration OK/);
});

test('allowedCommands: another directory refuses the fake backend; its directory accepts it', async (t) => {
  const bin = binDir();
  const cmd = `${h.FAKE} --port \${PORT}`;
  // Only another directory listed: refused, with the resolved path in the message.
  let r = check(`allowedCommands:\n  - ${bin}/\n${model(cmd)}`);
  assert.equal(r.code, 1, r.all);
  assert.match(r.err, /config\.yaml:5:5: models\.m\.cmd: .* is not under allowedCommands/);
  // A directory entry is a prefix of whole path components only, and needs its '/'.
  r = check(`allowedCommands:\n  - ${FAKE_DIR.slice(0, -2)}/\n${model(cmd)}`);
  assert.equal(r.code, 1, r.all);
  r = check(`allowedCommands:\n  - ${FAKE_DIR.slice(0, -1)}\n${model(cmd)}`);
  assert.equal(r.code, 1, r.all);
  // `..` and symlinks out of a listed directory do not escape it.
  r = check(`allowedCommands:\n  - ${bin}/\n${model(`${bin}/../${path.basename(bin)}/../../bin/true`)}`);
  assert.equal(r.code, 1, r.all);
  fs.symlinkSync(fs.realpathSync(h.FAKE), path.join(bin, 'fake-link'));
  r = check(`allowedCommands:\n  - ${bin}/\n${model(`${bin}/fake-link --port \${PORT}`)}`);
  assert.equal(r.code, 1, `a symlink out of the listed directory was accepted\n${r.all}`);
  // cmdStop falls under allowedCommands too.
  r = check(`allowedCommands:\n  - ${FAKE_DIR}\n${model(cmd, '    cmdStop: /bin/kill -TERM ${PID}\n')}`);
  assert.equal(r.code, 1, r.all);
  assert.match(r.err, /models\.m\.cmdStop: .* is not under allowedCommands/);

  // The fake backend's own directory: accepted; -t prints absolute `exe:` paths, also for a
  // command found through PATH.
  r = check(`allowedCommands:\n  - ${FAKE_DIR}\n${model(cmd)}`);
  assert.equal(r.code, 0, r.all);
  assert.match(r.out, new RegExp(`^  exe: ${fs.realpathSync(h.FAKE).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  r = check(`allowedCommands:\n  - ${FAKE_DIR}\n${model(`${path.basename(h.FAKE)} --port \${PORT}`)}`,
    { env: { PATH: `${path.dirname(h.FAKE)}:/usr/bin:/bin` } });
  assert.equal(r.code, 0, r.all);
  for (const m of r.out.matchAll(/^ {2}exe: (.*)$/gm)) assert.ok(path.isAbsolute(m[1]), m[1]);
  assert.match(r.out, /^ {2}exe: \/.*mm-fake-backend$/m);
  // A shell listed by exact path is allowed.
  r = check(`allowedCommands:\n  - /bin/sh\n${model(`sh -c 'exec ${h.FAKE} --port 1'`)}`);
  assert.equal(r.code, 0, r.all);

  // And the daemon really runs an allowed backend.
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: `startPort: ${port}\nallowedCommands: ["${FAKE_DIR}"]\nmodels:\n  m:\n    cmd: ${cmd}\n` });
  const c = await h.post(`${d.url}/v1/chat/completions`, { model: 'm', messages: [] });
  assert.equal(c.status, 200, c.text);
  assert.equal(d.logCount(/msg=spawned/), 1);
  await d.stop();
});

function openssl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

// RSA as in the docs for the served certificate; EC (fast to make) for the refusal cases.
function makeCert(dir, name, alg = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']) {
  openssl(['req', '-x509', ...alg, '-nodes', '-keyout', `${name}-k.pem`, '-out', `${name}-c.pem`,
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], dir);
  return { cert: path.join(dir, `${name}-c.pem`), key: path.join(dir, `${name}-k.pem`) };
}

const httpsRequest = h.rawRequest;

test('tls.cert/tls.key: chat completion over HTTPS (curl -k and Node https)', async (t) => {
  const dir = h.tmpdir();
  const { cert, key } = makeCert(dir, 'a', ['-newkey', 'rsa:2048']);
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    dir,
    config: `startPort: ${port}
apiKeys: ["tls-key-42"]
tls:
  cert: ${cert}
  key: ${key}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`,
  });
  const base = `https://${d.addr}`;
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  const c = await h.curl(['-k', '-w', '\n%{http_code}', '-H', 'Authorization: Bearer tls-key-42',
    '-H', 'Content-Type: application/json', '--data-binary', body, `${base}/v1/chat/completions`]);
  assert.equal(c.code, 0, c.stderr);
  const lines = c.stdout.trimEnd().split('\n');
  assert.equal(lines.pop(), '200', c.stdout);
  assert.equal(JSON.parse(lines.join('\n')).object, 'chat.completion');

  // Node with the certificate as its CA: the chain and the name verify.
  const r = await httpsRequest(`${base}/v1/chat/completions`, { ca: fs.readFileSync(cert), method: 'POST', body,
    headers: { 'Content-Type': 'application/json', 'X-API-Key': 'tls-key-42' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.echo.headers['x-api-key'], undefined);
  // Without the CA, verification fails (it is a self-signed certificate).
  await assert.rejects(httpsRequest(`${base}/health`, {}), /self.signed|unable to verify|certificate/i);
  // The gate still works over TLS.
  h.assertError(await httpsRequest(`${base}/v1/models`, { ca: fs.readFileSync(cert) }), 401);

  // Plain HTTP to the TLS port gets no answer that looks like success.
  const i = d.addr.lastIndexOf(':');
  const s = net.connect(Number(d.addr.slice(i + 1)), d.addr.slice(0, i));
  let got = '';
  let closed = false;
  s.on('data', (b) => { got += b.toString('latin1'); });
  s.on('error', () => {});
  s.on('close', () => { closed = true; });
  s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
  await h.waitFor(() => closed, { timeout: 3000, what: 'plain HTTP on the TLS port to be closed' });
  assert.doesNotMatch(got, /^HTTP\/1\.1 200/);

  assert.equal(d.logCount(/msg=spawned/), 1);
  await d.stop();
  assert.doesNotMatch(d.stderr, /PRIVATE KEY|tls-key-42/);
});

test('broken TLS material fails -t with exit 1 and file:line:col', () => {
  const dir = h.tmpdir();
  const a = makeCert(dir, 'a');
  const b = makeCert(dir, 'b');
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-aes256', '-pass', 'pass:pw', '-out', 'enc-k.pem'], dir);
  openssl(['req', '-x509', '-key', 'enc-k.pem', '-passin', 'pass:pw', '-out', 'enc-c.pem', '-days', '1', '-subj', '/CN=localhost'], dir);
  const m = `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`;
  const cases = [
    [`tls:\n  cert: ${a.cert}\n  key: ${dir}/missing.pem\n`, /config\.yaml:3:3: tls\.key: cannot read/],
    [`tls:\n  cert: ${a.cert}\n  key: ${dir}\n`, /config\.yaml:3:3: tls\.key: /],
    [`tls:\n  cert: ${a.cert}\n  key: ${b.key}\n`, /config\.yaml:3:3: tls\.key: .*does not match the certificate/],
    [`tls:\n  cert: ${a.cert}\n  key: ${a.cert}\n`, /config\.yaml:3:3: tls\.key: .*not a PEM private key/],
    [`tls:\n  cert: ${a.key}\n  key: ${a.key}\n`, /config\.yaml:2:3: tls\.cert: .*not a PEM certificate/],
    [`tls:\n  cert: ${dir}/enc-c.pem\n  key: ${dir}/enc-k.pem\n`, /config\.yaml:3:3: tls\.key: .*passphrase/],
    [`tls:\n  cert: ${a.cert}\n`, /config\.yaml:\d+:\d+: tls\.key: required/],
    [`tls:\n  key: ${a.key}\n`, /config\.yaml:\d+:\d+: tls\.cert: required/],
  ];
  for (const [yaml, re] of cases) {
    const r = check(yaml + m, { dir });
    assert.equal(r.code, 1, `accepted:\n${yaml}\n${r.all}`);
    assert.match(r.err, re, r.err);
    assert.doesNotMatch(r.all, /BEGIN .*PRIVATE KEY/, 'key material echoed');
  }
  // The good pair passes.
  assert.equal(check(`tls:\n  cert: ${a.cert}\n  key: ${a.key}\n${m}`, { dir }).code, 0);
});
