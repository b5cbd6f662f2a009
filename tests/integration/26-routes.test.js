// One route table: an unknown path or a wrong method is answered from the head alone, before
// any body is read; keys still come first.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const h = require('./lib/harness');

// Sends a head that announces a huge body, sends none of it, and reads the answer.
function headOnly(d, method, path, extra = []) {
  const [host, port] = [d.addr.replace(/:\d+$/, ''), Number(d.addr.split(':').pop())];
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let got = '';
    s.on('data', (b) => {
      got += b.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      const len = /content-length: *(\d+)/i.exec(got);
      if (end >= 0 && len && got.length >= end + 4 + Number(len[1])) {
        s.destroy();
        resolve({ status: Number(got.split(' ')[1]), head: got.slice(0, end), body: got.slice(end + 4) });
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed without a whole answer: ${JSON.stringify(got)}`)));
    s.write([`${method} ${path} HTTP/1.1`, 'Host: x', 'Content-Type: application/json',
      'Content-Length: 10737418240', ...extra, '', ''].join('\r\n'));
  });
}

test('an unknown path is 404 and a wrong method 405 before the body; no key is 401 first', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const nope = await headOnly(d, 'POST', '/v1/no/such/route');
  assert.equal(nope.status, 404);
  assert.equal(JSON.parse(nope.body).error.code, 'not_found');
  const trailing = await headOnly(d, 'POST', '/v1/chat/completions/');
  assert.equal(trailing.status, 404);
  const wrong = await headOnly(d, 'PUT', '/v1/chat/completions');
  assert.equal(wrong.status, 405);
  assert.match(wrong.head, /\r\nAllow: POST/i);
  assert.match(JSON.parse(wrong.body).error.message, /use POST \/v1\/chat\/completions/);
  await d.stop();
});

test('with keys, an unknown path without a key is 401, with an admin key 404, both before the body', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\napiKeys:\n  - key: admin-key-0123456789\n    admin: true\n` +
      `models:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  assert.equal((await headOnly(d, 'POST', '/nope')).status, 401);
  const r = await headOnly(d, 'POST', '/nope', ['Authorization: Bearer admin-key-0123456789']);
  assert.equal(r.status, 404);
  await d.stop();
});
