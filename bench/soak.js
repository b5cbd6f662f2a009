#!/usr/bin/env node
// modelmux soak (`make soak`; bench/README.md, "Soak"): issue #9 point 3, load without loss.
//
// Starts the real daemon (build/modelmux) on loopback with three fake-backend models, drives
// SOAK_REQUESTS (default 100 000) requests at SOAK_CONCURRENCY (default 32), and checks that
// every request got a complete answer or a clear error, and that the daemon neither grew (fds,
// RssAnon) nor left zombies or processes behind.
//
// Why Node and not bench/loadgen.c: each request here needs its own logic — abort after the
// k-th SSE event, abort a request while its model is being swapped in, send half a head on a raw
// socket — and its own verdict on status, headers and body. That is a few lines per case with
// node:http and node:net, while the daemon (one core's worth at most) stays the bottleneck: the
// client uses well under a core at this rate. It reuses the integration harness's helpers
// (tests/integration/lib/harness.js) for ports, polling and the tag scan of leftover processes.
//
// Models (fake backend, all answering at once):
//   a  non-streaming chat and short streams (5 events); the common model
//   b  a's swap partner (group "pair", swap: true): a request for b evicts a, the next one
//      for a evicts b — a swap each way every SOAK_SWAP_EVERY requests (default 1000)
//   s  SSE model, 16 events 2 ms apart, in a persistent group of its own (never evicted)
//
// The mix (seeded PRNG, SOAK_SEED): per SOAK_SWAP_EVERY requests one "episode" — a request for
// b (forces the swap a→b; the next a request swaps back), a b request aborted 20 ms after it was
// sent (b is then waiting for a to drain and stop, or loading), an a request sent 10 ms into
// the swap and aborted 20 ms later (a is wanted for eviction, so it sits queued). The rest:
// ~55 % non-streaming chat on a, 10 % streams on a, 25 % streams on s read to [DONE], 3 %
// streams on s aborted after 1–15 events, 2 % requests on a aborted 0–2 ms after being sent,
// and raw sockets that leave after half a head, after a head and part of the body, or right
// after a whole request (1 % each), 2 % non-streaming chat on s.
//
// Every outcome is classified:
//   ok       200 with a valid body: JSON with choices[0].message.content, or an event stream
//            whose events are all JSON with choices, as many content events as the model sends,
//            ended by data: [DONE]
//   error    a 4xx/5xx with an OpenAI error body {"error":{message,type,code}} (counted by
//            status and code); a stream ended by a data: {"error":…} event also counts here
//   aborted  we left on purpose (counted by phase)
//   LOSS     anything else: a reset or close we did not cause, a truncated or invalid body, a
//            status without an error body, no end within SOAK_DEADLINE_MS (default 20 000)
// and the daemon is sampled (RssAnon and VmRSS from /proc/PID/status, /proc/PID/fd, children in
// state Z) after a SOAK_WARMUP-request warm-up of the same mix (default 5 000), every 2 s, and
// at the end after a settle. It fails (exit 1) on any LOSS; if fds at the end differ from the
// start by more than SOAK_FD_SLACK (default 0: exact), not counting connections to backends
// (curl keeps up to one idle connection per request once in flight: they must stay within the
// models' concurrencyLimit sum); if the daemon still holds a client connection at the end (every
// client has closed by then, so one held is a request never freed); if RssAnon grew by more
// than SOAK_RSS_BOUND_KB
// (default 2048: see bench/README.md for the measurements behind it); on a zombie that survives
// two samples in a row or any at the end; if /running shows a request in flight or queued at the
// end; if SIGTERM does not end the daemon with status 0; or if any process carrying the run's
// MM_TEST_TAG survives it. The summary is printed and written to SOAK_OUT (default
// bench/results/soak.json). SOAK_KEEP=1 keeps the temp dir with the daemon's log.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const h = require('../tests/integration/lib/harness.js');

