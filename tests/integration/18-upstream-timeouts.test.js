// llama-swap's timeouts.* for the upstream transport: keepalive (TCP keepalive probes on the
// backend connection, also a WebSocket's), idleConn (a kept connection idle longer is not
// reused). Seen from outside with ss(8).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const WebSocket = require('ws');
const h = require('./lib/harness');

// The daemon's established connections to a backend port: [{ local, timer }].
function conns(port) {
  const out = execFileSync('ss', ['-tnoH', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.trim().split('\n').filter(Boolean).map((l) => {
    const f = l.trim().split(/\s+/);
    return { local: f[2], timer: (/timer:\((\w+)/.exec(l) || [])[1] || null };
  });
}

async function chat(d, model) {
  const r = await h.post(`${d.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);
}

test('timeouts.keepalive: backend connections carry TCP keepalive; 0 turns it off', async (t) => {
  const [p1, p2] = [await h.freePorts(1), await h.freePorts(1)];
  const d = await h.startDaemon(t, { config: `groups:
  all:
    swap: false
    members: [ka, noka]
models:
  ka:
    cmd: ${h.FAKE} --port ${p1}
    proxy: http://127.0.0.1:${p1}
    timeouts:
      keepalive: 7
  noka:
    cmd: ${h.FAKE} --port ${p2}
    proxy: http://127.0.0.1:${p2}
    timeouts:
      keepalive: 0
` });
  await chat(d, 'ka');
  await chat(d, 'noka');
  const a = await h.waitFor(() => conns(p1).find((c) => c.timer === 'keepalive'), { what: 'a kept connection with keepalive' });
  assert.ok(a);
  assert.ok(conns(p2).length > 0, 'the connection to noka is kept');
  assert.ok(conns(p2).every((c) => c.timer !== 'keepalive'), JSON.stringify(conns(p2)));

  // A WebSocket's backend socket gets the same probes.
  const ws = new WebSocket(`${d.url.replace('http', 'ws')}/upstream/ka/ws`);
  await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
  assert.ok(conns(p1).filter((c) => c.timer === 'keepalive').length >= 2, JSON.stringify(conns(p1)));
  ws.close();
  await new Promise((res) => ws.on('close', res));
  await d.stop();
});

test('timeouts.idleConn: a connection idle longer than it is not reused', async (t) => {
  const [p1, p2] = [await h.freePorts(1), await h.freePorts(1)];
  const d = await h.startDaemon(t, { config: `groups:
  all:
    swap: false
    members: [short, long]
models:
  short:
    cmd: ${h.FAKE} --port ${p1}
    proxy: http://127.0.0.1:${p1}
    timeouts:
      idleConn: 1
  long:
    cmd: ${h.FAKE} --port ${p2}
    proxy: http://127.0.0.1:${p2}
` });
  // 'long' first: its start may take more than short's idleConn on a loaded machine.
  await chat(d, 'long');
  await chat(d, 'short');
  const s0 = conns(p1).map((c) => c.local);
  assert.equal(s0.length, 1);
  const t0 = Date.now();
  // curl counts idle time in whole seconds and ages a connection out past it: > 2 s.
  await h.waitFor(() => Date.now() - t0 > 2200, { timeout: 4000, what: 'idleConn to pass' });
  await chat(d, 'short');
  await chat(d, 'long');
  const s1 = conns(p1).map((c) => c.local);
  assert.ok(!s1.includes(s0[0]), `short reused ${s0[0]}: ${s1}`);
  // Within its idleConn a connection is reused. (curl prunes its one shared cache with the
  // settings of the transfer that looks, so "long" may lose its idle connection early too:
  // never late, and only a reconnect on loopback.)
  await chat(d, 'short');
  assert.deepEqual(conns(p1).map((c) => c.local), s1, 'reused within idleConn');
  await d.stop();
});
