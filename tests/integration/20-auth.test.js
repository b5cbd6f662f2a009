// Security gate, API keys: every way a key can be presented, sha256/env/file entries, user vs
// admin scope, the key never reaching a backend or the log, and brute-force lockout per IP.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const USER = 'uK3y-7f4e9a1c2b8d0e6f5a4b3c2d1e0f9a8b'; // a plain (user) key
const ADMIN = 'aDm1n-0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f';

const request = h.rawRequest;

function chat(d, headers = {}, model = 'm') {
  return request(`${d.url}${CHAT}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

const bearer = (k) => ({ Authorization: `Bearer ${k}` });
const basic = (user, k) => ({ Authorization: `Basic ${Buffer.from(`${user}:${k}`).toString('base64')}` });

function assert401(r, re) {
  h.assertError(r, 401, re);
  assert.equal(r.json.error.type, 'authentication_error');
  assert.equal(r.json.error.code, 'invalid_api_key');
  assert.match(r.headers['www-authenticate'] || '', /^Bearer realm=/, 'WWW-Authenticate on 401');
}

function config(port, extra = '') {
  return `startPort: ${port}
${extra}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT} --model m
`;
}

function assertNoSecrets(d, secrets) {
  for (const s of secrets) assert.ok(!d.stderr.includes(s), `secret ${s.slice(0, 6)}… appears in the log`);
}

test('no, wrong, near-miss keys are refused with 401; Bearer, X-API-Key, Basic are accepted', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    // Lockout off here (the default locks an address out after 10 failures; tested below).
    config: config(port, `apiKeys:\n  - "${USER}"\n  - {key: "${ADMIN}", admin: true}
rateLimit:\n  authFailures: {rate: 0, burst: 1}`),
  });

  // No key at all: 401 with WWW-Authenticate and the OpenAI envelope, on every keyed route.
  for (const [method, route] of [['GET', '/v1/models'], ['GET', '/models'], ['POST', CHAT],
    ['GET', '/upstream/m/health'], ['POST', '/api/models/load/m'], ['GET', '/running'],
    ['GET', '/no/such/route']]) {
    const r = await request(`${d.url}${route}`, { method,
      headers: method === 'POST' ? { 'Content-Type': 'application/json' } : {},
      body: method === 'POST' ? JSON.stringify({ model: 'm', messages: [] }) : undefined });
    assert401(r, /API key is required/);
  }
  await d.waitLog(/status=401 code=invalid_api_key msg="an API key is required"/);

  // Wrong keys: same length, differing only in the last byte, a prefix, an extension, the
  // right key in another case, the right key with an empty Basic password, garbage schemes.
  const lastByte = USER.slice(0, -1) + (USER.endsWith('b') ? 'c' : 'b');
  const wrong = [
    bearer('x'.repeat(USER.length)),
    bearer(lastByte),
    bearer(USER.slice(0, -1)),
    bearer(`${USER}x`),
    bearer(USER.toUpperCase()),
    bearer(`${USER} ${USER}`),
    { 'X-API-Key': lastByte },
    basic(USER, ''),
    basic('', lastByte),
    { Authorization: `Basic ${Buffer.from(USER).toString('base64')}` }, // no ':' → no password
    { Authorization: `Token ${USER}` },
    { Authorization: USER },
    bearer('k'.repeat(5000)),
  ];
  for (const hd of wrong) {
    const r = await request(`${d.url}/v1/models`, { headers: hd });
    assert.equal(r.status, 401, `${JSON.stringify(hd).slice(0, 80)} → ${r.status} ${r.text}`);
    assert401(r);
  }
  await d.waitLog(/status=401 code=invalid_api_key msg="invalid API key"/);

  // The right key, presented every supported way.
  for (const hd of [bearer(USER), { Authorization: `bearer   ${USER}  ` }, { 'X-API-Key': USER },
    { 'x-api-key': ` ${USER}` }, basic('anyone', USER), basic('', USER), basic('root', ADMIN)]) {
    const r = await request(`${d.url}/v1/models`, { headers: hd });
    assert.equal(r.status, 200, `${JSON.stringify(hd)} → ${r.status} ${r.text}`);
    assert.equal(r.json.object, 'list');
  }

  // /health needs no key; /health answers the same with a wrong one.
  assert.equal((await request(`${d.url}/health`)).status, 200);
  assert.equal((await request(`${d.url}/health`, { headers: bearer('nope') })).status, 200);

  // Nothing above may have started a backend.
  assert.equal(d.logCount(/msg=spawned/), 0, 'no backend started by refused requests');

  // The key never reaches the backend: no authorization / x-api-key / cookie upstream.
  const ok = await chat(d, { ...bearer(USER), 'X-API-Key': USER, Cookie: `session=${USER}`,
    'Proxy-Authorization': `Basic ${Buffer.from(`u:${USER}`).toString('base64')}`, 'X-Kept': '1' });
  assert.equal(ok.status, 200, ok.text);
  const up = ok.json.echo.headers;
  assert.equal(up['x-kept'], '1', 'ordinary headers still go through');
  for (const hname of ['authorization', 'x-api-key', 'cookie', 'proxy-authorization']) {
    assert.equal(up[hname], undefined, `${hname} forwarded to the backend`);
  }
  assert.ok(!JSON.stringify(up).includes(USER), 'key text reached the backend');
  const basicOk = await chat(d, basic('u', ADMIN));
  assert.equal(basicOk.status, 200, basicOk.text);
  assert.equal(basicOk.json.echo.headers.authorization, undefined);
  assert.equal(d.logCount(/msg=spawned/), 1);

  await d.stop();
  assertNoSecrets(d, [USER, ADMIN, lastByte, Buffer.from(`anyone:${USER}`).toString('base64')]);
});

test('sha256:, ${env.X} and apiKeysFile entries; user keys get 403 on management routes', async (t) => {
  const port = await h.freePorts(2);
  const dir = h.tmpdir();
  const hashed = 'hashed-user-key-91c3';
  const envKey = 'env-user-key-5d2a';
  const fileAdmin = 'file-admin-key-77e0';
  const fileUser = 'file-user-key-0b19';
  const fileHashedAdmin = 'file-hashed-admin-4410';
  const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
  const keys = path.join(dir, 'keys');
  fs.writeFileSync(keys, `# comment\n\n${fileAdmin} admin\n  ${fileUser}  \nsha256:${sha(fileHashedAdmin)} admin # hashed\n`);
  const d = await h.startDaemon(t, {
    dir,
    env: { MM_SEC_KEY: envKey },
    config: config(port, `apiKeys:
  - "sha256:${sha(hashed)}"
  - "sha256:${sha('upper-case-hex').toUpperCase()}"
  - "\${env.MM_SEC_KEY}"
apiKeysFile: ${keys}`),
  });

  // Each user key works on model routes…
  for (const k of [hashed, 'upper-case-hex', envKey, fileUser]) {
    const r = await request(`${d.url}/v1/models`, { headers: bearer(k) });
    assert.equal(r.status, 200, `${k}: ${r.text}`);
  }
  // …and the digest itself is not a key.
  assert401(await request(`${d.url}/v1/models`, { headers: bearer(sha(hashed)) }));
  assert401(await request(`${d.url}/v1/models`, { headers: bearer(`sha256:${sha(hashed)}`) }));
  assert401(await request(`${d.url}/v1/models`, { headers: bearer('${env.MM_SEC_KEY}') }));

  // A user key on management routes: 403, nothing started or stopped.
  const admin = [['GET', '/running'], ['GET', '/metrics'], ['POST', '/api/models/unload'],
    ['POST', '/api/models/load/m'], ['GET', '/api/health']];
  for (const k of [hashed, envKey, fileUser]) {
    for (const [method, route] of admin) {
      const r = await request(`${d.url}${route}`, { method, headers: bearer(k) });
      h.assertError(r, 403, /admin API key/);
      assert.equal(r.json.error.code, 'admin_key_required');
      assert.equal(r.json.error.type, 'permission_error');
    }
  }
  await d.waitLog(/status=403 code=admin_key_required/);
  assert.equal(d.logCount(/msg=spawned/), 0, 'a user key cannot load a model via the API');

  // Admin keys (plain in the file, hashed in the file) pass.
  for (const k of [fileAdmin, fileHashedAdmin]) {
    for (const [method, route] of [['GET', '/running'], ['GET', '/metrics'], ['POST', '/api/models/unload']]) {
      const r = await request(`${d.url}${route}`, { method, headers: bearer(k) });
      assert.equal(r.status, 200, `${method} ${route} with an admin key: ${r.status} ${r.text}`);
    }
  }
  const m = await request(`${d.url}/metrics`, { headers: { 'X-API-Key': fileAdmin } });
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="auth"\} (\d+)/);
  const auth = Number(/modelmux_gate_refusals_total\{reason="auth"\} (\d+)/.exec(m.text)[1]);
  assert.equal(auth, 3 + 3 * admin.length, 'three bad keys plus every 403');

  await d.stop();
  assertNoSecrets(d, [hashed, envKey, fileAdmin, fileUser, fileHashedAdmin]);
});

