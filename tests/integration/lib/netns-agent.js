// Runs inside a network namespace (ip netns exec NS node netns-agent.js): reads one JSON
// request per line on stdin, makes it over HTTP on a fresh connection, and writes one JSON
// line per answer on stdout: {id, status, headers, text, ms, firstByteMs, chunks} or
// {id, error, ms}. The test (outside the namespace) talks to hosts through it.
'use strict';
const http = require('node:http');
const readline = require('node:readline');

function send(o) {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

function run(q) {
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const body = q.body === undefined ? undefined
    : typeof q.body === 'string' ? q.body : JSON.stringify(q.body);
  const headers = { ...(q.headers || {}) };
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const req = http.request(q.url, { method: q.method || (body ? 'POST' : 'GET'), headers, agent: false,
    timeout: q.timeoutMs || 30000 }, (res) => {
    let text = '';
    let firstByteMs = null;
    let chunks = 0;
    res.setEncoding('utf8');
    res.on('data', (s) => {
      if (firstByteMs === null) firstByteMs = ms();
      chunks++;
      text += s;
    });
    res.on('end', () => send({ id: q.id, status: res.statusCode, headers: res.headers, text, ms: ms(),
      firstByteMs, chunks }));
    res.on('error', (e) => send({ id: q.id, error: String(e), ms: ms(), partial: text }));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => send({ id: q.id, error: String(e.code || e), ms: ms() }));
  if (body !== undefined) req.end(body);
  else req.end();
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) run(JSON.parse(line));
});
send({ ready: true });
