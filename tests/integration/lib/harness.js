// Integration harness: starts the real modelmux binary on a free loopback port with a config
// file, waits for readiness by polling with a deadline, stops it TERM-then-KILL, and fails if
// any process it started survives or stderr holds a sanitizer report.
'use strict';

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const BUILD = process.env.MM_BUILD || path.resolve(__dirname, '../../../build');
const MODELMUX = path.join(BUILD, 'modelmux');
const FAKE = path.join(BUILD, 'mm-fake-backend');
const VALGRIND = process.env.MM_VALGRIND === '1';
// Under ASan freed memory sits in quarantine, so RSS says little: memory bounds are checked
// on the plain build only.
const SANITIZED = process.env.MM_SANITIZE === '1' || VALGRIND;
const SLOW = VALGRIND ? 10 : 1; // deadlines stretch under valgrind

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls fn() until it returns a truthy value or the deadline passes.
async function waitFor(fn, { timeout = 5000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout * SLOW;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e.fatal) throw e; // no point waiting on
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(interval);
  }
}

function canBind(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// The kernel's ephemeral range: outgoing connections (clients, health probes) and port-0
// listeners take ports from it at any time, so fixed backend ports must come from below it.
function ephemeralLow() {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
    if (low > 12000) return low;
  } catch { /* not Linux */ }
  return 32768;
}

// A base port with `n` free consecutive ports after it, for the config's startPort.
async function freePorts(n) {
  const low = 10000;
  const span = ephemeralLow() - low - n;
  for (let tries = 0; tries < 200; tries++) {
    const base = low + Math.floor(Math.random() * span);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = await canBind(base + i);
    if (ok) return base;
  }
  throw new Error('no free port range');
}

// PIDs of live processes whose environment carries our tag (the daemon and its children).
function taggedPids(tag) {
  const pids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = fs.readFileSync(`/proc/${d}/environ`);
      if (env.includes(`MM_TEST_TAG=${tag}`)) {
        const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        if (!/\) Z /.test(stat)) pids.push(Number(d));
      }
    } catch {
      /* gone or not ours */
    }
  }
  return pids;
}

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mm-it-'));
}

class Daemon {
  constructor(opts) {
    this.opts = opts;
    this.dir = opts.dir || tmpdir();
    this.tag = crypto.randomBytes(8).toString('hex');
    this.stderr = '';
    this.exit = null;
  }

  async start() {
    const cfgPath = path.join(this.dir, 'config.yaml');
    fs.writeFileSync(cfgPath, this.opts.config);
    this.configPath = cfgPath;
    // opts.argv(cfgPath), when given, is the whole command line (llama-swap's flag spellings).
    const args = this.opts.argv ? this.opts.argv(cfgPath)
      : ['-c', cfgPath, '-l', this.opts.listen || '127.0.0.1:0', ...(this.opts.args || [])];
    let cmd = MODELMUX;
    if (VALGRIND) {
      args.unshift('--quiet', '--leak-check=full', '--errors-for-leak-kinds=definite',
        '--error-exitcode=99', '--child-silent-after-fork=yes', MODELMUX);
      cmd = 'valgrind';
    }
    if (this.opts.netns) { // inside a network namespace (lib/netns.js); ip execs in place
      args.unshift('netns', 'exec', this.opts.netns, cmd);
      cmd = 'ip';
    }
    this.proc = spawn(cmd, args, {
      env: { ...process.env, ...(this.opts.env || {}), MM_TEST_TAG: this.tag },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dir,
    });
    this.proc.stdout.on('data', (b) => { this.stderr += b.toString(); });
    this.proc.stderr.on('data', (b) => { this.stderr += b.toString(); });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    const m = await waitFor(() => {
      if (this.exit) {
        const e = new Error(`modelmux exited at start: ${JSON.stringify(this.exit)}\n${this.stderr}`);
        e.fatal = true;
        throw e;
      }
      // The ready line, as text or (logFormat: json) as JSON.
      return /msg=ready .*listen=(\S+)/.exec(this.stderr) ||
        /"msg":"ready".*"listen":"([^"]+)"/.exec(this.stderr);
    }, { timeout: 10000, what: 'modelmux ready line' });
    this.addr = m[1];
    this.url = `http://${this.addr}`;
    return this;
  }

  // Waits until the log matches `re` (a RegExp) and returns the match.
  waitLog(re, timeout = 5000) {
    return waitFor(() => re.exec(this.stderr), { timeout, what: `log ${re}` });
  }

  // Waits until `re` has matched at least n lines and returns the count. A request's log line
  // is written as its answer goes out: the client can see the answer before we read the line.
  async waitLogCount(re, n, timeout = 5000) {
    await waitFor(() => this.logCount(re) >= n, { timeout, what: `${n} log lines ${re}` })
      .catch((e) => { throw new Error(`${e.message}: ${this.logCount(re)} seen`); });
    return this.logCount(re);
  }

  logCount(re) {
    const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
    return (this.stderr.match(g) || []).length;
  }

  signal(sig) {
    if (this.exit === null) this.proc.kill(sig);
  }

  // TERM, wait, KILL; then asserts nothing we started survives and no sanitizer spoke.
  async stop({ expectCode = 0 } = {}) {
    if (this.exit === null) {
      this.proc.kill('SIGTERM');
      let timer;
      const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), 20000 * SLOW); });
      const outcome = await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.proc.kill('SIGKILL');
        await this.exited;
        throw new Error(`modelmux did not exit after SIGTERM\n${this.tail()}`);
      }
    }
    await this.checkClean();
    if (expectCode !== null) {
      assert.equal(this.exit.code, expectCode, `modelmux exit ${JSON.stringify(this.exit)}\n${this.tail()}`);
    }
  }

  async checkClean() {
    let left = [];
    try {
      left = await waitFor(() => {
        const p = taggedPids(this.tag);
        return p.length === 0 ? [] : null;
      }, { timeout: 3000, what: 'children to go' });
    } catch {
      left = taggedPids(this.tag);
      for (const pid of left) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    assert.deepEqual(left, [], `processes left behind: ${left}`);
    assert.doesNotMatch(this.stderr, /ERROR: (Address|Leak)Sanitizer|runtime error:|==\d+== (Invalid|Conditional|Use of)|definitely lost: [1-9]/,
      `sanitizer or valgrind report:\n${this.tail(80)}`);
  }

  tail(n = 40) {
    return this.stderr.split('\n').slice(-n).join('\n');
  }
}

