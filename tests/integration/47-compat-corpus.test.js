// The llama-swap compatibility corpus (tests/compat/*.yaml, configs in the shapes its docs give):
// every file passes `modelmux -t` and serves as a daemon, and each documented behaviour has a
// test. The files' `llama-server` is the fake backend under that name (see tests/compat/README.md).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');

const CORPUS = path.join(__dirname, '..', 'compat');
const BIN = h.tmpdir();
fs.symlinkSync(path.resolve(h.FAKE), path.join(BIN, 'llama-server'));
const ENV = { PATH: `${BIN}:${process.env.PATH}` };
const file = (name) => path.join(CORPUS, name);

function check(name) {
  const r = spawnSync(h.MODELMUX, ['-t', '-c', file(name)], {
    encoding: 'utf8', env: { ...process.env, ...ENV }, timeout: 10000 * h.SLOW,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// A daemon on a corpus file; startPort comes from a second file merged by --config-dir.
async function serve(t, name, nports) {
  const port = await h.freePorts(nports);
  return h.startDaemon(t, {
    config: `startPort: ${port}\n`,
    env: ENV,
    argv: (cfg) => ['-config', file(name), '-config-dir', path.dirname(cfg), '-listen', '127.0.0.1:0'],
  });
}

const chat = (d, model, extra = {}, headers = {}) =>
  h.post(`${d.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }], ...extra },
    headers);
const running = async (d) => (await h.get(`${d.url}/running`)).json.running.map((m) => m.model).sort();
const spawned = (d, m) => d.logCount(new RegExp(`sup model=${m.replace(/[.]/g, '\\.')} pid=\\d+ msg=spawned`));

test('every corpus file passes modelmux -t', () => {
  const files = fs.readdirSync(CORPUS).filter((f) => f.endsWith('.yaml')).sort();
  assert.ok(files.length >= 9, files.join(' '));
  for (const f of files) {
    const r = check(f);
    assert.equal(r.code, 0, `${f}: ${r.err}`);
    assert.match(r.out, /configuration OK\n$/, f);
    assert.match(r.out, /exe: \S+mm-fake-backend/, f);
  }
});

test('01-minimal: one model starts on its first request and is listed', async (t) => {
  const d = await serve(t, '01-minimal.yaml', 1);
  const l = await h.get(`${d.url}/v1/models`);
  assert.deepEqual(l.json.data.map((m) => m.id), ['qwen-0.5b']);
  assert.equal(spawned(d, 'qwen-0.5b'), 0, 'nothing starts before it is asked for');
  const r = await chat(d, 'qwen-0.5b');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'chat.completion');
  const run = (await h.get(`${d.url}/running`)).json.running;
  assert.equal(run.length, 1);
  assert.match(run[0].cmd, /^llama-server --port \d+ -m Qwen2\.5-0\.5B-Instruct-Q4_K_M\.gguf$/);
  assert.equal((await h.get(`${d.url}/props?model=qwen-0.5b`)).json.model_path,
    'Qwen2.5-0.5B-Instruct-Q4_K_M.gguf', 'the server got its -m');
  await d.stop();
});

test('02-models: macros, name/description, metadata types, aliases, filters and setParamsByID', async (t) => {
  const d = await serve(t, '02-models.yaml', 2);
  const l = (await h.get(`${d.url}/v1/models`)).json.data;
  assert.deepEqual(l.map((m) => m.id), ['gpt-oss'], 'unlisted stays out; aliases are not listed');
  const m = l[0];
  assert.equal(m.name, 'gpt-oss (gpt-oss)', '${MODEL_ID} in name');
  assert.equal(m.description, 'context 16384', 'the model macro wins in description');
  assert.equal(typeof m.meta.llamaswap.port, 'number', 'metadata keeps the type of ${PORT}');
  assert.equal(m.meta.llamaswap.temperature, 0.7);
  assert.equal(m.meta.llamaswap.note, `gpt-oss listens on ${m.meta.llamaswap.port}`);
  assert.deepEqual(m.meta.llamaswap.tags, ['chat', 'gpt-oss']);
  assert.deepEqual(m.meta.llamaswap.aliases.sort(), ['gpt-4o-mini', 'gpt-oss:high', 'gpt-oss:low']);
  assert.equal(m.context_length, 16384, 'from --ctx-size in cmd');

  const echo = { 'X-Echo-Body': '1' };
  // The alias, and each setParamsByID name, reach the same server with its own parameters.
  const base = await chat(d, 'gpt-oss', { temperature: 1.5, top_k: 3 }, echo);
  assert.equal(base.status, 200, base.text);
  const b = base.json.echo.body;
  assert.equal(b.model, 'openai/gpt-oss-20b', 'useModelName');
  assert.equal(b.temperature, undefined, 'stripParams');
  assert.equal(b.top_k, undefined, 'stripParams');
  assert.equal(b.top_p, 0.9, 'setParams');
  assert.deepEqual(b.chat_template_kwargs, { reasoning_effort: 'medium' }, 'setParamsByID of the id');
  const hi = (await chat(d, 'gpt-oss:high', {}, echo)).json.echo.body;
  assert.deepEqual(hi.chat_template_kwargs, { reasoning_effort: 'high' });
  assert.equal(hi.top_p, 0.9);
  const lo = (await chat(d, 'gpt-oss:low', { chat_template_kwargs: { reasoning_effort: 'x' } }, echo)).json.echo.body;
  assert.deepEqual(lo.chat_template_kwargs, { reasoning_effort: 'low' }, 'setParamsByID overrides the client');
  const al = (await chat(d, 'gpt-4o-mini', {}, echo)).json.echo.body;
  assert.equal(al.chat_template_kwargs, undefined, 'a plain alias has no setParamsByID entry');
  assert.equal(spawned(d, 'gpt-oss'), 1, 'one server for every name');
  const env = await h.get(`${d.url}/upstream/gpt-oss/env`);
  assert.equal(env.json.CUDA_VISIBLE_DEVICES, '0', 'env reaches the server');

  // unlisted is still usable (it swaps gpt-oss out: both are in the default group); with no
  // ttl of its own, globalTTL (2 s) unloads it once idle.
  assert.equal((await chat(d, 'quiet-helper')).status, 200);
  await h.waitFor(async () => (await running(d)).length === 0, { timeout: 8000, what: 'globalTTL unload' });
  assert.equal(spawned(d, 'quiet-helper'), 1);
  await d.stop();
});

test('03-groups: swap:false members run together; exclusive evicts others; persistent stays', async (t) => {
  const d = await serve(t, '03-groups.yaml', 5);
  for (const m of ['whisper', 'coder', 'embed']) assert.equal((await chat(d, m)).status, 200);
  assert.deepEqual(await running(d), ['coder', 'embed', 'whisper']);
  // chat's group is not exclusive: coder and embed stay.
  assert.equal((await chat(d, 'chat')).status, 200);
  assert.deepEqual(await running(d), ['chat', 'coder', 'embed', 'whisper']);
  // big swaps chat out (same swapping group), nothing else.
  assert.equal((await chat(d, 'big')).status, 200);
  await h.waitFor(async () => (await running(d)).join() === 'big,coder,embed,whisper', { what: 'chat swapped out' });
  // coder's group is exclusive: big goes, whisper (persistent) stays.
  await h.post(`${d.url}/api/models/unload/coder`, {});
  assert.equal((await chat(d, 'coder')).status, 200);
  await h.waitFor(async () => (await running(d)).join() === 'coder,embed,whisper', { what: 'big evicted' });
  await d.stop();
});

test('04-routing: routing.router.settings.groups are groups; fifo priority goes first', async (t) => {
  const d = await serve(t, '04-routing.yaml', 5);
  assert.equal((await chat(d, 'draft')).status, 200);
  assert.equal((await chat(d, 'target')).status, 200);
  assert.deepEqual(await running(d), ['draft', 'target'], 'one swap:false group');
  // fast is busy while slow (older) and urgent (newer, priority 100) wait for it to go.
  assert.equal((await chat(d, 'fast')).status, 200);
  const health = async () => Object.fromEntries((await h.get(`${d.url}/api/health`)).json.models
    .map((m) => [m.id, m]));
  const busy = chat(d, 'fast', { fake_delay_ms: 1500 });
  await h.waitFor(async () => (await health()).fast.inflight === 1, { what: 'fast busy' });
  const slow = chat(d, 'slow');
  await h.waitFor(async () => (await health()).slow.queued === 1, { what: 'slow queued' });
  const urgent = chat(d, 'urgent');
  await h.waitFor(async () => (await health()).urgent.queued === 1, { what: 'urgent queued' });
  const [rb, rs, ru] = await Promise.all([busy, slow, urgent]);
  assert.deepEqual([rb.status, rs.status, ru.status], [200, 200, 200]);
  const order = [...d.stderr.matchAll(/sup model=(slow|urgent) pid=\d+ msg=spawned/g)].map((m) => m[1]);
  assert.deepEqual(order, ['urgent', 'slow'], 'the higher priority started first');
  await d.stop();
});

test('05-matrix: sets decide what runs together; the cheapest eviction wins; outsiders run alone', async (t) => {
  const d = await serve(t, '05-matrix.yaml', 6);
  assert.equal((await chat(d, 'gemma-model')).status, 200);
  assert.equal((await chat(d, 'voxtral-model')).status, 200);
  assert.deepEqual(await running(d), ['gemma-model', 'voxtral-model'], 'standard: g & v');
  assert.equal((await chat(d, 'reranker-model')).status, 200);
  assert.deepEqual(await running(d), ['gemma-model', 'reranker-model', 'voxtral-model'], 'with_rerank');
  // q: with_rerank [q,v,e] keeps everything but g.
  assert.equal((await chat(d, 'qwen-model')).status, 200);
  await h.waitFor(async () => (await running(d)).join() === 'qwen-model,reranker-model,voxtral-model',
    { what: 'gemma evicted, the rest kept' });
  // L runs alone.
  assert.equal((await chat(d, 'llama-70B')).status, 200);
  await h.waitFor(async () => (await running(d)).join() === 'llama-70B', { what: 'L alone' });
  // A model in no set runs alone too.
  assert.equal((await chat(d, 'loner')).status, 200);
  await h.waitFor(async () => (await running(d)).join() === 'loner', { what: 'loner alone' });
  await d.stop();
});

test('06-selectors: pin, warm and spillover pick a target per request; listed as models', async (t) => {
  const d = await serve(t, '06-selectors.yaml', 3);
  const echo = { 'X-Echo-Body': '1' };
  const l = (await h.get(`${d.url}/v1/models`)).json.data;
  const sel = l.find((m) => m.id === 'default-chat');
  assert.equal(sel.name, 'Default chat');
  assert.equal(sel.meta.llamaswap.type, 'selector');
  assert.equal(sel.meta.llamaswap.strategy, 'pin');
  assert.ok(!l.some((m) => m.id === 'hidden'), 'unlisted selector');
  // pin: the first target, as written (an alias of gemma).
  const p = await chat(d, 'default-chat', {}, echo);
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.echo.body.model, 'gemma-latest');
  assert.deepEqual(await running(d), ['gemma']);
  // warm: gemma is loaded, so any-chat goes there rather than starting qwen-a.
  assert.equal((await chat(d, 'any-chat', {}, echo)).json.echo.body.model, 'gemma');
  assert.equal(spawned(d, 'qwen-a'), 0);
  // spillover: one request each before another target starts.
  const a = await chat(d, 'qwen-pool', {}, echo);
  assert.equal(a.json.echo.body.model, 'qwen-a', 'cold: the first target');
  const busy = chat(d, 'qwen-pool', { fake_delay_ms: 1500 }, echo);
  await h.waitFor(async () => (await h.get(`${d.url}/running`)).json.running
    .some((m) => m.model === 'qwen-a' && m.inflight === 1), { what: 'qwen-a busy' });
  const second = await chat(d, 'qwen-pool', {}, echo);
  assert.equal(second.json.echo.body.model, 'qwen-b', 'qwen-a has its one: spill to qwen-b');
  assert.equal((await busy).json.echo.body.model, 'qwen-a');
  assert.deepEqual(await running(d), ['qwen-a', 'qwen-b'], 'the pool runs together');
  // warm again: now qwen-a is ready, and it is any-chat's first target.
  assert.equal((await chat(d, 'any-chat', {}, echo)).json.echo.body.model, 'qwen-a');
  // Selectors work on the ?model= and multipart routes too: what goes upstream names the target.
  const gv = await h.get(`${d.url}/v1/audio/voices?model=default-chat&x=1`);
  assert.equal(gv.status, 200, gv.text);
  assert.equal(gv.json.echo.query, 'model=gemma-latest&x=1');
  const f = path.join(h.tmpdir(), 'a.wav');
  fs.writeFileSync(f, Buffer.alloc(4096, 7));
  const mp = await h.curl(['-F', 'model=default-chat', '-F', `file=@${f}`, `${d.url}/v1/audio/transcriptions`]);
  const mj = JSON.parse(mp.stdout);
  assert.equal(mj.echo.model, 'gemma-latest', 'the multipart model field is rewritten');
  assert.equal(mj.echo.file_len, 4096, 'the rest goes through unchanged');
  await d.stop();
});

test('07-capabilities: /v1/models shows what each model can do', async (t) => {
  const d = await serve(t, '07-capabilities.yaml', 5);
  const byId = Object.fromEntries((await h.get(`${d.url}/v1/models`)).json.data.map((m) => [m.id, m]));
  const v = byId['vision-chat'];
  assert.equal(v.capabilities.vision, true);
  assert.equal(v.capabilities.function_calling, true);
  assert.deepEqual(v.supported_parameters, ['tools', 'tool_choice']);
  assert.equal(v.context_length, 32768, 'capabilities.context wins over --ctx-size');
  assert.equal(v.architecture.modality, 'text+image->text');
  assert.equal(byId.tts.capabilities.audio_speech, true);
  assert.equal(byId.transcribe.capabilities.audio_transcriptions, true);
  assert.equal(byId.painter.capabilities.image_generation, true);
  assert.equal(byId.painter.capabilities.image_to_image, true);
  assert.equal(byId.rerank.capabilities.reranker, true);
  assert.equal(byId.rerank.context_length, 512);
  assert.equal(byId.rerank.architecture, undefined);
  await d.stop();
});

test('08-logs-upstream: ignorePaths never start a model; logToStdout upstream', async (t) => {
  const d = await serve(t, '08-logs-upstream.yaml', 1);
  const fav = await h.get(`${d.url}/upstream/webui/favicon.ico`);
  h.assertError(fav, 409, /not loaded.*ignorePaths/);
  h.assertError(await h.get(`${d.url}/upstream/webui/app.js`), 409);
  assert.equal(spawned(d, 'webui'), 0, 'nothing started');
  // Any other path starts it; then ignored paths reach it.
  const root = await h.get(`${d.url}/upstream/webui/echo`);
  assert.equal(root.status, 200, root.text);
  const css = await h.get(`${d.url}/upstream/webui/echo.css`);
  assert.notEqual(css.status, 409, 'loaded now: the path goes through');
  // logToStdout: upstream — the daemon's own info lines after start are not written (the
  // spawn line is in /logs), the model's output is.
  assert.doesNotMatch(d.stderr.split(/msg=ready/)[1], /sup model=webui pid=\d+ msg=spawned/);
  assert.match(d.stderr, /backend model=webui pid=\d+ stream=/);
  const logs = await h.get(`${d.url}/logs`);
  assert.match(logs.text, /sup model=webui pid=\d+ msg=spawned/);
  await d.stop();
});

test('09-not-implemented: profiles and the rest load with a warning naming each', () => {
  const r = check('09-not-implemented.yaml');
  assert.equal(r.code, 0, r.err);
  for (const k of ['logTimeFormat', 'captureBuffer', 'performance', 'profiles'])
    assert.match(r.err, new RegExp(`warning: \\S+:\\d+:\\d+: ${k}: not supported by modelmux, ignored`), k);
});

test('10-peers: peers and metricsMaxInMemory load without a warning', () => {
  const r = check('10-peers.yaml');
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.err, /warning/);
});

test('09-not-implemented: and serves its models', async (t) => {
  const d = await serve(t, '09-not-implemented.yaml', 2);
  assert.equal((await chat(d, 'small')).status, 200);
  await d.stop();
});
