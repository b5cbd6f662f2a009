// Security gate, CORS: a disallowed Origin is refused before anything else (403, no
// Access-Control-* headers); an allowed one gets exactly one ACAO equal to it, preflights
// answer 204 without a key, and "*" with credentials is refused at load.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const APP = 'https://app.example:8443';
const KEY = 'cors-user-key-3b1f0e';

const request = h.rawRequest;

function chat(d, headers = {}) {
  return request(`${d.url}${CHAT}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
}

// All values of a response header, by case-insensitive name, from the raw list.
function all(r, name) {
  const out = [];
  for (let i = 0; i < r.raw.length; i += 2) if (r.raw[i].toLowerCase() === name) out.push(r.raw[i + 1]);
  return out;
}

function acHeaders(r) {
  const out = [];
  for (let i = 0; i < r.raw.length; i += 2) if (/^access-control-/i.test(r.raw[i])) out.push(r.raw[i]);
  return out;
}

function assertCorsRefused(r) {
  h.assertError(r, 403, /origin .* is not allowed/);
  assert.equal(r.json.error.code, 'origin_not_allowed');
  assert.deepEqual(acHeaders(r), [], 'no Access-Control-* headers on a refusal');
}

const preflight = (origin, extra = {}) => ({
  Origin: origin,
  'Access-Control-Request-Method': 'POST',
  'Access-Control-Request-Headers': 'authorization, content-type',
  ...extra,
});

test('without cors config any Origin is refused with 403, preflight too', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  for (const origin of ['https://evil.example', 'null', `http://${d.addr}0`, 'http://127.0.0.1']) {
    assertCorsRefused(await chat(d, { Origin: origin }));
    assertCorsRefused(await request(`${d.url}/v1/models`, { headers: { Origin: origin } }));
    const pf = await request(`${d.url}${CHAT}`, { method: 'OPTIONS', headers: preflight(origin) });
    assertCorsRefused(pf);
  }
  // The same requests without an Origin pass (a non-browser client).
  assert.equal((await request(`${d.url}/v1/models`)).status, 200);
  await d.waitLog(/status=403 code=origin_not_allowed msg="origin \\"https:\/\/evil\.example\\" is not allowed"/);
  assert.equal(d.logCount(/msg=spawned/), 0, 'a refused origin never starts a backend');
  const m = await request(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="cors"\} 12\b/);
  // The daemon's own origin is no cross-origin request (the web page's POSTs carry it): it
  // passes, and gets no Access-Control-* headers since none are needed.
  const own = await chat(d, { Origin: `http://${d.addr}` });
  assert.equal(own.status, 200, own.text);
  assert.deepEqual(acHeaders(own), []);
  await d.stop();
});

test('allowedOrigins: exact origin only; preflight 204 without a key; one ACAO on answers', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
apiKeys: ["${KEY}"]
cors:
  allowedOrigins: ["${APP}"]
  allowedMethods: [GET, POST, OPTIONS]
  allowedHeaders: [Authorization, Content-Type]
  maxAge: 321
rateLimit:
  authFailures: {rate: 0, burst: 1}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`,
  });

  // Near misses: same host other port, other scheme, default port, a suffix trick, a prefix
  // trick, a trailing slash, a path, userinfo, null, an empty value, two origins in one.
  const bad = ['https://app.example', 'https://app.example:8444', 'http://app.example:8443',
    'https://app.example:8443.evil.example', 'https://evil.app.example:8443',
    'https://app.example:84430', `${APP}/`, `${APP}/x`, 'https://user@app.example:8443',
    'null', `${APP} https://evil.example`, `${APP},https://evil.example`, 'https://app.example.:8443'];
  for (const origin of bad) {
    const r = await chat(d, { Origin: origin, Authorization: `Bearer ${KEY}` });
    assert.equal(r.status, 403, `${origin} → ${r.status}`);
    assertCorsRefused(r);
    assertCorsRefused(await request(`${d.url}${CHAT}`, { method: 'OPTIONS', headers: preflight(origin) }));
  }
  assert.equal(d.logCount(/msg=spawned/), 0, 'refused origins start nothing');

  // Preflight from the allowed origin: 204, no key needed, the configured lists and max age.
  const pf = await request(`${d.url}${CHAT}`, { method: 'OPTIONS', headers: preflight(APP) });
  assert.equal(pf.status, 204, pf.text);
  assert.equal(pf.text, '');
  assert.deepEqual(all(pf, 'access-control-allow-origin'), [APP]);
  assert.equal(pf.headers['access-control-allow-methods'], 'GET, POST, OPTIONS');
  assert.equal(pf.headers['access-control-allow-headers'], 'Authorization, Content-Type');
  assert.equal(pf.headers['access-control-max-age'], '321');
  assert.match(pf.headers.vary || '', /Origin/);
  assert.equal(pf.headers['access-control-allow-credentials'], undefined, 'credentials not configured');
  // Origins compare case-insensitively (scheme and host are).
  const pfCase = await request(`${d.url}${CHAT}`, { method: 'OPTIONS', headers: preflight('HTTPS://App.Example:8443') });
  assert.equal(pfCase.status, 204);

  // An OPTIONS that is not a preflight is an ordinary request: it needs a key.
  const notPf = await request(`${d.url}${CHAT}`, { method: 'OPTIONS', headers: { Origin: APP } });
  h.assertError(notPf, 401);
  // The 401 carries the CORS headers so the page can read the error.
  assert.deepEqual(all(notPf, 'access-control-allow-origin'), [APP]);

  // A real request from the allowed origin: 200, exactly one ACAO = the origin, Vary: Origin,
  // and the Origin itself still reaches the backend (it is not a credential).
  const ok = await chat(d, { Origin: APP, Authorization: `Bearer ${KEY}` });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(all(ok, 'access-control-allow-origin'), [APP], 'exactly one ACAO');
  assert.ok(all(ok, 'vary').some((v) => /\bOrigin\b/i.test(v)), 'Vary: Origin');
  assert.equal(ok.headers['access-control-allow-methods'], undefined, 'preflight-only headers stay off');
  assert.equal(ok.json.echo.headers.authorization, undefined);
  // Without an Origin the answer has no CORS headers.
  const plain = await chat(d, { Authorization: `Bearer ${KEY}` });
  assert.equal(plain.status, 200);
  assert.deepEqual(acHeaders(plain), []);
  assert.equal(d.logCount(/msg=spawned/), 1);
  await d.stop();
});

