// The web page over HTTP: its files and headers (CSP, frame, sniffing, referrer), ETags and
// gzip, the size budget, the "/" redirect for browsers only, the key it needs for data, the
// same-origin calls it makes with CORS off, and the data it reads (/api/activity, /api/health).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const zlib = require('node:zlib');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
const ADMIN = 'sk-admin-0123456789';
const USER = 'sk-user-0123456789';
const BUDGET = 100 * 1024; // the page's whole transfer, gzipped

function config(port, extra = '') {
  return `startPort: ${port}\n${extra}models:\n  a:\n    cmd: ${h.FAKE} --port \${PORT} --model a --ansi --chunks 6 --chunk-delay 20\n` +
    `    aliases: [alpha]\n    ttl: 300\n  b:\n    cmd: ${h.FAKE} --port \${PORT} --model b\n`;
}

// GET with exact headers; the body as bytes (fetch would decompress and hide the length).
function raw(url, headers = {}, method = 'GET') {
  // The path exactly as written (a URL object would resolve "..").
  const m = /^http:\/\/([^/]+):(\d+)(\/.*)$/.exec(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: m[1], port: Number(m[2]), path: m[3], method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function assertPageHeaders(r) {
  const csp = r.headers['content-security-policy'];
  assert.ok(csp, 'a CSP');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /style-src 'self'(;|$)/);
  assert.match(csp, /connect-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/, 'no inline code, no other origin');
  assert.equal(r.headers['x-frame-options'], 'DENY');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.equal(r.headers['referrer-policy'], 'no-referrer');
  assert.equal(r.headers['set-cookie'], undefined, 'no cookie');
}

test('the page: files, security headers, ETags, gzip, and under 100 KB in all', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });

  const page = await raw(`${d.url}/ui/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  assertPageHeaders(page);
  const html = page.body.toString();
  // Nothing inline: every script and style is a file of the page itself.
  assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/, 'no inline <script>');
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');
  const refs = [...html.matchAll(/(?:src|href)="([^"#]+)"/g)].map((m) => m[1]);
  assert.ok(refs.includes('app.js') && refs.includes('app.css'), `references: ${refs}`);
  for (const ref of refs) assert.doesNotMatch(ref, /^[a-z]+:|^\/\//, `${ref}: same origin only`);

  let gzTotal = 0;
  let rawTotal = 0;
  for (const path of ['/ui/', ...new Set(refs.map((r) => `/ui/${r}`))]) {
    const plain = await raw(`${d.url}${path}`);
    assert.equal(plain.status, 200, path);
    assertPageHeaders(plain);
    assert.equal(plain.headers['cache-control'], 'no-cache');
    assert.match(plain.headers.etag, /^"[0-9a-f]{16}"$/);
    assert.equal(Number(plain.headers['content-length']), plain.body.length);
    const gz = await raw(`${d.url}${path}`, { 'Accept-Encoding': 'gzip, deflate, br' });
    assert.equal(gz.status, 200);
    assert.match(gz.headers.vary, /Accept-Encoding/);
    if (gz.headers['content-encoding'] === 'gzip') {
      assert.deepEqual(zlib.gunzipSync(gz.body), plain.body, `${path}: the gzip variant is the same file`);
      assert.notEqual(gz.headers.etag, plain.headers.etag, 'each encoding its own ETag');
    }
    gzTotal += gz.body.length;
    rawTotal += plain.body.length;
    // Revalidation: 304, no body.
    const again = await raw(`${d.url}${path}`, { 'If-None-Match': plain.headers.etag });
    assert.equal(again.status, 304, path);
    assert.equal(again.body.length, 0);
  }
  t.diagnostic(`page transfer: ${gzTotal} bytes gzipped, ${rawTotal} plain`);
  assert.ok(gzTotal < BUDGET, `the page must stay under ${BUDGET} bytes gzipped: ${gzTotal}`);

  // Types of each file.
  assert.match((await raw(`${d.url}/ui/app.js`)).headers['content-type'], /^text\/javascript/);
  assert.match((await raw(`${d.url}/ui/app.css`)).headers['content-type'], /^text\/css/);
  // Unknown files, other methods.
  const none = await raw(`${d.url}/ui/nope.js`);
  assert.equal(none.status, 404);
  assertPageHeaders(none);
  assert.equal(JSON.parse(none.body).error.code, 'not_found');
  assert.equal((await raw(`${d.url}/ui/../api/health`)).status, 404);
  assert.equal((await raw(`${d.url}/ui/`, {}, 'POST')).status, 405);
  const head = await raw(`${d.url}/ui/app.js`, {}, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  await d.stop();
});

test('/ sends a browser to /ui/; API clients keep the old answer', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const b = await raw(`${d.url}/`, { Accept: BROWSER_ACCEPT });
  assert.equal(b.status, 302);
  assert.equal(b.headers.location, '/ui/');
  assertPageHeaders(b);
  assert.equal((await raw(`${d.url}/ui`, { Accept: BROWSER_ACCEPT })).headers.location, '/ui/');
  for (const accept of [undefined, '*/*', 'application/json', 'application/json, text/plain, */*']) {
    const r = await raw(`${d.url}/`, accept ? { Accept: accept } : {});
    assert.equal(r.status, 404, `Accept: ${accept}`);
    assert.equal(JSON.parse(r.body).error.code, 'not_found');
  }
  assert.equal((await raw(`${d.url}/`, { Accept: BROWSER_ACCEPT }, 'POST')).status, 404);
  await d.stop();
});

test('with keys: the files are open, every data call needs the admin key', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n  - "${USER}"\n  - {key: "${ADMIN}", admin: true}\n`),
  });
  assert.equal((await raw(`${d.url}/ui/`)).status, 200);
  assert.equal((await raw(`${d.url}/ui/app.js`)).status, 200);
  assert.equal((await raw(`${d.url}/`, { Accept: BROWSER_ACCEPT })).status, 302);
  assert.equal((await raw(`${d.url}/`)).status, 401, 'an API client still meets the key check');
  for (const path of ['/api/health', '/api/activity', '/api/events', '/logs/stream', '/running']) {
    const none = await raw(`${d.url}${path}`);
    assert.equal(none.status, 401, path);
    const user = await raw(`${d.url}${path}`, { Authorization: `Bearer ${USER}` });
    assert.equal(user.status, 403, path);
    assert.equal(JSON.parse(user.body).error.code, 'admin_key_required');
  }
  const ok = await h.get(`${d.url}/api/activity`, { Authorization: `Bearer ${ADMIN}` });
  assert.equal(ok.status, 200);
  // The key never comes back in anything the page reads.
  const health = await h.get(`${d.url}/api/health`, { Authorization: `Bearer ${ADMIN}` });
  assert.equal(health.status, 200);
  assert.ok(!health.text.includes(ADMIN) && !health.text.includes(USER));
  // A same-origin POST from the page (Chrome sends Origin) passes with CORS off, with a name
  // for a Host too since keys are required; a cross-origin one does not.
  const load = await h.post(`${d.url}/api/models/load/b`, '', {
    Authorization: `Bearer ${ADMIN}`, Origin: `http://${d.addr}` });
  assert.equal(load.status, 200, load.text);
  const named = await raw(`${d.url}/api/health`, { Authorization: `Bearer ${ADMIN}`,
    Host: `modelmux.example:${d.addr.split(':')[1]}`, Origin: `http://modelmux.example:${d.addr.split(':')[1]}` });
  assert.equal(named.status, 200);
  const cross = await h.post(`${d.url}/api/models/unload/b`, '', {
    Authorization: `Bearer ${ADMIN}`, Origin: 'http://evil.example' });
  assert.equal(cross.status, 403);
  assert.equal(cross.json.error.code, 'origin_not_allowed');
  await d.stop();
});