// Starts a daemon; `t.after` stops it even when the test fails.
async function startDaemon(t, opts) {
  const d = new Daemon(opts);
  if (t) {
    t.after(async () => {
      if (d.exit === null) {
        d.proc.kill('SIGKILL');
        await d.exited;
      }
      for (const pid of taggedPids(d.tag)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    });
  }
  return d.start();
}

// A small JSON-over-HTTP client built on fetch.
async function post(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

async function get(url, headers = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// A request on a fresh connection with the headers exactly as given (case kept): for tests
// that need what fetch hides or normalises. Also works over https with `ca`.
function rawRequest(url, { method = 'GET', headers = {}, body, localAddress, ca, agent = false } = {}) {
  const mod = url.startsWith('https:') ? require('node:https') : require('node:http');
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, agent, localAddress, ca }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, raw: res.rawHeaders, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// POSTs JSON and reads the answer to its end, whatever the end is: resolves (never rejects)
// with { status, text, how: 'end' | 'error' | 'close' | 'error <code>', at }.
function streamRaw(url, body) {
  const http = require('node:http');
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    let text = '';
    let status = 0;
    const done = (how) => resolve({ status, text, how, at: Date.now() });
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('end', () => done('end'));
      res.on('error', () => done('error'));
      res.on('close', () => done('close'));
    });
    req.on('error', (e) => done(`error ${e.code}`));
    req.end(data);
  });
}

// Runs curl and returns { code, stdout, stderr }.
function curl(args, { timeout = 30000 } = {}) {
  return new Promise((resolve) => {
    const p = spawn('curl', ['-sS', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout * SLOW);
    p.stdout.on('data', (b) => { out += b.toString(); });
    p.stderr.on('data', (b) => { err += b.toString(); });
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: out, stderr: err });
    });
  });
}

// Asserts an OpenAI-shaped error body.
function assertError(r, status, messageRe) {
  assert.equal(r.status, status, `status: ${r.status} body: ${r.text}`);
  assert.ok(r.json && r.json.error, `no error envelope: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string');
  assert.equal(typeof r.json.error.type, 'string');
  assert.ok(r.json.error.code !== undefined, 'error.code missing');
  if (messageRe) assert.match(r.json.error.message, messageRe);
}

// A live process's resident set, in kB.
function rssKb(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

module.exports = {
  BUILD, MODELMUX, FAKE, SLOW, VALGRIND, SANITIZED, sleep, waitFor, freePorts, startDaemon, post, get,
  rawRequest, streamRaw,
  curl, assertError, tmpdir, isAlive, rssKb, execFileSync,
};
