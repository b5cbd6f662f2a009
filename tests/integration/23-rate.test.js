// Security gate, rate limits: per-IP, per-key and global token buckets answer 429 with
// Retry-After and an OpenAI rate_limit_error, refill over time, cannot be dodged with
// forwarding headers, and a small table under many clients stays bounded.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

const request = h.rawRequest;

const bearer = (k) => ({ Authorization: `Bearer ${k}` });

function assert429(r) {
  h.assertError(r, 429, /rate limit/);
  assert.equal(r.json.error.type, 'rate_limit_error');
  assert.equal(r.json.error.code, 'rate_limited');
  const ra = r.headers['retry-after'];
  assert.match(ra || '', /^\d+$/, `Retry-After: ${ra}`);
  assert.ok(Number(ra) >= 1, `Retry-After ${ra}`);
  return Number(ra);
}

function rssKb(d) {
  return h.rssKb(d.proc.pid);
}

function config(port, security) {
  return `startPort: ${port}
${security}
models:
  m:
    cmd: ${h.FAKE} --port \${PORT}
`;
}

test('perIP {rate: 1, burst: 3}: the 4th quick request gets 429 + Retry-After; refill lets one more in', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port, 'rateLimit:\n  perIP: {rate: 1, burst: 3}') });
  const url = `${d.url}/v1/models`;
  for (let i = 0; i < 3; i++) assert.equal((await request(url)).status, 200, `request ${i + 1}`);
  const t0 = Date.now();
  const ra = assert429(await request(url));
  assert.ok(ra <= 2, `Retry-After ${ra} for a 1/s bucket`);
  // Forwarding headers do not make a new client; a model request is refused before any start.
  assert429(await request(url, { headers: { 'X-Forwarded-For': '198.51.100.7', 'X-Real-IP': '198.51.100.7', Forwarded: 'for=198.51.100.7' } }));
  assert429(await request(`${d.url}${CHAT}`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [] }) }));
  assert.equal(d.logCount(/msg=spawned/), 0, 'a rate-limited request never starts a backend');
  // /health is not rate limited (no key, no bucket).
  for (let i = 0; i < 5; i++) assert.equal((await request(`${d.url}/health`)).status, 200);
  // Another client address has its own bucket.
  assert.equal((await request(url, { localAddress: '127.0.0.2' })).status, 200);

  // After about a second one token is back: exactly one more request passes.
  await h.waitFor(async () => (await request(url)).status === 200, { timeout: 2500, interval: 100, what: 'a token to refill' });
  const waited = Date.now() - t0;
  assert.ok(waited >= 600 && waited < 2200, `refilled after ${waited} ms`);
  assert429(await request(url));

  await d.waitLog(/status=429 code=rate_limited msg="rate limit reached; retry in \d+ s"/);
  const m = await request(`${d.url}/metrics`, { localAddress: '127.0.0.3' });
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="rate"\} ([4-9]|\d\d+)\b/);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('perKey buckets are separate per key, and a wrong key is a 401, not a 429', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys: ["key-alpha-1", "key-beta-22"]
rateLimit:
  perIP: {rate: 0, burst: 1}
  perKey: {rate: 0.1, burst: 2}
  authFailures: {rate: 0, burst: 1}`),
  });
  const url = `${d.url}/v1/models`;
  assert.equal((await request(url, { headers: bearer('key-alpha-1') })).status, 200);
  assert.equal((await request(url, { headers: bearer('key-alpha-1') })).status, 200);
  const ra = assert429(await request(url, { headers: bearer('key-alpha-1') }));
  assert.ok(ra >= 5 && ra <= 10, `Retry-After ${ra} for a 0.1/s bucket`);
  // The same key by another header form, from another address: the same bucket.
  assert429(await request(url, { headers: { 'X-API-Key': 'key-alpha-1' }, localAddress: '127.0.0.2' }));
  // The other key has its own full bucket.
  assert.equal((await request(url, { headers: bearer('key-beta-22') })).status, 200);
  assert.equal((await request(url, { headers: { 'X-API-Key': 'key-beta-22' } })).status, 200);
  assert429(await request(url, { headers: bearer('key-beta-22') }));
  // Auth runs before rate: a wrong or missing key is refused as such.
  h.assertError(await request(url, { headers: bearer('key-alpha-2') }), 401);
  h.assertError(await request(url), 401);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('the global bucket is shared by every client and key', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys: ["g-key-1", "g-key-2"]
rateLimit:
  global: {rate: 0.1, burst: 4}`),
  });
  const url = `${d.url}/v1/models`;
  const who = [['g-key-1', '127.0.0.1'], ['g-key-2', '127.0.0.2'], ['g-key-1', '127.0.0.3'], ['g-key-2', '127.0.0.4']];
  for (const [k, ip] of who) {
    const r = await request(url, { headers: bearer(k), localAddress: ip });
    assert.equal(r.status, 200, `${k} from ${ip}`);
  }
  for (const [k, ip] of [['g-key-1', '127.0.0.5'], ['g-key-2', '127.0.0.6']]) {
    const ra = assert429(await request(url, { headers: bearer(k), localAddress: ip }));
    assert.ok(ra >= 5 && ra <= 10, `Retry-After ${ra}`);
  }
  assert.equal((await request(`${d.url}/health`, { localAddress: '127.0.0.7' })).status, 200, '/health unaffected');
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('tableSize 16 with 40 keys: every key served, recent buckets kept, memory flat', async (t) => {
  const port = await h.freePorts(2);
  const keys = Array.from({ length: 40 }, (_, i) => `many-key-${String(i).padStart(2, '0')}-${'z'.repeat(20)}`);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n${keys.map((k) => `  - "${k}"`).join('\n')}
rateLimit:
  perIP: {rate: 1000, burst: 1000}
  perKey: {rate: 0.01, burst: 1}
  tableSize: 16`),
  });
  const url = `${d.url}/v1/models`;
  const before = rssKb(d);
  // Round one: every key has a fresh bucket.
  for (const k of keys) assert.equal((await request(url, { headers: bearer(k) })).status, 200, k);
  // The most recent keys still have their (empty) buckets: refused.
  for (const k of keys.slice(-5)) assert429(await request(url, { headers: bearer(k) }));
  // The oldest were evicted (as if idle) and start full again — bounded table, documented.
  assert.equal((await request(url, { headers: bearer(keys[0]) })).status, 200);
  // Many more rounds: the table never grows.
  for (let round = 0; round < 5; round++) {
    for (const k of keys) {
      const r = await request(url, { headers: bearer(k) });
      assert.ok(r.status === 200 || r.status === 429, `${k}: ${r.status}`);
    }
  }
  const after = rssKb(d);
  if (!h.SANITIZED)
    assert.ok(after - before < 4 * 1024, `RSS grew ${(after - before)} kB over ${40 * 6} keyed requests`);
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});