test('same origin without keys: an IP or localhost Host only (no DNS rebinding)', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  const p = d.addr.split(':')[1];
  const mine = await h.post(`${d.url}/api/models/unload`, '', { Origin: `http://${d.addr}` });
  assert.equal(mine.status, 200, mine.text);
  const local = await raw(`${d.url}/api/health`, { Host: `localhost:${p}`, Origin: `http://localhost:${p}` });
  assert.equal(local.status, 200);
  const rebound = await raw(`${d.url}/api/health`, { Host: `evil.example:${p}`, Origin: `http://evil.example:${p}` });
  assert.equal(rebound.status, 403);
  await d.stop();
});

test('/api/activity: the last requests with times and tokens; bounded by metricsMaxInMemory', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port, 'metricsMaxInMemory: 3\n') });
  const empty = await h.get(`${d.url}/api/activity`);
  assert.equal(empty.status, 200);
  assert.deepEqual(empty.json.data, []);
  assert.equal(empty.json.capacity, 3);
  const s = await h.streamRaw(`${d.url}${CHAT}`, { model: 'alpha', stream: true, messages: [] });
  assert.equal(s.how, 'end');
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] })).status, 200);
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'nope', messages: [] })).status, 404);
  await h.get(`${d.url}/health`);
  const act = await h.waitFor(async () => {
    const r = await h.get(`${d.url}/api/activity`);
    return r.json.data.length === 2 && r;
  }, { what: 'two entries (model requests only)' });
  const [first, second] = act.json.data;
  assert.equal(first.model, 'a', 'the model, not the alias');
  assert.equal(first.route, 'chat');
  assert.equal(first.status, 200);
  assert.equal(first.stream, true);
  assert.ok(first.queued_ms > 0, 'a had to start');
  assert.ok(first.ttfb_ms >= first.queued_ms && first.total_ms >= first.ttfb_ms, JSON.stringify(first));
  assert.ok(first.completion_tokens > 0 && first.tokens_per_s > 0, JSON.stringify(first));
  assert.ok(Math.abs(first.time * 1000 - Date.now()) < 60000);
  assert.equal(second.model, 'b');
  assert.equal(second.stream, false);
  assert.ok(second.id > first.id);
  // Incremental reads, bounds, bad parameters.
  const after = await h.get(`${d.url}/api/activity?after=${first.id}`);
  assert.deepEqual(after.json.data.map((e) => e.id), [second.id]);
  assert.equal((await h.get(`${d.url}/api/activity?limit=1`)).json.data[0].id, second.id);
  for (const q of ['after=x', 'limit=0', 'limit=1001', 'after=-1']) {
    h.assertError(await h.get(`${d.url}/api/activity?${q}`), 400, /after|limit/);
  }
  for (let i = 0; i < 4; i++) await h.post(`${d.url}${CHAT}`, { model: 'b', messages: [] });
  const full = await h.waitFor(async () => {
    const r = await h.get(`${d.url}/api/activity`);
    return r.json.last_id === second.id + 4 && r;
  }, { what: 'the ring to turn' });
  assert.equal(full.json.data.length, 3, 'metricsMaxInMemory bounds the ring');
  assert.equal(full.json.data[2].id, second.id + 4);
  await d.stop();
});