function envInt(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: not a non-negative integer: ${v}`);
  return n;
}

const N = envInt('SOAK_REQUESTS', 100000);
const C = Math.max(1, envInt('SOAK_CONCURRENCY', 32));
const SWAP_EVERY = Math.max(10, envInt('SOAK_SWAP_EVERY', 1000));
const WARMUP = envInt('SOAK_WARMUP', 5000);
const DEADLINE_MS = envInt('SOAK_DEADLINE_MS', 20000);
const RSS_BOUND_KB = envInt('SOAK_RSS_BOUND_KB', 2048);
const FD_SLACK = envInt('SOAK_FD_SLACK', 0);
const SEED = envInt('SOAK_SEED', 9);
const KEEP = process.env.SOAK_KEEP === '1';
const OUT = path.resolve(process.env.SOAK_OUT || path.join(__dirname, 'results', 'soak.json'));
const SAMPLE_MS = 2000;
const SETTLE_MS = 1000;
const CHAT = '/v1/chat/completions';
const EVENTS = { a: 5, b: 5, s: 16 }; // content events per stream, as the backends are started
// b answers its health check only this long after its start, so that the requests aborted
// "while swapping in" or "while queued" really are waiting when they leave (a fake backend is
// otherwise healthy within ~30 ms).
const B_HEALTH_DELAY_MS = 150;
const LIMITS = { a: 12, b: 12, s: 24 }; // concurrencyLimit of each model
// Idle backend connections curl may keep: no more than requests ever in flight at once.
const UPSTREAM_MAX = LIMITS.a + LIMITS.b + LIMITS.s;

function say(msg) { process.stderr.write(`soak: ${msg}\n`); }

// mulberry32: a small seeded PRNG, so a run's mix can be replayed.
function prng(seed) {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the daemon ------------------------------------------------------------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-soak-'));
const tag = crypto.randomBytes(8).toString('hex');
const logPath = path.join(dir, 'modelmux.log');
let daemon = null; // { proc, pid, exited, exit, host, port }
let ports = {};    // model -> its backend's port (startPort hands them out in sorted id order)

function config(base) {
  const fake = h.FAKE;
  return `logLevel: info
startPort: ${base}
healthCheckTimeout: 30
rateLimit: {perIP: {rate: 0}, perKey: {rate: 0}}
groups:
  pair:
    swap: true
    exclusive: false
    members: [a, b]
  streams:
    persistent: true
    exclusive: false
    members: [s]
models:
  a:
    cmd: ${fake} --port \${PORT} --model a --chunks ${EVENTS.a} --chunk-delay 0
    concurrencyLimit: ${LIMITS.a}
  b:
    cmd: ${fake} --port \${PORT} --model b --chunks ${EVENTS.b} --chunk-delay 0 --health-delay ${B_HEALTH_DELAY_MS}
    concurrencyLimit: ${LIMITS.b}
  s:
    cmd: ${fake} --port \${PORT} --model s --chunks ${EVENTS.s} --chunk-delay 2
    concurrencyLimit: ${LIMITS.s}
`;
}

async function startDaemon() {
  const base = await h.freePorts(3);
  ports = { a: base, b: base + 1, s: base + 2 };
  const cfg = path.join(dir, 'config.yaml');
  fs.writeFileSync(cfg, config(base));
  const logFd = fs.openSync(logPath, 'w');
  const proc = spawn(h.MODELMUX, ['-c', cfg, '-l', '127.0.0.1:0'], {
    env: { ...process.env, MM_TEST_TAG: tag },
    stdio: ['ignore', logFd, logFd],
    cwd: dir,
  });
  fs.closeSync(logFd);
  const d = { proc, pid: proc.pid, exit: null };
  d.exited = new Promise((resolve) => proc.on('exit', (code, signal) => { d.exit = { code, signal }; resolve(d.exit); }));
  daemon = d;
  const m = await h.waitFor(() => {
    if (d.exit) {
      const e = new Error(`modelmux exited at start: ${JSON.stringify(d.exit)}\n${fs.readFileSync(logPath, 'utf8')}`);
      e.fatal = true;
      throw e;
    }
    return /msg=ready .*listen=(\S+)/.exec(fs.readFileSync(logPath, 'utf8'));
  }, { timeout: 10000, what: 'modelmux ready line' });
  const i = m[1].lastIndexOf(':');
  d.host = m[1].slice(0, i);
  d.port = Number(m[1].slice(i + 1));
  return d;
}

// PIDs of live processes carrying our tag (the daemon and its backends).
function taggedPids() {
  const pids = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (!fs.readFileSync(`/proc/${p}/environ`).includes(`MM_TEST_TAG=${tag}`)) continue;
      if (!/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'))) pids.push(Number(p));
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}

function killTagged() {
  for (const p of taggedPids()) {
    try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }
}

// ---- /proc samples -----------------------------------------------------------------------

function children(pid) {
  const out = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let stat;
    try { stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8'); } catch { continue; }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[1]) === pid) out.push({ pid: Number(p), state: f[0] });
  }
  return out;
}

// TCP sockets by inode, from /proc/net/tcp{,6}: { local port, remote port, state }.
const TCP_STATES = { '01': 'established', '06': 'time_wait', '08': 'close_wait', '0A': 'listen' };
function tcpTable() {
  const out = new Map();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let t;
    try { t = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of t.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10) continue;
      out.set(c[9], {
        lport: parseInt(c[1].split(':')[1], 16), rport: parseInt(c[2].split(':')[1], 16),
        state: TCP_STATES[c[3]] || c[3],
      });
    }
  }
  return out;
}

// The daemon's fds by kind, to say what grew: "upstream <model> <tcp state>" for connections to
// a backend's port (curl's cache of idle connections), "client" for connections to our
// listener, "listen", "socket" for any other socket, "pipe", "anon_inode:[…]" or a path.
function fdKinds(pid) {
  const tcp = tcpTable();
  const out = {};
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let t;
    try { t = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    let k = t.replace(/:\[\d+\]$/, '');
    const m = /^socket:\[(\d+)\]$/.exec(t);
    const e = m && tcp.get(m[1]);
    if (e) {
      const model = Object.keys(ports).find((x) => ports[x] === e.rport);
      if (e.state === 'listen') k = 'listen';
      else if (model) k = `upstream ${model} ${e.state}`;
      else if (e.lport === daemon.port) k = `client ${e.state}`;
      else k = `tcp ${e.state}`;
    }
    out[k] = (out[k] || 0) + 1;
  }
  return out;
}

// Client connections the daemon still holds at the end, with the last request we sent on each
// (by our local port): what to look for in its log.
const lastOnPort = new Map();
function heldClients(pid) {
  const tcp = tcpTable();
  const out = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let t;
    try { t = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(t);
    const e = m && tcp.get(m[1]);
    if (e && e.lport === daemon.port && e.state !== 'listen') {
      out.push({ port: e.rport, state: e.state, last: lastOnPort.get(e.rport) || null });
    }
  }
  return out;
}

// fds that are not connections to backends: these must not grow at all.
function ownFds(kinds) {
  let n = 0;
  for (const [k, v] of Object.entries(kinds)) if (!k.startsWith('upstream ')) n += v;
  return n;
}

function sample(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st) || [0, -1])[1]);
  const kids = children(pid);
  return {
    t_s: Number(((Date.now() - T0) / 1000).toFixed(1)),
    rss_anon_kb: kb('RssAnon'),
    vm_rss_kb: kb('VmRSS'),
    vm_swap_kb: kb('VmSwap'),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    children: kids.length,
    zombies: kids.filter((k) => k.state === 'Z').map((k) => k.pid),
    done: stats.done,
  };
}

// ---- management requests (their own connection each, outside the measured agent) -----------

function getText(p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: daemon.host, port: daemon.port, path: p, agent: false }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (s) => { t += s; });
      res.on('end', () => resolve({ status: res.statusCode, text: t }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error(`GET ${p}: timeout`)));
  });
}

async function starts() {
  const r = await getText('/metrics');
  const out = {};
  for (const m of r.text.matchAll(/^modelmux_model_starts_total\{model="([^"]+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function running() {
  return JSON.parse((await getText('/running')).text).running;
}

// ---- requests ------------------------------------------------------------------------------

let agent = null;
function newAgent() {
  if (agent) agent.destroy();
  agent = new http.Agent({ keepAlive: true, maxSockets: C + 8, maxFreeSockets: C + 8 });
}

const stats = {
  done: 0,
  byClass: { ok: 0, error: 0, aborted: 0, loss: 0 },
  byKind: {},      // kind -> { ok, error, aborted, loss }
  errors: {},      // "status code" -> n
  aborts: {},      // phase -> n
  phaseMissed: {}, // kind -> n: answered before the planned abort (then classified normally)
  losses: [],      // the first 50, in detail
  errorSamples: [], // the first 20 clear errors, in detail
};

function record(o) {
  stats.done++;
  stats.byClass[o.cls]++;
  const k = (stats.byKind[o.kind] ||= { ok: 0, error: 0, aborted: 0, loss: 0 });
  k[o.cls]++;
  if (o.cls === 'error') {
    stats.errors[o.detail] = (stats.errors[o.detail] || 0) + 1;
    if (stats.errorSamples.length < 20) stats.errorSamples.push(o);
  }
  if (o.cls === 'aborted') stats.aborts[o.detail] = (stats.aborts[o.detail] || 0) + 1;
  if (o.missed) stats.phaseMissed[o.kind] = (stats.phaseMissed[o.kind] || 0) + 1;
  if (o.cls === 'loss') {
    if (stats.losses.length < 50) stats.losses.push(o);
    if (stats.byClass.loss <= 10) say(`LOSS req=${o.rid} kind=${o.kind} status=${o.status} ${o.detail}`);
  }
}

function isErrorBody(j) {
  return j && typeof j === 'object' && j.error && typeof j.error.message === 'string' &&
    typeof j.error.type === 'string' && j.error.code !== undefined;
}

// The verdict on a response read to its end.
function classify(model, stream, status, ctype, text) {
  let j = null;
  if (status >= 400 && status <= 599) {
    try { j = JSON.parse(text); } catch { /* below */ }
    if (isErrorBody(j)) return { cls: 'error', detail: `${status} ${j.error.code}`, message: j.error.message.slice(0, 300) };
    return { cls: 'loss', detail: `status ${status} without an error body: ${text.slice(0, 200)}` };
  }
  if (status !== 200) return { cls: 'loss', detail: `unexpected status ${status}: ${text.slice(0, 200)}` };
  if (!stream) {
    try { j = JSON.parse(text); } catch { return { cls: 'loss', detail: `invalid JSON (${text.length} bytes): ${text.slice(-200)}` }; }
    const c = j && Array.isArray(j.choices) && j.choices[0];
    if (!c || !c.message || typeof c.message.content !== 'string') return { cls: 'loss', detail: `no choices: ${text.slice(0, 200)}` };
    return { cls: 'ok' };
  }
  if (!/^text\/event-stream/.test(ctype || '')) return { cls: 'loss', detail: `stream with Content-Type ${ctype}` };
  const events = text.split('\n\n').filter((e) => e.trim() !== '');
  let content = 0;
  let done = false;
  for (const e of events) {
    if (done) return { cls: 'loss', detail: 'event after [DONE]' };
    const data = e.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    if (data === '[DONE]') { done = true; continue; }
    let ev;
    try { ev = JSON.parse(data); } catch { return { cls: 'loss', detail: `invalid event: ${data.slice(0, 200)}` }; }
    if (isErrorBody(ev)) return { cls: 'error', detail: `stream ${ev.error.code}`, message: ev.error.message.slice(0, 300) };
    if (!Array.isArray(ev.choices)) return { cls: 'loss', detail: `event without choices: ${data.slice(0, 200)}` };
    if (ev.choices[0] && ev.choices[0].delta && typeof ev.choices[0].delta.content === 'string') content++;
  }
  if (!done) return { cls: 'loss', detail: `stream not ended by [DONE] after ${events.length} events (${text.length} bytes): ${JSON.stringify(text.slice(-120))}` };
  if (content !== EVENTS[model]) return { cls: 'loss', detail: `${content} content events, not ${EVENTS[model]}` };
  return { cls: 'ok' };
}

// One chat request through the agent. opts: abortAfterMs (from the moment the request was
// sent, only while no head came back: abortPhase names it), abortAfterEvents (mid-stream),
// notBefore (a promise to wait for first), delayMs.
async function chat(i, kind, model, stream, opts = {}) {
  if (opts.notBefore) await opts.notBefore;
  if (opts.delayMs) await h.sleep(opts.delayMs);
  return new Promise((resolve) => {
    const rid = `soak-${i}`;
    const body = JSON.stringify({ model, stream, messages: [{ role: 'user', content: `soak request ${i}` }] });
    const t0 = Date.now();
    let settled = false;
    let head = false;
    let status = 0;
    let ctype = '';
    let text = '';
    let events = 0;
    let abortTimer = null;
    const finish = (v) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(abortTimer);
      if (opts.abortPhase && v.cls !== 'aborted') v.missed = true; // answered before the planned abort
      if (req.socket && req.socket.localPort) lastOnPort.set(req.socket.localPort, `${rid} ${kind} ${v.cls} ${v.detail || ''}`);
      resolve({ i, rid, kind, model, stream, status, ms: Date.now() - t0, bytes: text.length, ...v });
    };
    const leave = (phase) => {
      finish({ cls: 'aborted', detail: phase });
      req.destroy();
    };
    const req = http.request({
      host: daemon.host, port: daemon.port, path: CHAT, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Request-ID': rid },
    });
    const deadline = setTimeout(() => {
      finish({ cls: 'loss', detail: `hang: no end within ${DEADLINE_MS} ms (head: ${head}, ${text.length} bytes)` });
      req.destroy();
    }, DEADLINE_MS);
    if (opts.abortAfterMs !== undefined) {
      req.on('finish', () => {
        abortTimer = setTimeout(() => {
          if (!head) leave(opts.abortPhase);
        }, opts.abortAfterMs);
      });
    }
    req.on('response', (r) => {
      head = true;
      status = r.statusCode;
      ctype = r.headers['content-type'];
      r.setEncoding('utf8');
      r.on('data', (s) => {
        text += s;
        if (opts.abortAfterEvents && status === 200 && !settled) {
          for (let k = s.indexOf('\n\n'); k !== -1; k = s.indexOf('\n\n', k + 2)) events++;
          if (events >= opts.abortAfterEvents) leave(`mid-stream (after 1 to ${EVENTS.s - 1} events)`);
        }
      });
      r.on('end', () => {
        const v = classify(model, stream, status, ctype, text);
        if (opts.abortAfterEvents && v.cls === 'ok') v.missed = true; // ended before the k-th event
        finish(v);
      });
      r.on('error', (e) => finish({ cls: 'loss', detail: `response ${e.code || ''} ${e.message} after ${text.length} bytes` }));
      r.on('close', () => finish({ cls: 'loss', detail: `response closed before its end after ${text.length} bytes` }));
    });
    req.on('error', (e) => finish({
      cls: 'loss', detail: `request ${e.code || ''} ${e.message}${req.reusedSocket ? ' (on a reused keep-alive connection)' : ''}`,
    }));
    req.end(body);
  });
}

// A raw connection that leaves at a chosen point: 'head' (half a head), 'body' (a head and part
// of the body), 'sent' (a whole request, gone before the answer).
function raw(i, kind, what) {
  return new Promise((resolve) => {
    const rid = `soak-${i}`;
    const body = JSON.stringify({ model: 'a', messages: [{ role: 'user', content: `soak request ${i}` }] });
    const head = `POST ${CHAT} HTTP/1.1\r\nHost: soak\r\nX-Request-ID: ${rid}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    const t0 = Date.now();
    let settled = false;
    const finish = (v) => {
      if (settled) return;
      settled = true;
      if (s.localPort) lastOnPort.set(s.localPort, `${rid} ${kind} ${v.cls} ${v.detail || ''}`);
      resolve({ i, rid, kind, model: 'a', stream: false, status: 0, ms: Date.now() - t0, bytes: 0, ...v });
    };
    const s = net.connect(daemon.port, daemon.host);
    s.on('error', (e) => finish({ cls: 'loss', detail: `raw connection: ${e.code || e.message}` }));
    s.on('connect', () => {
      if (what === 'head') s.write(head.slice(0, head.length >> 1));
      else if (what === 'body') s.write(head + body.slice(0, body.length >> 1));
      else s.write(head + body);
      setTimeout(() => {
        finish({ cls: 'aborted', detail: `raw: after ${what === 'head' ? 'half a head' : what === 'body' ? 'part of the body' : 'the whole request'}` });
        s.destroy();
      }, what === 'sent' ? 0 : 5);
    });
  });
}

