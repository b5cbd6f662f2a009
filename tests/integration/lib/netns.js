// A small lab of hosts on one machine: network namespaces joined by a bridge, each with its
// own private address (10.77.0.0/24, only inside the namespaces: the machine's own network
// is left alone). Namespace "lb" holds the bridge (10.77.0.1) and the load balancer; "h1".."hN"
// are hosts at 10.77.0.2…. Names carry a random tag, so parallel runs never meet; everything
// is removed by down(), which the test registers to run even when it fails.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const readline = require('node:readline');

const SUBNET = '10.77.0';

function ip(args) {
  return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

// Whether this machine can run the lab: root and a working `ip netns`.
function check() {
  if (process.getuid && process.getuid() !== 0) return 'not root';
  const probe = `mmprobe${crypto.randomBytes(3).toString('hex')}`;
  try {
    ip(['netns', 'add', probe]);
    ip(['netns', 'del', probe]);
  } catch (e) {
    return `ip netns does not work here: ${String(e.stderr || e.message).trim()}`;
  }
  return null;
}

// Skips the test, loudly, where namespaces cannot be made; in CI (which runs as root) that is
// a failure instead, so the multi-host tests can never silently stop running there.
function requireLab(t) {
  const why = check();
  if (why === null) return true;
  const msg = `multi-host test needs root and ip netns (${why})`;
  if (process.env.CI) throw new Error(`${msg}: CI must run it`);
  process.stderr.write(`\n*** SKIPPED: ${msg} ***\n\n`);
  t.skip(msg);
  return false;
}

class Lab {
  constructor(hosts) {
    this.tag = crypto.randomBytes(3).toString('hex');
    this.lb = `mm${this.tag}-lb`;
    this.hosts = [];
    for (let k = 1; k <= hosts; k++) this.hosts.push({ ns: `mm${this.tag}-h${k}`, addr: `${SUBNET}.${k + 1}` });
    this.procs = [];
    this.made = [];
  }

  up() {
    // Even if this process ends abruptly (an uncaught error, a signal node handles by exiting),
    // nothing stays behind.
    this.onExit = () => this.downSync();
    process.once('exit', this.onExit);
    ip(['netns', 'add', this.lb]);
    this.made.push(this.lb);
    ip(['-n', this.lb, 'link', 'set', 'lo', 'up']);
    ip(['-n', this.lb, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', this.lb, 'addr', 'add', `${SUBNET}.1/24`, 'dev', 'br0']);
    ip(['-n', this.lb, 'link', 'set', 'br0', 'up']);
    this.hosts.forEach((h, i) => {
      const veth = `v${this.tag}h${i + 1}`;
      ip(['netns', 'add', h.ns]);
      this.made.push(h.ns);
      ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      // Both ends are born inside the namespaces: nothing appears in the machine's own.
      ip(['-n', this.lb, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
      ip(['-n', this.lb, 'link', 'set', veth, 'master', 'br0', 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0']);
      ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    });
    return this;
  }

  // Starts cmd inside namespace ns; the lab kills it in down() if it is still there.
  spawn(ns, cmd, args, opts = {}) {
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    p.out = '';
    p.stdout.on('data', (b) => { p.out += b.toString(); });
    p.stderr.on('data', (b) => { p.out += b.toString(); });
    p.exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
    this.procs.push(p);
    return p;
  }

  // An HTTP client living in namespace ns (default: lb): agent.request({url, method, headers,
  // body}) resolves with {status, headers, text, ms, firstByteMs, chunks} or {error, ms}.
  async agent(ns = this.lb) {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, path.join(__dirname, 'netns-agent.js')],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    this.procs.push(p);
    const waiting = new Map();
    let seq = 0;
    let ready;
    const isReady = new Promise((resolve) => { ready = resolve; });
    readline.createInterface({ input: p.stdout }).on('line', (line) => {
      const o = JSON.parse(line);
      if (o.ready) return ready();
      const w = waiting.get(o.id);
      waiting.delete(o.id);
      if (w) w(o);
    });
    await isReady;
    return {
      request(q) {
        const id = ++seq;
        return new Promise((resolve) => {
          waiting.set(id, resolve);
          p.stdin.write(`${JSON.stringify({ ...q, id })}\n`);
        });
      },
    };
  }

  // Removes every process and namespace the lab made (namespaces take their links along).
  async down() {
    for (const p of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        try { p.kill('SIGKILL'); } catch { /* gone */ }
      }
    }
    await Promise.all(this.procs.map((p) => (p.exitCode === null && p.signalCode === null
      ? new Promise((resolve) => { p.once('exit', resolve); setTimeout(resolve, 2000); }) : null)));
    this.downSync();
    if (this.onExit) process.removeListener('exit', this.onExit);
  }

  // The same, synchronously (for process 'exit'): every process inside the lab's namespaces
  // is killed, whoever started it.
  downSync() {
    for (const ns of this.made) {
      let pids = [];
      try { pids = ip(['netns', 'pids', ns]).split('\n').filter(Boolean).map(Number); } catch { /* gone */ }
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    for (const p of this.procs) {
      try { p.kill('SIGKILL'); } catch { /* gone */ }
    }
    for (const ns of this.made.reverse()) {
      try { ip(['netns', 'del', ns]); } catch { /* already gone */ }
    }
    this.made = [];
  }

  // Namespaces whose name carries this lab's tag that still exist (the test asserts none).
  leftovers() {
    return ip(['netns', 'list']).split('\n').filter((l) => l.includes(`mm${this.tag}-`));
  }
}

module.exports = { Lab, requireLab, check, SUBNET };