test('"*" answers any origin with ACAO *; a valid key from a refused origin is still refused', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
cors:
  allowedOrigins: ["*"]
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`,
  });
  const r = await request(`${d.url}/v1/models`, { headers: { Origin: 'https://anything.example' } });
  assert.equal(r.status, 200);
  assert.deepEqual(all(r, 'access-control-allow-origin'), ['*']);
  assert.equal(r.headers['access-control-allow-credentials'], undefined);
  await d.stop();

  const d2 = await h.startDaemon(t, {
    config: `startPort: ${port}
apiKeys: [{key: "${KEY}", admin: true}]
cors:
  allowedOrigins: ["${APP}"]
  allowCredentials: true
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`,
  });
  // The CORS check runs before the key check: the right key does not help a wrong origin.
  assertCorsRefused(await chat(d2, { Origin: 'https://evil.example', Authorization: `Bearer ${KEY}` }));
  assertCorsRefused(await request(`${d2.url}/api/models/load/m`,
    { method: 'POST', headers: { Origin: 'https://evil.example', Authorization: `Bearer ${KEY}` } }));
  const ok = await request(`${d2.url}/v1/models`, { headers: { Origin: APP, Authorization: `Bearer ${KEY}` } });
  assert.equal(ok.status, 200);
  assert.deepEqual(all(ok, 'access-control-allow-origin'), [APP], 'credentials need the exact origin');
  assert.equal(ok.headers['access-control-allow-credentials'], 'true');
  assert.equal(d2.logCount(/msg=spawned/), 0);
  await d2.stop();
});

test('allowedOrigins "*" with allowCredentials: true fails -t with exit 1 and file:line:col', () => {
  const dir = h.tmpdir();
  const cases = [
    ['cors:\n  allowedOrigins: ["*"]\n  allowCredentials: true\n', /cors\.allowCredentials/],
    ['cors:\n  allowCredentials: true\n  allowedOrigins:\n    - https://a.example\n    - "*"\n', /cors\./],
    ['cors:\n  allowedOrigins: ["https://a.example/path"]\n', /cors\.allowedOrigins/],
    ['cors:\n  allowedOrigins: ["ftp://a.example"]\n', /cors\.allowedOrigins/],
    ['cors:\n  allowedOrigins: ["a.example"]\n', /cors\.allowedOrigins/],
  ];
  for (const [yaml, re] of cases) {
    const cfg = path.join(dir, 'config.yaml');
    fs.writeFileSync(cfg, `${yaml}models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`);
    let err = null;
    try {
      h.execFileSync(h.MODELMUX, ['-t', '-c', cfg], { stdio: 'pipe' });
    } catch (e) {
      err = e;
    }
    assert.ok(err, `accepted:\n${yaml}`);
    assert.equal(err.status, 1);
    const msg = err.stderr.toString();
    assert.match(msg, /config\.yaml:\d+:\d+: /, msg);
    assert.match(msg, re, msg);
  }
});
