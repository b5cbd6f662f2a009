// llama-swap's command line runs unchanged: Go-style flags (one dash or two, `-flag value` or
// `-flag=value`) for -config, -listen, -watch-config, -version, -tls-cert-file, -tls-key-file.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');

function run(args) {
  const r = spawnSync(h.MODELMUX, args, { encoding: 'utf8', timeout: 10000 * h.SLOW });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const model = (port) => `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`;

test('-version and --version print the version; -help prints usage', () => {
  for (const f of ['-version', '--version']) {
    const r = run([f]);
    assert.equal(r.code, 0, `${f}: ${r.stderr}`);
    assert.match(r.stdout, /^modelmux \d+\.\d+\.\d+/);
  }
  const u = run(['-help']);
  assert.equal(u.code, 0);
  assert.match(u.stdout, /-tls-cert-file/);
  assert.match(u.stdout, /one dash and FLAG=VALUE/);
});

test('-config FILE, --config=FILE and -config=FILE all load the file (with -t)', () => {
  const dir = h.tmpdir();
  const file = path.join(dir, 'c.yaml');
  fs.writeFileSync(file, model(7300));
  for (const args of [['-config', file], [`--config=${file}`], [`-config=${file}`], ['-c', file]]) {
    const r = run(['-t', ...args]);
    assert.equal(r.code, 0, `${args}: ${r.stderr}`);
    assert.match(r.stdout, /configuration OK/);
  }
  const bad = run(['-t', '-config']);
  assert.equal(bad.code, 2);
  const wb = run(['-t', '-config', file, '-watch-config=maybe']);
  assert.equal(wb.code, 2);
  assert.match(wb.stderr, /invalid boolean value "maybe" for -watch-config/);
});

test('a llama-swap container command line serves: -config F -listen ADDR -watch-config', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: model(port),
    argv: (cfg) => ['-config', cfg, '-listen', '127.0.0.1:0', '-watch-config'],
  });
  assert.equal((await h.post(`${d.url}/v1/chat/completions`, { model: 'm', messages: [] })).status, 200);
  // -watch-config: a changed file is reloaded.
  fs.writeFileSync(d.configPath, `${model(port)}  n:\n    cmd: ${h.FAKE} --port \${PORT}\n`);
  await d.waitLog(/configuration reloaded/, 8000);
  assert.equal((await h.post(`${d.url}/v1/chat/completions`, { model: 'n', messages: [] })).status, 200);
  await d.stop();
});

test('--listen=ADDR and -watch-config=false: served, no reload on change', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: model(port),
    argv: (cfg) => [`--config=${cfg}`, '--listen=127.0.0.1:0', '-watch-config=false'],
  });
  assert.equal((await h.get(`${d.url}/health`)).text, 'OK');
  fs.writeFileSync(d.configPath, model(port).replace('m:', 'x:'));
  await h.sleep(2600); // longer than one 2 s watch period: nothing may happen
  assert.doesNotMatch(d.stderr, /reloading configuration/);
  await d.stop();
});

function makeCert(dir) {
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { cert: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem') };
}

test('-tls-cert-file/-tls-key-file serve HTTPS; one without the other or a bad file is refused', async (t) => {
  const dir = h.tmpdir();
  const { cert, key } = makeCert(dir);
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    dir,
    config: model(port),
    argv: (cfg) => ['-config', cfg, '-listen', '127.0.0.1:0', '-tls-cert-file', cert, `--tls-key-file=${key}`],
  });
  const r = await h.rawRequest(`https://${d.addr}/v1/chat/completions`, {
    ca: fs.readFileSync(cert), method: 'POST', body: JSON.stringify({ model: 'm', messages: [] }),
    headers: { 'Content-Type': 'application/json' },
  });
  assert.equal(r.status, 200, r.text);
  // A reload keeps serving the flags' certificate.
  d.signal('SIGHUP');
  await d.waitLog(/configuration reloaded/);
  assert.doesNotMatch(d.stderr, /listen and tls changes/);
  assert.equal((await h.rawRequest(`https://${d.addr}/health`, { ca: fs.readFileSync(cert) })).text, 'OK');
  await d.stop();

  const file = path.join(dir, 'x.yaml');
  fs.writeFileSync(file, model(port));
  const one = run(['-t', '-config', file, '-tls-cert-file', cert]);
  assert.equal(one.code, 2);
  assert.match(one.stderr, /-tls-cert-file and -tls-key-file go together/);
  const swapped = run(['-t', '-config', file, '-tls-cert-file', key, '-tls-key-file', key]);
  assert.equal(swapped.code, 1);
  assert.match(swapped.stderr, /-tls-cert-file: .*not a PEM certificate/);
  const missing = run(['-t', '-config', file, '-tls-cert-file', cert, '-tls-key-file', `${dir}/none.pem`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /-tls-key-file: cannot read .*none\.pem/);
});
