// The upload spool has a budget (limits.maxSpoolBytes), and each client address and each API key
// a share of it: an upload that would pass any is refused with 507 + Retry-After at once, and
// the bytes come back when an upload ends.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

const KB = 1024;

// Starts an upload of `total` bytes to /upstream/m/upload, sends `now` of them, and keeps the
// connection. Resolves with { s, answer() } once the bytes are written.
function upload(d, localAddress, total, now, key) {
  const port = Number(d.addr.split(':').pop());
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    let got = '';
    s.on('data', (b) => { got += b.toString('latin1'); });
    s.on('error', () => {});
    s.on('connect', () => {
      s.write(`POST /upstream/m/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n` +
        (key ? `Authorization: Bearer ${key}\r\n` : '') + `Content-Length: ${total}\r\n\r\n`);
      s.write(Buffer.alloc(now, 0x61), () => resolve({ s, answer: () => got }));
    });
  });
}

async function spooled(d, key) {
  const m = await h.get(`${d.url}/metrics`, key ? { authorization: `Bearer ${key}` } : {});
  return Number(/^modelmux_spool_bytes (\d+)$/m.exec(m.text)[1]);
}

test('a full spool, or a client past its share, gets 507 + Retry-After at once; the bytes come back', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nlimits:\n  maxSpoolBytes: ${400 * KB}\n` +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const m0 = await h.get(`${d.url}/metrics`);
  assert.match(m0.text, new RegExp(`^modelmux_spool_budget_bytes ${400 * KB}$`, 'm'));
  // 127.0.0.2 holds 150 KB of its 200 KB share.
  const a = await upload(d, '127.0.0.2', 1000 * KB, 150 * KB);
  await h.waitFor(async () => (await spooled(d)) >= 150 * KB, { what: '150 KB spooled' });
  // Another 100 KB from the same address passes its share: refused at once.
  const b = await upload(d, '127.0.0.2', 1000 * KB, 100 * KB);
  await h.waitFor(() => / 507 /.test(b.answer().split('\r\n')[0]), { what: '507 for the share' });
  assert.match(b.answer(), /\r\nRetry-After: 5\r\n/i);
  assert.match(b.answer(), /"code":"insufficient_storage"/);
  // Another address has room: 190 KB of the budget's remaining 250 KB.
  const c = await upload(d, '127.0.0.3', 1000 * KB, 190 * KB);
  await h.waitFor(async () => (await spooled(d)) >= 340 * KB, { what: '340 KB spooled' });
  assert.equal(c.answer(), '', 'still uploading');
  // A third address finds the budget full.
  const e = await upload(d, '127.0.0.4', 1000 * KB, 100 * KB);
  await h.waitFor(() => / 507 /.test(e.answer().split('\r\n')[0]), { what: '507 for the budget' });
  // The first two leave: their bytes come back, and the third address may upload again.
  a.s.destroy();
  c.s.destroy();
  await h.waitFor(async () => (await spooled(d)) === 0, { what: 'the spool to empty' });
  const f = await upload(d, '127.0.0.4', 1000 * KB, 100 * KB);
  await h.waitFor(async () => (await spooled(d)) >= 100 * KB, { what: '100 KB spooled again' });
  assert.equal(f.answer(), '');
  f.s.destroy();
  b.s.destroy();
  e.s.destroy();
  const m = await h.get(`${d.url}/metrics`);
  assert.match(m.text, /modelmux_gate_refusals_total\{reason="storage"\} 2\b/);
  await d.waitLogCount(/status=507 code=insufficient_storage/, 2);
  await d.stop();
});

test('one API key holds at most its share of the spool, from any address; another key has its own', async (t) => {
  const port = await h.freePorts(1);
  const A = 'spool-key-a-5f1e', B = 'spool-key-b-77c2', ADMIN = 'spool-admin-0d3b';
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nlimits:\n  maxSpoolBytes: ${400 * KB}\n` +
      `apiKeys:\n  - "${A}"\n  - "${B}"\n  - {key: "${ADMIN}", admin: true}\n` +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  // Key A holds 150 KB of its 200 KB share from 127.0.0.2 ...
  const a = await upload(d, '127.0.0.2', 1000 * KB, 150 * KB, A);
  await h.waitFor(async () => (await spooled(d, ADMIN)) >= 150 * KB, { what: '150 KB spooled' });
  // ... so 100 KB more from another address (whose own share is untouched) passes the key's.
  const b = await upload(d, '127.0.0.3', 1000 * KB, 100 * KB, A);
  await h.waitFor(() => / 507 /.test(b.answer().split('\r\n')[0]), { what: '507 for the key\'s share' });
  assert.match(b.answer(), /\r\nRetry-After: 5\r\n/i);
  assert.match(b.answer(), /"code":"insufficient_storage"/);
  assert.match(b.answer(), /share of it by address or key/);
  // Key B from that same address has room: the address's share and its own are free.
  const c = await upload(d, '127.0.0.3', 1000 * KB, 100 * KB, B);
  await h.waitFor(async () => (await spooled(d, ADMIN)) >= 250 * KB, { what: '250 KB spooled' });
  assert.equal(c.answer(), '', 'key B is still uploading');
  // Key A's bytes come back when its upload ends: then it may upload again.
  a.s.destroy();
  await h.waitFor(async () => (await spooled(d, ADMIN)) === 100 * KB, { what: 'key A\'s bytes back' });
  const e = await upload(d, '127.0.0.4', 1000 * KB, 150 * KB, A);
  await h.waitFor(async () => (await spooled(d, ADMIN)) >= 250 * KB, { what: 'key A uploading again' });
  assert.equal(e.answer(), '');
  for (const x of [b, c, e]) x.s.destroy();
  await h.waitFor(async () => (await spooled(d, ADMIN)) === 0, { what: 'the spool to empty' });
  await d.waitLogCount(/status=507 code=insufficient_storage/, 1);
  await d.stop();
});
