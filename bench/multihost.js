// Multi-host figures (bench/README.md, "Several hosts behind HAProxy"): three modelmux hosts
// in network namespaces behind HAProxy, its config from `modelmux --haproxy-config`.
//   1. added latency: modelmux alone vs HAProxy + modelmux (mm-loadgen, same namespace, same
//      warm model, c=1 and c=16)
//   2. failover under load: a host serving a model loaded on two hosts is SIGKILLed mid-run;
//      requests lost (begun before / after the kill) and time until HAProxy takes it out
//   3. failover by health checks alone: the same with no traffic (fall x inter)
// Figures, not assertions. Run as root: `make bench-multihost` (MULTIHOST_RUNS=N rounds of 2
// and 3, default 5; MULTIHOST_INTER_MS, default 1000, HAProxy's check period).
'use strict';
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../tests/integration/lib/harness');
const { Lab, check } = require('../tests/integration/lib/netns');
const hp = require('../tests/integration/lib/haproxy');

const RUNS = Number(process.env.MULTIHOST_RUNS || 5);
const INTER_MS = Number(process.env.MULTIHOST_INTER_MS || 1000);
const LOADGEN = path.join(h.BUILD, 'bench', 'mm-loadgen');

function hostConfig(name, models, preload) {
  let y = 'startPort: 9100\ntrustedProxies: [10.77.0.1]\n' +
    'rateLimit: {perIP: {rate: 0}, perKey: {rate: 0}}\nmodels:\n';
  for (const m of models) {
    y += `  ${m}:\n    cmd: ${h.FAKE} --port \${PORT} --model ${m} --reply ${name}\n    concurrencyLimit: 1024\n`;
  }
  y += `groups:\n  all:\n    swap: false\n    exclusive: false\n    members: [${models.join(', ')}]\n`;
  y += `hooks:\n  on_startup:\n    preload: [${preload.join(', ')}]\n`;
  return y;
}

const PLAN = [
  { models: ['alpha', 'beta'], preload: ['beta'] },
  { models: ['alpha', 'gamma'], preload: ['alpha', 'gamma'] },
  { models: ['beta', 'gamma'], preload: ['beta', 'gamma'] },
];

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

async function startHost(lab, i) {
  const x = lab.hosts[i];
  const d = await h.startDaemon(null, {
    netns: x.ns, listen: `${x.addr}:8080`, config: hostConfig(`h${i + 1}`, PLAN[i].models, PLAN[i].preload),
  });
  for (const m of PLAN[i].preload) await d.waitLog(new RegExp(`sched model=${m} state=ready`), 10000);
  return d;
}

function say(msg) {
  process.stderr.write(`bench: ${msg}\n`);
}

// Async: the hosts' logs come through pipes this process must keep reading.
async function loadgen(lab, url, n, c) {
  say(`loadgen ${url} n=${n} c=${c}`);
  const { stdout: out } = await promisify(execFile)('ip', ['netns', 'exec', lab.lb, LOADGEN, 'lat', '-u', url,
    '-M', 'alpha', '-n', String(n), '-w', String(Math.min(500, n / 10)), '-c', String(c)]);
  return JSON.parse(out.trim().split('\n').pop());
}