test('/api/health carries what the page shows of each model', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, { config: config(port) });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'a', messages: [] })).status, 200);
  const health = await h.waitFor(async () => {
    const r = await h.get(`${d.url}/api/health`);
    const a = r.json.models.find((m) => m.id === 'a');
    return a.output.some((l) => l.includes('coloured')) && r;
  }, { what: "a's coloured output line" });
  const a = health.json.models.find((m) => m.id === 'a');
  const b = health.json.models.find((m) => m.id === 'b');
  assert.equal(a.state, 'ready');
  assert.deepEqual(a.aliases, ['alpha']);
  assert.equal(a.group, '(default)');
  assert.equal(a.ttl, 300);
  assert.ok(a.ttl_left_s > 290 && a.ttl_left_s <= 300, `ttl_left_s ${a.ttl_left_s}`);
  assert.ok(a.state_ms >= 0);
  assert.equal(a.held_left_s, 0);
  assert.ok(a.output.length > 0 && a.output.length <= 8);
  assert.ok(a.output.every((l) => / backend model=a /.test(l)), 'only its own backend lines');
  assert.ok(a.output.some((l) => l.includes('\\x1b[32m')), 'colours kept, escaped');
  assert.equal(b.state, 'stopped');
  assert.equal(b.ttl_left_s, null);
  assert.deepEqual(b.output, []);
  // What was there before is still there.
  for (const k of ['id', 'state', 'inflight', 'queued', 'starts', 'held_back']) assert.ok(k in a, k);
  await d.stop();
});

test('/api/health: a model held back after crashes tells how long, with its last output', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\ncrashBackoff:\n  maxCrashes: 1\n  holdSeconds: 30\nmodels:\n` +
      `  m:\n    cmd: ${h.FAKE} --port \${PORT} --model m --exit-after 100 --ansi\n`,
  });
  assert.equal((await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] })).status, 200);
  await d.waitLog(/sched model=m msg="crash loop: holding back"/);
  const m = (await h.get(`${d.url}/api/health`)).json.models[0];
  assert.equal(m.held_back, true);
  assert.ok(m.held_left_s > 25 && m.held_left_s <= 30, `held_left_s ${m.held_left_s}`);
  assert.match(m.last_error, /exited/);
  assert.ok(m.output.some((l) => /fake: ready/.test(l)), JSON.stringify(m.output));
  assert.equal(m.state, 'stopped');
  await d.stop();
});
