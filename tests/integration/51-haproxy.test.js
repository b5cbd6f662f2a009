// Several modelmux hosts behind HAProxy (Debian's package), in network namespaces: the config
// comes from `modelmux --haproxy-config`. A request goes to a host where its model is loaded,
// a cold model to a host that serves it, a model loaded on two hosts is balanced across them,
// and a host killed mid-run is taken out within the health interval with no request lost
// that had not started.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./lib/harness');
const { Lab, requireLab } = require('./lib/netns');
const hp = require('./lib/haproxy');

const INTER_MS = 200; // HAProxy's check period here (fall 2)

// A host's config: every model of it can stay loaded with the others (no swaps here).
function hostConfig(name, models, preload) {
  // HAProxy forwards the client's address; the one client here is fast.
  let y = 'startPort: 9100\ntrustedProxies: [10.77.0.1]\nrateLimit: {perIP: {rate: 10000, burst: 10000}}\nmodels:\n';
  for (const m of models) y += `  ${m}:\n    cmd: ${h.FAKE} --port \${PORT} --model ${m} --reply ${name} --delay 20\n`;
  y += `groups:\n  all:\n    swap: false\n    exclusive: false\n    members: [${models.join(', ')}]\n`;
  if (preload.length) y += `hooks:\n  on_startup:\n    preload: [${preload.join(', ')}]\n`;
  return y;
}