async function main() {
  const why = check();
  if (why) throw new Error(`needs root and ip netns: ${why}`);
  if (!fs.existsSync(LOADGEN)) throw new Error(`${LOADGEN} missing: make ${path.relative(process.cwd(), LOADGEN)}`);
  const haproxy = hp.haproxyPath();
  if (!haproxy) throw new Error('haproxy is not installed');
  const lab = new Lab(3);
  const hosts = [];
  const cleanup = async () => {
    for (const d of hosts) if (d && d.exit === null) d.proc.kill('SIGKILL');
    await lab.down();
  };
  // A signal or a broken pipe ends the process; lab's exit hook removes the rest.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130));
  process.stderr.on('error', () => {});
  process.stdout.on('error', () => process.exit(1));
  try {
    lab.up();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-bench-mh-'));
    for (let i = 0; i < 3; i++) hosts.push(await startHost(lab, i));
    const gen = hp.generate(dir, {
      servers: lab.hosts.map((x, i) => ({ name: `h${i + 1}`, addr: `${x.addr}:8080` })),
      configs: hosts.map((d) => d.configPath), bind: '10.77.0.1:8080', interMs: INTER_MS,
    });
    lab.spawn(lab.lb, haproxy, ['-db', '-f', gen.file]);
    // A plain pass-through HAProxy to the same host, to tell the hop from the routing.
    const plain = path.join(dir, 'plain.cfg');
    fs.writeFileSync(plain, 'defaults\n    mode http\n    timeout connect 2s\n    timeout client 10m\n' +
      `    timeout server 10m\nfrontend f\n    bind 10.77.0.1:8081\n    default_backend b\nbackend b\n` +
      `    server h2 ${lab.hosts[1].addr}:8080\n`);
    lab.spawn(lab.lb, haproxy, ['-db', '-f', plain]);
    const gammaH3 = `${gen.backendOf.gamma}/h3`;
    const alphaH2 = `${gen.backendOf.alpha}/h2`;
    const alphaH1 = `${gen.backendOf.alpha}/h1`;
    await h.waitFor(async () => {
      const s = await hp.states(gen.sock);
      return s[alphaH2] === 'UP' && s[alphaH1] === 'DOWN' && s[gammaH3] === 'UP';
    }, { timeout: 5 * INTER_MS + 5000, what: 'HAProxy ready' });

    say('HAProxy ready');
    // 1. Added latency.
    const lat = {};
    for (const c of [1, 16]) {
      const n = c === 1 ? 3000 : 20000;
      for (let round = 0; round < 5; round++) {
        for (const [name, url] of [['direct', `http://${lab.hosts[1].addr}:8080/v1/chat/completions`],
          ['haproxy', 'http://10.77.0.1:8080/v1/chat/completions'],
          ['plain', 'http://10.77.0.1:8081/v1/chat/completions']]) {
          const r = await loadgen(lab, url, n, c);
          const key = `${name}-c${c}`;
          (lat[key] = lat[key] || []).push(r);
        }
      }
    }

    // 2 and 3. Failover.
    say('failover rounds');
    const cli = await lab.agent();
    const ask = () => cli.request({ url: 'http://10.77.0.1:8080/v1/chat/completions', body: { model: 'gamma', messages: [] } });
    const loaded = [];
    const idle = [];
    for (let run = 0; run < RUNS; run++) {
      for (const underLoad of [true, false]) {
        const results = [];
        let stop = false;
        const workers = underLoad ? [...Array(8)].map(async () => {
          while (!stop) {
            const start = Date.now();
            const r = await ask();
            results.push({ start, ok: r.status === 200 });
          }
        }) : [];
        await h.sleep(underLoad ? 1000 : 200);
        const killedAt = Date.now();
        hosts[2].proc.kill('SIGKILL');
        await hosts[2].exited;
        const down = await h.waitFor(async () => (await hp.states(gen.sock))[gammaH3].startsWith('DOWN') && Date.now(),
          { timeout: 10 * INTER_MS + 5000, interval: 5, what: 'h3 out' });
        if (underLoad) await h.sleep(1000);
        stop = true;
        await Promise.all(workers);
        const row = {
          failoverMs: down - killedAt,
          requests: results.length,
          lostBefore: results.filter((r) => !r.ok && r.start <= killedAt).length,
          lostAfter: results.filter((r) => !r.ok && r.start > killedAt).length,
        };
        (underLoad ? loaded : idle).push(row);
        hosts[2] = await startHost(lab, 2);
        await h.waitFor(async () => (await hp.states(gen.sock))[gammaH3] === 'UP',
          { timeout: 5 * INTER_MS + 5000, what: 'h3 back' });
      }
    }

    // Report.
    const q = (key, k) => median(lat[key].map((r) => r.lat_us[k]));
    const errs = (key) => lat[key].reduce((a, r) => a + r.errors + r.non200, 0);
    const lines = [];
    lines.push(`# Multi-host figures (${new Date().toISOString()}, HAProxy check inter ${INTER_MS} ms, fall 2, ` +
      `load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}, ${os.cpus().length} CPUs)`);
    lines.push('');
    lines.push('| path | c | p50 µs | p99 µs | added p50 µs | added p99 µs | errors |');
    lines.push('|---|---|---|---|---|---|---|');
    for (const c of [1, 16]) {
      for (const name of ['direct', 'plain', 'haproxy']) {
        const key = `${name}-c${c}`;
        const base = `direct-c${c}`;
        const label = { direct: 'modelmux alone', plain: 'plain HAProxy + modelmux', haproxy: 'generated HAProxy + modelmux' }[name];
        lines.push(`| ${label} | ${c} | ${q(key, 'p50').toFixed(0)} | ` +
          `${q(key, 'p99').toFixed(0)} | ${name === 'direct' ? '' : (q(key, 'p50') - q(base, 'p50')).toFixed(0)} | ` +
          `${name === 'direct' ? '' : (q(key, 'p99') - q(base, 'p99')).toFixed(0)} | ${errs(key)} |`);
      }
    }
    lines.push('');
    lines.push('| failover (one of two warm hosts SIGKILLed) | runs | failover ms (median, max) | requests | lost, begun before the kill | lost, begun after |');
    lines.push('|---|---|---|---|---|---|');
    for (const [name, rows] of [['under load (8 clients)', loaded], ['idle (health checks only)', idle]]) {
      lines.push(`| ${name} | ${rows.length} | ${median(rows.map((r) => r.failoverMs))}, ${Math.max(...rows.map((r) => r.failoverMs))} | ` +
        `${rows.reduce((a, r) => a + r.requests, 0)} | ${rows.reduce((a, r) => a + r.lostBefore, 0)} | ` +
        `${rows.reduce((a, r) => a + r.lostAfter, 0)} |`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true });
    fs.writeFileSync(path.join(__dirname, 'results', 'multihost.json'), JSON.stringify({ lat, loaded, idle, INTER_MS }, null, 1));
  } finally {
    await cleanup();
  }
}

main().catch((e) => { process.stderr.write(`bench: FAILED: ${e.stack || e}\n`); process.exit(1); });