// ---- the mix -------------------------------------------------------------------------------

const episodes = new Map(); // episode number -> promise resolved when its b request was sent

function runOne(i, rnd) {
  const pos = i % SWAP_EVERY;
  const ep = Math.floor(i / SWAP_EVERY);
  const mid = SWAP_EVERY >> 1;
  if (pos === mid) {
    // The trigger: a request for b, which evicts a.
    let sent;
    episodes.set(ep, new Promise((resolve) => { sent = resolve; }));
    episodes.delete(ep - 2);
    const p = chat(i, 'swap to b', 'b', (ep & 1) === 1);
    setImmediate(sent); // chat() has written the request by now (synchronously, in its executor)
    return p;
  }
  if (pos === mid + 1) {
    return chat(i, 'b aborted while a drains or b loads', 'b', false,
      { notBefore: episodes.get(ep), delayMs: 5, abortAfterMs: 20, abortPhase: 'while swapping in (queued or loading)' });
  }
  if (pos === mid + 2) {
    return chat(i, 'a aborted while queued behind the swap', 'a', false,
      { notBefore: episodes.get(ep), delayMs: 10, abortAfterMs: 20, abortPhase: 'while queued (model wanted for eviction)' });
  }
  const r = rnd();
  if (r < 0.55) return chat(i, 'chat a', 'a', false);
  if (r < 0.65) return chat(i, 'stream a', 'a', true);
  if (r < 0.90) return chat(i, 'stream s', 's', true);
  if (r < 0.93) return chat(i, 'stream s aborted mid-stream', 's', true, { abortAfterEvents: 1 + Math.floor(rnd() * (EVENTS.s - 1)) });
  if (r < 0.95) return chat(i, 'chat a aborted after sending', 'a', false, { abortAfterMs: Math.floor(rnd() * 3), abortPhase: 'just after sending (before the head)' });
  if (r < 0.96) return raw(i, 'raw: half a head', 'head');
  if (r < 0.97) return raw(i, 'raw: head and part of the body', 'body');
  if (r < 0.98) return raw(i, 'raw: whole request, gone at once', 'sent');
  return chat(i, 'chat s', 's', false);
}

