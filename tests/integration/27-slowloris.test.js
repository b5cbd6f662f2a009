// Slowloris: one address holding many half-sent heads is capped (limits.maxConnectionsPerIP),
// and another address is still served at once.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

function open(d, localAddress) {
  const port = Number(d.addr.split(':').pop());
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    const c = { s, closed: false };
    s.on('error', () => {});
    s.on('close', () => { c.closed = true; });
    s.on('connect', () => {
      s.write('GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: '); // never finished
      resolve(c);
    });
  });
}

test('a flood of half-sent heads from one address is capped; another address is served within a second', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nlimits:\n  maxConnectionsPerIP: 20\n  headerTimeoutSeconds: 30\n` +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const flood = [];
  for (let i = 0; i < 120; i++) flood.push(await open(d, '127.0.0.2'));
  // The ones over the cap are closed at once; the first 20 are held (their heads have time).
  await h.waitFor(() => flood.filter((c) => c.closed).length === 100, { timeout: 3000, what: '100 refused' });
  assert.equal(flood.filter((c) => !c.closed).length, 20);
  const t0 = Date.now();
  const r = await h.rawRequest(`${d.url}/health`, { localAddress: '127.0.0.3' });
  assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 < 1000 * h.SLOW, `served in ${Date.now() - t0} ms`);
  // One log line for the burst (at most one a second), and the refusals counted.
  assert.ok(d.logCount(/msg="connection refused: address at its cap" ip=127\.0\.0\.2 cap=20/) <= 3);
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="connections"\} 100\b/);
  // Once they go, the address may connect again.
  for (const c of flood) c.s.destroy();
  await h.waitFor(async () => (await h.rawRequest(`${d.url}/health`, { localAddress: '127.0.0.2' }).catch(() => ({}))).status === 200,
    { timeout: 3000, what: '127.0.0.2 served again' });
  await d.stop();
});
