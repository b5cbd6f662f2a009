// A stopped model starts on demand and answers; aliases, useModelName, /v1/models, /health.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

test('chat completion starts the model on demand and answers', async (t) => {
  const port = await h.freePorts(4);
  const d = await h.startDaemon(t, {
    config: `
startPort: ${port}
models:
  demo:
    cmd: ${h.FAKE} --port \${PORT} --model demo
    aliases: [gpt-4o-mini, d]
    name: Demo
    description: the demo
  renamed:
    cmd: ${h.FAKE} --port \${PORT}
    useModelName: upstream-name
  hidden:
    cmd: ${h.FAKE} --port \${PORT}
    unlisted: true
`,
  });

  const health = await h.get(`${d.url}/health`);
  assert.equal(health.status, 200);
  assert.equal(health.text, 'OK');

  const list = await h.get(`${d.url}/v1/models`);
  assert.equal(list.status, 200);
  assert.equal(list.json.object, 'list');
  const ids = list.json.data.map((m) => m.id);
  assert.deepEqual(ids, ['demo', 'renamed'], 'unlisted model hidden, sorted by id');
  const demo = list.json.data[0];
  assert.equal(demo.object, 'model');
  assert.equal(demo.name, 'Demo');
  assert.equal(demo.description, 'the demo');
  assert.deepEqual(demo.aliases, ['gpt-4o-mini', 'd']);
  assert.equal(demo.state, 'stopped');

  const r = await h.post(`${d.url}/v1/chat/completions`,
    { model: 'demo', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'chat.completion');
  assert.equal(r.json.choices[0].message.role, 'assistant');
  assert.match(r.json.choices[0].message.content, /Hello/);
  assert.match(r.headers.get('x-request-id'), /^[0-9a-f]{16}$/);
  await d.waitLog(/sched model=demo state=ready/);

  // An alias reaches the same, already running model; the backend sees the name sent.
  const a = await h.post(`${d.url}/v1/completions`, { model: 'gpt-4o-mini', prompt: 'x' });
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.echo.model, 'gpt-4o-mini');
  assert.equal(d.logCount(/sup model=demo pid=\d+ msg=spawned/), 1, 'one start only');

  // Embeddings route.
  const e = await h.post(`${d.url}/v1/embeddings`, { model: 'd', input: 'hello' });
  assert.equal(e.status, 200, e.text);
  assert.ok(Array.isArray(e.json.data[0].embedding));

  // useModelName rewrites the model sent upstream; the body length is right.
  const u = await h.post(`${d.url}/v1/chat/completions`, { model: 'renamed', messages: [] });
  assert.equal(u.status, 200, u.text);
  assert.equal(u.json.echo.model, 'upstream-name');
  assert.equal(u.json.echo.body_len, JSON.stringify({ model: 'upstream-name', messages: [] }).length);

  // An unlisted model is still routable.
  const hid = await h.post(`${d.url}/v1/chat/completions`, { model: 'hidden', messages: [] });
  assert.equal(hid.status, 200, hid.text);

  const state = await h.get(`${d.url}/v1/models`);
  assert.equal(state.json.data.find((m) => m.id === 'demo').state, 'stopped', 'swapped out');

  await d.stop();
  assert.match(d.stderr, /access req=[0-9a-f]+ method=POST path="\/v1\/chat\/completions" status=200/);
});

test('request headers and body reach the backend unchanged', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n`,
  });
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'é ✓ "quoted"' }], n: 1 });
  const r = await h.post(`${d.url}/v1/chat/completions`, body,
    { 'X-Custom': 'kept', 'X-Request-ID': 'client-id-1' });
  assert.equal(r.status, 200, r.text);
  const crypto = require('node:crypto');
  assert.equal(r.json.echo.body_sha256, crypto.createHash('sha256').update(body).digest('hex'));
  assert.equal(r.json.echo.headers['x-custom'], 'kept');
  assert.equal(r.json.echo.headers['x-request-id'], 'client-id-1');
  assert.equal(r.headers.get('x-request-id'), 'client-id-1');
  await d.stop();
});