async function drive(first, count) {
  const rnd = prng(SEED + first);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = first + next++;
      record(await runOne(i, rnd));
    }
  };
  await Promise.all(Array.from({ length: C }, worker));
}

// ---- the run ---------------------------------------------------------------------------------

let T0 = Date.now();

// Brings the daemon to the state every fd/RSS reading is taken in: a and s loaded, no client
// connection open (the agent's sockets closed), nothing in flight; then waits SETTLE_MS.
async function quiesce() {
  for (const [m, stream] of [['a', false], ['s', true]]) {
    const o = await chat(-1, 'quiesce', m, stream);
    if (o.cls !== 'ok') throw new Error(`quiesce: ${m}: ${o.cls} ${o.detail}`);
  }
  newAgent();
  await h.waitFor(async () => (await running()).every((x) => x.inflight === 0 && x.queued === 0),
    { timeout: 10000, what: 'nothing in flight or queued' });
  await h.sleep(SETTLE_MS);
  return { ...sample(daemon.pid), fd_kinds: fdKinds(daemon.pid), held_clients: heldClients(daemon.pid) };
}

async function main() {
  say(`${N} requests at concurrency ${C}, a swap each way every ${SWAP_EVERY}, warm-up ${WARMUP}; temp dir ${dir}`);
  await startDaemon();
  newAgent();
  T0 = Date.now();
  await drive(0, WARMUP);
  const warm = { ...stats.byClass };
  if (warm.loss > 0) say(`${warm.loss} LOSS already in the warm-up`);
  const start = await quiesce();
  const starts0 = await starts();
  say(`start (after warm-up): RssAnon ${start.rss_anon_kb} kB, VmRSS ${start.vm_rss_kb} kB, ${start.fds} fds, ${start.children} children`);

  // Reset the counters: the summary covers the measured run; the warm-up's own counts are kept.
  const warmStats = JSON.parse(JSON.stringify(stats));
  Object.assign(stats, { done: 0, byClass: { ok: 0, error: 0, aborted: 0, loss: 0 }, byKind: {}, errors: {}, aborts: {}, phaseMissed: {}, losses: [], errorSamples: [] });

  const samples = [start];
  const persistentZombies = new Set();
  let prevZ = new Set();
  const timer = setInterval(() => {
    let s;
    try { s = sample(daemon.pid); } catch { return; }
    samples.push(s);
    for (const z of s.zombies) if (prevZ.has(z)) persistentZombies.add(z);
    prevZ = new Set(s.zombies);
    say(`${s.t_s}s: ${stats.done} done, ${stats.byClass.loss} loss; RssAnon ${s.rss_anon_kb} kB, ${s.fds} fds, ${s.children} children, zombies [${s.zombies}]`);
  }, SAMPLE_MS);
  const t1 = Date.now();
  await drive(WARMUP, N);
  const secs = (Date.now() - t1) / 1000;
  clearInterval(timer);

  const end = await quiesce();
  samples.push(end);
  // Development aid: SOAK_HOLD_S keeps the daemon up a while at the end, printing the client
  // connections it still holds, for a look with ss or gdb.
  for (let k = 0; k < envInt('SOAK_HOLD_S', 0); k++) {
    if (k % 5 === 0) say(`hold ${k}s: pid ${daemon.pid}, clients held ${JSON.stringify(heldClients(daemon.pid))}`);
    await h.sleep(1000);
  }
  const starts1 = await starts();
  const run = await running();
  const swaps = {};
  for (const m of Object.keys(starts1)) swaps[m] = starts1[m] - (starts0[m] || 0);

  // Stop: SIGTERM, status 0, nothing left.
  const tStop = Date.now();
  daemon.proc.kill('SIGTERM');
  const exit = await Promise.race([daemon.exited, h.sleep(40000).then(() => null)]);
  const stopMs = Date.now() - tStop;
  let left = [];
  try {
    await h.waitFor(() => taggedPids().length === 0, { timeout: 3000, what: 'tagged processes to go' });
  } catch { left = taggedPids(); }
  killTagged();
  agent.destroy();

  const log = fs.readFileSync(logPath, 'utf8');
  const sanitizer = /ERROR: (Address|Leak)Sanitizer|runtime error:/.test(log);
  const failures = [];
  if (stats.byClass.loss > 0) failures.push(`${stats.byClass.loss} requests lost`);
  if (warm.loss > 0) failures.push(`${warm.loss} requests lost in the warm-up`);
  if (stats.done !== N) failures.push(`${stats.done} outcomes for ${N} requests`);
  // curl's cache of idle backend connections grows and shrinks with the peak number of requests
  // in flight per backend (29 to 37 here), so it is bounded, not compared: every other fd must
  // come back to its start count (within the slack).
  const fdGrowth = end.fds - start.fds;
  const ownGrowth = ownFds(end.fd_kinds) - ownFds(start.fd_kinds);
  const upstreamEnd = end.fds - ownFds(end.fd_kinds);
  if (Math.abs(ownGrowth) > FD_SLACK) failures.push(`fds other than backend connections went ${ownFds(start.fd_kinds)} → ${ownFds(end.fd_kinds)} (slack ${FD_SLACK})`);
  if (end.held_clients.length) failures.push(`client connections still held at the end: ${JSON.stringify(end.held_clients)}`);
  if (upstreamEnd > UPSTREAM_MAX) failures.push(`${upstreamEnd} backend connections kept (bound ${UPSTREAM_MAX})`);
  const rssGrowth = end.rss_anon_kb - start.rss_anon_kb;
  if (rssGrowth > RSS_BOUND_KB) failures.push(`RssAnon grew ${rssGrowth} kB (bound ${RSS_BOUND_KB} kB)`);
  if (end.zombies.length) failures.push(`zombies at the end: ${end.zombies}`);
  if (persistentZombies.size) failures.push(`zombies seen in two samples in a row: ${[...persistentZombies]}`);
  const busy = run.filter((x) => x.inflight !== 0 || x.queued !== 0);
  if (busy.length) failures.push(`/running at the end: ${JSON.stringify(busy)}`);
  if (!exit) failures.push('modelmux did not exit within 40 s of SIGTERM');
  else if (exit.code !== 0) failures.push(`modelmux exit ${JSON.stringify(exit)}`);
  if (left.length) failures.push(`processes left after the daemon: ${left}`);
  if (sanitizer) failures.push('sanitizer report in the log');

  const summary = {
    date: new Date().toISOString(),
    git: gitDescribe(),
    host: { nproc: os.cpus().length, kernel: os.release() },
    params: { requests: N, concurrency: C, swap_every: SWAP_EVERY, warmup: WARMUP, deadline_ms: DEADLINE_MS, seed: SEED, rss_bound_kb: RSS_BOUND_KB, fd_slack: FD_SLACK },
    duration_s: Number(secs.toFixed(1)),
    req_per_s: Math.round(N / secs),
    outcomes: stats.byClass,
    by_kind: stats.byKind,
    errors: stats.errors,
    aborts: stats.aborts,
    abort_phase_missed: stats.phaseMissed,
    losses: stats.losses,
    error_samples: stats.errorSamples,
    warmup_outcomes: warmStats.byClass,
    backend_starts: swaps,
    swaps: (swaps.a || 0) + (swaps.b || 0),
    daemon: {
      start: { rss_anon_kb: start.rss_anon_kb, vm_rss_kb: start.vm_rss_kb, fds: start.fds, fd_kinds: start.fd_kinds, children: start.children },
      end: { rss_anon_kb: end.rss_anon_kb, vm_rss_kb: end.vm_rss_kb, fds: end.fds, fd_kinds: end.fd_kinds, children: end.children, zombies: end.zombies, held_clients: end.held_clients },
      rss_anon_growth_kb: rssGrowth,
      fd_growth: fdGrowth,
      own_fd_growth: ownGrowth,
      upstream_conns: { start: start.fds - ownFds(start.fd_kinds), end: upstreamEnd, bound: UPSTREAM_MAX },
      max_rss_anon_kb: Math.max(...samples.map((s) => s.rss_anon_kb)),
      max_fds: Math.max(...samples.map((s) => s.fds)),
      zombies_seen: [...new Set(samples.flatMap((s) => s.zombies))].length,
      zombies_persistent: [...persistentZombies],
      running_at_end: run,
      sigterm_exit: exit,
      stop_ms: stopMs,
      processes_left: left,
    },
    samples,
    failures,
    verdict: failures.length ? 'FAIL' : 'PASS',
  };
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify(summary, null, 2) + '\n');
  printSummary(summary);
  if (failures.length || KEEP) say(`log kept in ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
  return failures.length ? 1 : 0;
}

function gitDescribe() {
  try {
    return h.execFileSync('git', ['describe', '--always', '--dirty'], { cwd: __dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { return ''; }
}

function printSummary(s) {
  const d = s.daemon;
  const lines = [
    `modelmux soak — ${s.date}, git ${s.git}, ${s.host.nproc} CPUs`,
    `requests      ${s.params.requests} at concurrency ${s.params.concurrency} (after a ${s.params.warmup}-request warm-up) in ${s.duration_s} s = ${s.req_per_s} req/s`,
    `outcomes      ok ${s.outcomes.ok}, clear error ${s.outcomes.error}, aborted by us ${s.outcomes.aborted}, LOSS ${s.outcomes.loss}`,
    `errors        ${JSON.stringify(s.errors)}`,
    `aborts        ${JSON.stringify(s.aborts)}`,
    `phase missed  ${JSON.stringify(s.abort_phase_missed)} (answered before the planned abort; classified as answers)`,
    `swaps         ${s.swaps} backend starts of a and b (${JSON.stringify(s.backend_starts)})`,
    `RssAnon       ${d.start.rss_anon_kb} → ${d.end.rss_anon_kb} kB (${d.rss_anon_growth_kb >= 0 ? '+' : ''}${d.rss_anon_growth_kb}, bound ${s.params.rss_bound_kb}; max ${d.max_rss_anon_kb})`,
    `VmRSS         ${d.start.vm_rss_kb} → ${d.end.vm_rss_kb} kB`,
    `fds           ${d.start.fds} → ${d.end.fds} (${d.fd_growth >= 0 ? '+' : ''}${d.fd_growth}; max ${d.max_fds}): backend connections ${d.upstream_conns.start} → ${d.upstream_conns.end} (bound ${d.upstream_conns.bound}), all others ${d.own_fd_growth >= 0 ? '+' : ''}${d.own_fd_growth} (slack ${s.params.fd_slack})`,
    `zombies       end ${d.end.zombies.length}, transient seen ${d.zombies_seen}, persistent ${d.zombies_persistent.length}`,
    `/running end  ${JSON.stringify(d.running_at_end.map((x) => `${x.model}:${x.state} inflight ${x.inflight} queued ${x.queued}`))}`,
    `SIGTERM       exit ${JSON.stringify(d.sigterm_exit)} after ${d.stop_ms} ms; processes left: ${d.processes_left.length}`,
    `verdict       ${s.verdict}${s.failures.length ? ': ' + s.failures.join('; ') : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

let stopping = false;
function bail(sig) {
  if (stopping) return;
  stopping = true;
  if (daemon && daemon.exit === null) daemon.proc.kill('SIGKILL');
  killTagged();
  say(`stopped by ${sig}; log kept in ${dir}`);
  process.exit(sig === 'SIGINT' ? 130 : 143);
}
process.on('SIGINT', () => bail('SIGINT'));
process.on('SIGTERM', () => bail('SIGTERM'));

main().then((code) => { process.exitCode = code; }, (e) => {
  say(`error: ${e.stack || e}`);
  if (daemon && daemon.exit === null) daemon.proc.kill('SIGKILL');
  killTagged();
  say(`log kept in ${dir}`);
  process.exitCode = 2;
});