test('brute force: wrong keys from an address are slowed to 429; a right key from it still passes', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n  - "${USER}"\n  - {key: "${ADMIN}", admin: true}
rateLimit:
  authFailures: {rate: 0.1, burst: 5}`),
  });
  const statuses = [];
  let locked = null;
  for (let i = 0; i < 10; i++) {
    const guess = `${USER.slice(0, -2)}${String(i).padStart(2, '0')}`;
    const r = await request(`${d.url}/v1/models`, { headers: bearer(guess) });
    statuses.push(r.status);
    if (r.status === 429 && !locked) locked = r;
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429, 429, 429, 429, 429], 'the 5th failure empties the bucket');
  h.assertError(locked, 429, /failed authentication/);
  assert.equal(locked.json.error.type, 'rate_limit_error');
  const ra = Number(locked.headers['retry-after']);
  assert.ok(ra >= 1 && ra <= 10, `Retry-After ${locked.headers['retry-after']}`);

  // The same address, with a right key (a shared NAT, an office): served, in every form.
  for (const hd of [bearer(USER), { 'X-API-Key': USER }, basic('u', USER)]) {
    const r = await request(`${d.url}/v1/models`, { headers: hd });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  assert.equal((await request(`${d.url}/metrics`, { headers: bearer(ADMIN) })).status, 200);
  // Wrong keys stay slowed, missing ones too, and a spoofed forwarding header changes nothing.
  for (const hd of [bearer('wrong-key-0000000000'), {},
    { ...bearer('wrong-key-0000000001'), 'X-Forwarded-For': '203.0.113.9', Forwarded: 'for=203.0.113.9' }]) {
    const r = await request(`${d.url}/v1/models`, { headers: hd });
    h.assertError(r, 429);
    assert.ok(Number(r.headers['retry-after']) >= 1);
  }
  // /health needs no key and is not locked.
  assert.equal((await request(`${d.url}/health`)).status, 200);

  // Exactly four 401s were answered and logged; every later wrong attempt was a 429.
  assert.equal(d.logCount(/status=401 code=invalid_api_key/), 4);
  await d.waitLog(/status=429 code=rate_limited msg="too many failed authentication attempts; retry in \d+ s"/);
  assert.equal(await d.waitLogCount(/status=429 code=rate_limited/, 6 + 3), 6 + 3);
  assert.equal(d.logCount(/msg=spawned/), 0, 'no backend started by the guessing');
  await d.stop();
  assertNoSecrets(d, [USER, ADMIN]);
});

test('brute-force lockout lifts once the bucket refills', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n  - {key: "${ADMIN}", admin: true}
rateLimit:
  authFailures: {rate: 2, burst: 2}`),
  });
  assert.equal((await request(`${d.url}/v1/models`, { headers: bearer('bad-1') })).status, 401);
  const r = await request(`${d.url}/v1/models`, { headers: bearer('bad-2') });
  h.assertError(r, 429);
  assert.equal(r.headers['retry-after'], '1');
  // The right key is never locked out.
  assert.equal((await request(`${d.url}/v1/models`, { headers: bearer(ADMIN) })).status, 200);
  const t0 = Date.now();
  await h.waitFor(async () => (await request(`${d.url}/v1/models`, { headers: bearer('bad-3') })).status === 401,
    { timeout: 3000, interval: 1100, what: 'lockout to lift' }); // (a guess while locked out uses the refill)
  assert.ok(Date.now() - t0 < 2500, 'lifted after about a second');
  // The metrics saw the refusals.
  const m = await request(`${d.url}/metrics`, { headers: bearer(ADMIN) });
  assert.equal(m.status, 200, m.text);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="auth"\} [3-9]\b/);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="rate"\} [1-9]/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('one address locked out does not lock out another', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n  - "${USER}"\nrateLimit:\n  authFailures: {rate: 0.1, burst: 2}`),
  });
  // Loopback answers from any 127/8 source address: two clients, two addresses.
  const from = (ip, headers) => request(`${d.url}/v1/models`, { headers, localAddress: ip });
  h.assertError(await from('127.0.0.2', bearer('x')), 401);
  h.assertError(await from('127.0.0.2', bearer('y')), 429);
  h.assertError(await from('127.0.0.2', bearer('z')), 429);
  const r = await from('127.0.0.3', bearer('x'));
  h.assertError(r, 401, /invalid API key/);
  assert.equal((await from('127.0.0.1', bearer(USER))).status, 200);
  assert.equal((await from('127.0.0.2', bearer(USER))).status, 200, 'the right key from the guessing address');
  await d.stop();
});

test('an apiKeysFile with no keys in it does not silently turn authentication off', async (t) => {
  const port = await h.freePorts(2);
  const dir = h.tmpdir();
  const keys = path.join(dir, 'keys');
  fs.writeFileSync(keys, '# all keys revoked\n\n');
  const cfgPath = path.join(dir, 'config.yaml');
  fs.writeFileSync(cfgPath, config(port, `apiKeysFile: ${keys}`));
  let code = 0;
  try {
    h.execFileSync(h.MODELMUX, ['-t', '-c', cfgPath], { stdio: 'pipe' });
  } catch (e) {
    code = e.status;
  }
  if (code === 1) return; // refused at load: fine
  const d = await h.startDaemon(t, { dir, config: config(port, `apiKeysFile: ${keys}`) });
  const r = await request(`${d.url}/running`);
  await d.stop();
  assert.equal(r.status, 401, `an operator who configured a key file got an open proxy: GET /running → ${r.status}`);
});

test('a model\'s own upstreamApiKey replaces the client\'s credentials at the backend', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\napiKeys: ["${USER}"]\nmodels:\n` +
      `  m:\n    cmd: ${h.FAKE} --port \${PORT}\n    upstreamApiKey: backend-s3cret\n`,
  });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] },
    { Authorization: `Bearer ${USER}`, Cookie: 'session=abc' });
  assert.equal(r.status, 200, r.text);
  const seen = r.json.echo.headers;
  assert.equal(seen.authorization, 'Bearer backend-s3cret');
  assert.equal(seen['x-api-key'], 'backend-s3cret');
  assert.equal(seen.cookie, undefined);
  assert.ok(!d.stderr.includes('backend-s3cret'), 'the backend key is not logged');
  await d.stop();
});