test('HAProxy in front of three hosts: warm first, balanced, a host killed mid-run', async (t) => {
  if (!requireLab(t)) return;
  const haproxy = hp.haproxyPath();
  if (!haproxy) {
    if (process.env.CI) throw new Error('haproxy is not installed (.ci/deps test installs it)');
    t.skip('haproxy is not installed');
    return;
  }
  const lab = new Lab(3);
  t.after(async () => {
    await lab.down();
    assert.deepEqual(lab.leftovers(), [], 'namespaces left behind');
  });
  lab.up();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-haproxy-'));
  const plan = [
    { models: ['alpha', 'beta', 'delta'], preload: ['beta'] },  // h1: alpha and delta cold
    { models: ['alpha', 'gamma'], preload: ['alpha', 'gamma'] }, // h2
    { models: ['beta', 'gamma'], preload: ['beta', 'gamma'] },   // h3
  ];
  const hosts = await Promise.all(lab.hosts.map((x, i) => h.startDaemon(t, {
    netns: x.ns, listen: `${x.addr}:8080`, config: hostConfig(`h${i + 1}`, plan[i].models, plan[i].preload),
  })));
  const [h1, h2, h3] = hosts;
  await Promise.all(hosts.map((d, i) => Promise.all(plan[i].preload.map((m) =>
    d.waitLog(new RegExp(`sched model=${m} state=ready`))))));

  const gen = hp.generate(dir, {
    servers: lab.hosts.map((x, i) => ({ name: `h${i + 1}`, addr: `${x.addr}:8080` })),
    configs: hosts.map((d) => d.configPath),
    bind: '10.77.0.1:8080',
    interMs: INTER_MS,
  });
  // The same config from the running hosts' /v1/models (no config files where HAProxy runs).
  const fromHosts = hp.generate(dir, {
    servers: lab.hosts.map((x, i) => ({ name: `h${i + 1}`, addr: `${x.addr}:8080` })),
    bind: '10.77.0.1:8080', interMs: INTER_MS, netns: lab.lb, name: 'from-hosts.cfg',
  });
  assert.equal(fs.readFileSync(fromHosts.file, 'utf8'), fs.readFileSync(gen.file, 'utf8'));
  const lb = lab.spawn(lab.lb, haproxy, ['-db', '-f', gen.file]);
  const be = gen.backendOf;
  const want = {
    [`${be.alpha}/h1`]: 'DOWN', [`${be.alpha}/h2`]: 'UP', [`${be.alpha}/h3`]: 'DOWN',
    [`${be.beta}/h1`]: 'UP', [`${be.beta}/h3`]: 'UP', [`${be.gamma}/h2`]: 'UP', [`${be.gamma}/h3`]: 'UP',
    [`${be.delta}/h1`]: 'DOWN', [`${be.delta}/h1-any`]: 'UP', [`${be.delta}/h2-any`]: 'DOWN',
  };
  await h.waitFor(async () => {
    const s = await hp.states(gen.sock);
    return Object.entries(want).every(([k, v]) => s[k] === v);
  }, { timeout: 5000, what: `HAProxy sees which host has what warm (${lb.out})` });

  const cli = await lab.agent();
  const LB = 'http://10.77.0.1:8080';
  const ask = (model) => cli.request({ url: `${LB}/v1/chat/completions`, body: { model, messages: [] } });
  const hostOf = (r) => (r.status === 200 ? JSON.parse(r.text).choices[0].message.content.split(' ')[0] : null);

  // alpha is warm on h2 only: every request goes there, and h1 never loads it.
  for (let i = 0; i < 10; i++) {
    const r = await ask('alpha');
    assert.equal(r.status, 200, r.text || r.error);
    assert.equal(hostOf(r), 'h2');
  }
  assert.equal(h1.logCount(/sched model=alpha state=starting/), 0, 'h1 loaded alpha');

  // gamma is warm on h2 and h3: balanced across both.
  const seen = { h2: 0, h3: 0 };
  await Promise.all([0, 1, 2, 3].map(async () => {
    for (let i = 0; i < 6; i++) {
      const r = await ask('gamma');
      assert.equal(r.status, 200, r.text || r.error);
      seen[hostOf(r)]++;
    }
  }));
  assert.ok(seen.h2 >= 4 && seen.h3 >= 4, `gamma balanced: ${JSON.stringify(seen)}`);

  // delta is cold, served by h1 only: it goes there, loads, and h1 becomes its warm host.
  const d = await ask('delta');
  assert.equal(d.status, 200, d.text || d.error);
  assert.equal(hostOf(d), 'h1');
  await h.waitFor(async () => (await hp.states(gen.sock))[`${be.delta}/h1`] === 'UP',
    { timeout: 3000, what: 'delta warm on h1' });

  // h3 is killed while gamma is under load.
  const results = [];
  let stop = false;
  let killedAt = Infinity;
  const workers = [0, 1, 2, 3].map(async () => {
    while (!stop) {
      const start = Date.now();
      const r = await ask('gamma');
      results.push({ start, end: Date.now(), status: r.status, error: r.error, host: hostOf(r) });
    }
  });
  await h.sleep(500);
  killedAt = Date.now();
  h3.proc.kill('SIGKILL');
  await h3.exited;
  await h3.checkClean(); // its model servers went with it
  const down = await h.waitFor(async () => {
    const s = await hp.states(gen.sock);
    return s[`${be.gamma}/h3`].startsWith('DOWN') && Date.now();
  }, { timeout: 5000, interval: 10, what: 'h3 taken out' });
  await h.sleep(500);
  stop = true;
  await Promise.all(workers);

  const failover = down - killedAt;
  const lost = results.filter((r) => r.status !== 200);
  const lostUnstarted = lost.filter((r) => r.start > killedAt);
  const after = results.filter((r) => r.start > down);
  t.diagnostic(`requests ${results.length}, lost ${lost.length} (none begun after the kill: ` +
    `${lostUnstarted.length}), h3 out after ${failover} ms`);
  assert.ok(failover <= 2 * INTER_MS + 1000, `h3 taken out after ${failover} ms`);
  assert.deepEqual(lostUnstarted, [], `requests begun after the kill were lost: ${JSON.stringify(lostUnstarted.slice(0, 3).map((r) => ({ ...r, start: r.start - killedAt, end: r.end - killedAt })))}`);
  assert.ok(lost.length <= 4, `lost ${lost.length}: more than were in flight`);
  assert.ok(after.length > 0 && after.every((r) => r.host === 'h2'), 'after: all on h2');

  await Promise.all([h1.stop(), h2.stop()]);
});
