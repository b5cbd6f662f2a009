// llama-swap's API shapes: /v1/models with meta.llamaswap, capabilities and context length;
// /running with cmd, name, description; GET /unload; /api/version; /props without ?model=;
// POST /v1/audio/voices.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

const chat = (d, model) => h.post(`${d.url}/v1/chat/completions`, { model, messages: [] });

test('/v1/models: meta.llamaswap beside our meta, capabilities, context length', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
includeAliasesInList: true
models:
  vision:
    cmd: ${h.FAKE} --port \${PORT}
    name: Vision
    aliases: [eyes]
    metadata: {family: qwen, size: 7}
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 32768
  speaker:
    cmd: ${h.FAKE} --port \${PORT} --ctx-size 2048
    capabilities: {in: [text], out: [audio]}
  plain:
    cmd: ${h.FAKE} --port \${PORT}
`,
  });
  const r = await h.get(`${d.url}/v1/models`);
  assert.equal(r.status, 200, r.text);
  const byId = Object.fromEntries(r.json.data.map((m) => [m.id, m]));
  const v = byId.vision;
  assert.deepEqual(v.architecture, { input_modalities: ['text', 'image'], output_modalities: ['text'],
    modality: 'text+image->text' });
  assert.equal(v.capabilities.vision, true);
  assert.equal(v.capabilities.function_calling, true);
  assert.equal(v.capabilities.audio_speech, false);
  assert.deepEqual(v.supported_parameters, ['tools', 'tool_choice']);
  assert.equal(v.context_length, 32768);
  assert.equal(v.meta.family, 'qwen', 'our meta keys stay');
  assert.deepEqual(v.meta.llamaswap, { family: 'qwen', size: 7, type: 'model', aliases: ['eyes'] });
  assert.equal(v.meta.n_ctx, 32768);
  assert.equal(byId.eyes.meta.llamaswap.type, 'alias');
  const s = byId.speaker;
  assert.equal(s.capabilities.audio_speech, true);
  assert.equal(s.capabilities.vision, false);
  assert.equal(s.context_length, 2048, 'from --ctx-size in cmd');
  assert.equal(s.supported_parameters, undefined);
  const p = byId.plain;
  assert.equal(p.capabilities, undefined);
  assert.equal(p.context_length, undefined);
  assert.deepEqual(p.meta, { llamaswap: { type: 'model' } });
  await d.stop();
});

test('/running has cmd, name and description; GET /unload unloads all and answers OK', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
groups:
  both: {swap: false, members: [a, b]}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --reply "two words"
    name: Model A
  b:
    cmd: ${h.FAKE} --port \${PORT}
    description: the b one
`,
  });
  assert.equal((await chat(d, 'a')).status, 200);
  assert.equal((await chat(d, 'b')).status, 200);
  const r = await h.get(`${d.url}/running`);
  const run = Object.fromEntries(r.json.running.map((m) => [m.model, m]));
  assert.equal(run.a.cmd, `${h.FAKE} --port ${port} --reply 'two words'`);
  assert.equal(run.a.name, 'Model A');
  assert.equal(run.a.description, '');
  assert.equal(run.b.description, 'the b one');
  assert.equal(run.b.name, '');
  assert.equal(run.a.state, 'ready');

  // A browser sent there by another site (an <img>, a link) is refused: nothing unloads.
  for (const site of ['cross-site', 'same-site']) {
    const x = await h.rawRequest(`${d.url}/unload`, { headers: { 'Sec-Fetch-Site': site } });
    h.assertError(x, 403, /from another site is refused/);
  }
  assert.deepEqual((await h.get(`${d.url}/running`)).json.running.map((m) => m.model).sort(), ['a', 'b']);
  const u = await h.get(`${d.url}/unload`);
  assert.equal(u.status, 200);
  assert.equal(u.text, 'OK');
  assert.deepEqual((await h.get(`${d.url}/running`)).json.running, [], 'every model stopped');
  await d.waitLogCount(/msg=exited/, 2);
  // A method other than GET (or POST) is refused.
  const del = await fetch(`${d.url}/unload`, { method: 'DELETE' });
  assert.equal(del.status, 405);
  await d.stop();
});

test('/api/version answers the version', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: `startPort: ${port}\nmodels:\n  m:\n    cmd: ${h.FAKE} --port \${PORT}\n` });
  const r = await h.get(`${d.url}/api/version`);
  assert.equal(r.status, 200);
  assert.match(r.json.version, /^\d+\.\d+\.\d+/);
  assert.equal(typeof r.json.commit, 'string');
  assert.equal(typeof r.json.build_date, 'string');
  await d.stop();
});

test('/props without ?model= answers for the single loaded model; POST /v1/audio/voices routes by body', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a-file
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b-file
`,
  });
  const none = await h.get(`${d.url}/props`);
  h.assertError(none, 400, /missing \?model= query parameter \(no model is loaded\)/);
  assert.equal((await chat(d, 'a')).status, 200);
  const one = await h.get(`${d.url}/props`);
  assert.equal(one.status, 200, one.text);
  assert.equal(one.json.model_path, 'a-file');
  assert.equal(one.json.default_generation_settings.n_ctx, 4096);
  // ?model= still picks (and swaps to) the one named.
  const b = await h.get(`${d.url}/props?model=b`);
  assert.equal(b.json.model_path, 'b-file');
  assert.equal((await h.get(`${d.url}/props`)).json.model_path, 'b-file', 'b is the one loaded now');

  const pv = await h.post(`${d.url}/v1/audio/voices`, { model: 'a' });
  assert.equal(pv.status, 200, pv.text);
  assert.deepEqual(pv.json.voices, ['alloy', 'echo', 'nova']);
  assert.equal(pv.json.echo.method, 'POST');
  assert.equal(pv.json.echo.path, '/v1/audio/voices');
  const gv = await h.get(`${d.url}/v1/audio/voices?model=a`);
  assert.equal(gv.status, 200);
  assert.equal(gv.json.echo.method, 'GET');
  await d.stop();
});
