// llama-swap's peers across hosts: modelmux A (namespace h1) serves the models of modelmux B
// (h2, behind its own apiKeys) and of a bare OpenAI-compatible server (h3). Requests are
// forwarded with the peer's key and never the client's, filtered, streamed, listed with where
// they live, counted per peer; a peer that dies degrades /api/health and its requests get 503
// with Retry-After at once, and it is used again once it answers.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');
const { Lab, requireLab } = require('./lib/netns');

test('peers: forwarding, keys, filters, streaming, listing, metrics, a peer that dies', async (t) => {
  if (!requireLab(t)) return;
  const lab = new Lab(3);
  t.after(async () => {
    await lab.down();
    assert.deepEqual(lab.leftovers(), [], 'namespaces left behind');
  });
  lab.up();
  const [ha, hb, hc] = lab.hosts;
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'mm-peers-'));
  const reqLog = path.join(dir, 'c-requests.jsonl');

  // h3: a bare OpenAI-compatible server (the fake backend itself) that shows what it got.
  lab.spawn(hc.ns, h.FAKE, ['--host', hc.addr, '--port', '9000', '--reply', 'from-c',
    '--request-log', reqLog]);

  const bConfig = `
apiKeys: [peer-secret-b]
startPort: 9100
models:
  m1:
    cmd: ${h.FAKE} --port \${PORT} --model m1 --reply from-b --chunks 4 --chunk-delay 30
`;
  const startB = () => h.startDaemon(t, { netns: hb.ns, listen: `${hb.addr}:8080`, config: bConfig });
  let b = await startB();
  const a = await h.startDaemon(t, {
    netns: ha.ns,
    listen: `${ha.addr}:8080`,
    config: `
apiKeys: [{key: client-secret, admin: true}]
startPort: 9100
models:
  loc:
    cmd: ${h.FAKE} --port \${PORT}
peers:
  b:
    proxy: http://${hb.addr}:8080
    apiKey: peer-secret-b
    models: [m1]
    checkEndpoint: /health
    checkInterval: 1
  c:
    proxy: http://${hc.addr}:9000/
    apiKey: peer-secret-c
    models: [gpt-x]
    checkEndpoint: /health
    checkInterval: 1
    filters:
      stripParams: temperature
      setParams:
        max_tokens: 5
`,
  });
  const cli = await lab.agent();
  const A = `http://${ha.addr}:8080`;
  const auth = { authorization: 'Bearer client-secret' };
  const ask = (body, extra = {}) => cli.request({ url: `${A}/v1/chat/completions`, headers: { ...auth, ...extra }, body });
  const health = async () => {
    const x = await cli.request({ url: `${A}/api/health`, headers: auth });
    if (x.status !== 200) throw new Error(`/api/health: ${x.status} ${x.text || x.error}`);
    return JSON.parse(x.text);
  };

  await h.waitFor(async () => (await health()).peers.every((p) => p.state === 'up'),
    { timeout: 5000, what: 'both peers up' });

  // Listed with where they live; the bare name is an alias.
  const list = JSON.parse((await cli.request({ url: `${A}/v1/models`, headers: auth })).text);
  const byId = Object.fromEntries(list.data.map((m) => [m.id, m]));
  assert.deepEqual(Object.keys(byId).sort(), ['b/m1', 'c/gpt-x', 'loc']);
  assert.equal(byId['b/m1'].peer.name, 'b');
  assert.equal(byId['b/m1'].peer.proxy, `http://${hb.addr}:8080`);
  assert.deepEqual(byId['b/m1'].aliases, ['m1']);
  assert.equal(byId['b/m1'].meta.llamaswap.type, 'peer');
  assert.equal(byId['b/m1'].meta.llamaswap.peerID, 'b');
  assert.equal(byId.loc.peer, undefined);

  // Forwarded to B with B's key (B refuses anything else), by full name and by bare name.
  let r = await ask({ model: 'm1', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text || r.error);
  assert.match(JSON.parse(r.text).choices[0].message.content, /from-b/);
  r = await ask({ model: 'b/m1', messages: [] });
  assert.equal(r.status, 200, r.text || r.error);

  // Streamed as it comes.
  r = await ask({ model: 'm1', stream: true, messages: [] });
  assert.equal(r.status, 200, r.text || r.error);
  assert.match(r.headers['content-type'], /text\/event-stream/);
  assert.equal((r.text.match(/^data: \{/gm) || []).length, 5, r.text); // 4 deltas, the end
  assert.ok(r.chunks >= 3, `arrived in ${r.chunks} pieces: buffered somewhere`);
  assert.match(r.text, /data: \[DONE\]/);

  // C sees C's key, never the client's, and the filtered body under its own model id.
  const sent = { model: 'gpt-x', temperature: 0.5, messages: [{ role: 'user', content: 'x' }] };
  r = await ask(sent, { 'x-api-key': 'client-secret' });
  assert.equal(r.status, 200, r.text || r.error);
  const seen = fs.readFileSync(reqLog, 'utf8').trim().split('\n').map(JSON.parse)
    .filter((e) => e.path === '/v1/chat/completions').pop();
  assert.equal(seen.headers.authorization, 'Bearer peer-secret-c');
  assert.equal(seen.headers['x-api-key'], 'peer-secret-c');
  assert.ok(!JSON.stringify(seen.headers).includes('client-secret'), 'client key forwarded');
  const want = JSON.stringify({ model: 'gpt-x', messages: sent.messages, max_tokens: 5 });
  assert.equal(seen.model, 'gpt-x');
  assert.equal(seen.body_len, Buffer.byteLength(want));
  assert.equal(seen.body_sha256, crypto.createHash('sha256').update(want).digest('hex'));

  // Counted per peer.
  const metrics = async () => (await cli.request({ url: `${A}/metrics`, headers: auth })).text;
  let m = await metrics();
  assert.match(m, /modelmux_peer_up\{peer="b"\} 1/);
  assert.match(m, /modelmux_peer_requests_total\{peer="b",code="2xx"\} 3/);
  assert.match(m, /modelmux_peer_requests_total\{peer="c",code="2xx"\} 1/);

  // B dies: /api/health degrades within its check interval, requests get 503 + Retry-After
  // at once (no wait on a dead address), and C is unaffected.
  b.proc.kill('SIGKILL');
  await b.exited;
  const killed = Date.now();
  const hh = await h.waitFor(async () => {
    const x = await health();
    return x.status === 'degraded' && x.peers.find((p) => p.name === 'b').state === 'down' && x;
  }, { timeout: 4000, what: 'peer b down in /api/health' });
  assert.ok(Date.now() - killed < 3000, 'seen down within its interval');
  assert.ok(hh.warnings.includes('peer b does not answer'));
  r = await ask({ model: 'm1', messages: [] });
  assert.equal(r.status, 503, r.text || r.error);
  assert.ok(r.ms < 1000, `503 took ${r.ms} ms`);
  assert.equal(r.headers['retry-after'], '1');
  assert.equal(JSON.parse(r.text).error.code, 'peer_unavailable');
  r = await cli.request({ url: `${A}/health/model/m1`, headers: auth });
  assert.equal(r.status, 503);
  r = await ask({ model: 'gpt-x', messages: [] });
  assert.equal(r.status, 200, r.text || r.error);
  m = await metrics();
  assert.match(m, /modelmux_peer_up\{peer="b"\} 0/);
  assert.match(m, /modelmux_peer_requests_total\{peer="b",code="5xx"\} 1/);

  // B comes back: used again.
  b = await startB();
  await h.waitFor(async () => (await ask({ model: 'm1', messages: [] })).status === 200,
    { timeout: 5000, what: 'peer b used again' });
  assert.equal((await health()).status, 'healthy');

  // A reload keeps the ready peer model (the old snapshot goes), and B dying after it is seen
  // as before.
  fs.writeFileSync(a.configPath, fs.readFileSync(a.configPath, 'utf8').replace('checkEndpoint: /health\n    checkInterval: 1\n  c:',
    'checkEndpoint: /health\n    checkInterval: 2\n  c:'));
  a.signal('SIGHUP');
  await h.waitFor(async () => (await health()).config_generation === 2, { what: 'reloaded' });
  r = await ask({ model: 'm1', messages: [] });
  assert.equal(r.status, 200, r.text || r.error);
  b.proc.kill('SIGKILL');
  await b.exited;
  await h.waitFor(async () => (await ask({ model: 'm1', messages: [] })).status === 503,
    { timeout: 5000, what: '503 after the reload' });
  assert.equal((await ask({ model: 'm1', messages: [] })).headers['retry-after'], '2');
  await a.stop();
});
