// HAProxy for the multi-host tests: generates its config with `modelmux --haproxy-config`,
// runs it in a lab namespace (lib/netns.js), and reads its servers' states from the stats
// socket.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('./harness');

function haproxyPath() {
  for (const p of ['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy']) {
    if (fs.existsSync(p)) return p;
  }
  return null;
}

// Writes the config for `servers` ([{name, addr}]) and the hosts' config files; returns its
// path and which backend serves which model name.
// Without configs, the generator asks the running hosts (from inside namespace `netns`).
function generate(dir, { servers, configs, bind, interMs, netns, name = 'haproxy.cfg' }) {
  const file = path.join(dir, name);
  const args = ['--haproxy-config', '--bind', bind, '--check-interval', String(interMs), '-o', file];
  for (const s of servers) args.push('--server', `${s.name}=${s.addr}`);
  for (const c of configs || []) args.push('-c', c);
  if (netns) execFileSync('ip', ['netns', 'exec', netns, path.join(h.BUILD, 'modelmux'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  else execFileSync(path.join(h.BUILD, 'modelmux'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const sock = path.join(dir, 'haproxy.sock');
  // The stats socket is the test's own addition: the generated config has none.
  const text = fs.readFileSync(file, 'utf8').replace(/^global\n/m, `global\n    stats socket ${sock} mode 600 level admin\n`);
  fs.writeFileSync(file, text);
  const backendOf = {};
  for (const m of text.matchAll(/^ {4}acl m(\d+) var\(txn\.model\) -m str (.*)$/gm)) {
    for (const name of m[2].split(' ')) backendOf[name] = `mm_m${m[1]}`;
  }
  return { file, sock, backendOf };
}

// "backend/server" → status (UP, DOWN, MAINT, "no check"…), from `show stat`.
function states(sock) {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = net.connect(sock, () => c.end('show stat\n'));
    c.on('data', (b) => { out += b.toString(); });
    c.on('error', reject);
    c.on('end', () => {
      const lines = out.split('\n').filter(Boolean);
      const head = lines.shift().replace(/^# /, '').split(',');
      const px = head.indexOf('pxname');
      const sv = head.indexOf('svname');
      const st = head.indexOf('status');
      const res = {};
      for (const l of lines) {
        const f = l.split(',');
        res[`${f[px]}/${f[sv]}`] = f[st];
      }
      resolve(res);
    });
  });
}

module.exports = { haproxyPath, generate, states };
