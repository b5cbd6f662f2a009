// The OpenAI-compatible surface beyond chat: multipart audio, ?model= routes, /upstream/.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

// A multi-megabyte WAV: a real RIFF header, then noise.
function wav(bytes) {
  const buf = crypto.randomBytes(bytes);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(bytes - 8, 4);
  buf.write('WAVEfmt ', 8);
  return buf;
}

function config(port) {
  return `startPort: ${port}
models:
  whisper:
    cmd: ${h.FAKE} --port \${PORT} --model whisper
  renamed:
    cmd: ${h.FAKE} --port \${PORT}
    useModelName: whisper-1-upstream
  org/model:
    cmd: ${h.FAKE} --port \${PORT}
`;
}

test('a multi-megabyte upload reaches the backend byte for byte, in either part order', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) });
  const audio = wav(5 * 1024 * 1024 + 17);
  const dir = h.tmpdir();
  const file = path.join(dir, 'speech.wav');
  fs.writeFileSync(file, audio);

  // The file part first: the model is only known after 5 MB went by.
  const r = await h.curl(['-F', `file=@${file};type=audio/wav`, '-F', 'model=whisper',
    `${d.url}/v1/audio/transcriptions`]);
  const j = JSON.parse(r.stdout);
  assert.equal(j.echo.file_sha256, sha256(audio));
  assert.equal(j.echo.file_len, audio.length);
  assert.equal(j.echo.model, 'whisper');
  assert.match(j.text, /Hello/);

  // The whole body is forwarded unchanged: the backend's digest of it matches ours.
  const boundary = 'mmboundary42';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
    audio,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const res = await fetch(`${d.url}/v1/audio/translations`, {
    method: 'POST',
    headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` },
    body,
  });
  const k = await res.json();
  assert.equal(res.status, 200);
  assert.equal(k.echo.body_sha256, sha256(body));
  assert.equal(k.echo.file_sha256, sha256(audio));

  // useModelName rewrites only the model part.
  const u = await h.curl(['-F', 'model=renamed', '-F', `file=@${file}`, `${d.url}/v1/audio/transcriptions`]);
  const uj = JSON.parse(u.stdout);
  assert.equal(uj.echo.model, 'whisper-1-upstream');
  assert.equal(uj.echo.file_sha256, sha256(audio));
  await d.stop();
});

test('multipart errors: no model field, not multipart, unknown model, truncated body', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) });
  const url = `${d.url}/v1/audio/transcriptions`;
  const form = new FormData();
  form.append('file', new Blob([Buffer.from('abc')]), 'a.wav');
  let r = await fetch(url, { method: 'POST', body: form });
  let j = await r.json();
  assert.equal(r.status, 400);
  assert.match(j.error.message, /missing "model" form field/);

  r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"model":"whisper"}' });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /multipart\/form-data/);

  const f2 = new FormData();
  f2.append('model', 'nope');
  r = await fetch(url, { method: 'POST', body: f2 });
  assert.equal(r.status, 404);

  r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'multipart/form-data; boundary=x' },
    body: '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
  });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /ends before its closing boundary/);
  assert.equal(d.logCount(/msg=spawned/), 0, 'no backend started for a refused upload');
  await d.stop();
});

test('the openai SDK transcribes audio through modelmux', async (t) => {
  const OpenAI = require('openai');
  // Node 18 (Debian 12's) has File only in node:buffer; the SDK asks for it as a global.
  globalThis.File ??= require('node:buffer').File;
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) });
  const file = path.join(h.tmpdir(), 'clip.wav');
  fs.writeFileSync(file, wav(200000));
  const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: 'x' });
  const out = await client.audio.transcriptions.create({ file: fs.createReadStream(file), model: 'whisper' });
  assert.match(out.text, /Hello/);
  await d.stop();
});

test('?model= routes and /upstream/<model>/ passthrough', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) });
  const props = await h.get(`${d.url}/props?model=whisper`);
  assert.equal(props.status, 200, props.text);
  assert.equal(props.json.echo.query, 'model=whisper');
  const voices = await h.get(`${d.url}/v1/audio/voices?model=nope`);
  h.assertError(voices, 404, /nope/);
  // Without ?model=, /props answers for the one loaded model (45-compat-api); with none
  // loaded it is a 400.
  h.assertError(await h.get(`${d.url}/v1/audio/voices`), 400, /model/);

  // Raw passthrough: prefix stripped, query kept, any method; ids with '/' take the longest match.
  const up = await h.get(`${d.url}/upstream/org/model/echo?x=1%202`);
  assert.equal(up.status, 200, up.text);
  assert.equal(up.json.path, '/echo');
  assert.equal(up.json.query, 'x=1%202');
  const put = await fetch(`${d.url}/upstream/whisper/echo`, { method: 'PUT', body: 'hello' });
  const pj = await put.json();
  assert.equal(pj.method, 'PUT');
  assert.equal(pj.body_sha256, sha256(Buffer.from('hello')));
  // Streamed download through the passthrough.
  const big = await fetch(`${d.url}/upstream/whisper/bytes`);
  assert.equal((await big.arrayBuffer()).byteLength, 1024 * 1024);

  // /upstream/<model> redirects to /upstream/<model>/.
  const red = await fetch(`${d.url}/upstream/whisper`, { redirect: 'manual' });
  assert.equal(red.status, 301);
  assert.equal(red.headers.get('location'), '/upstream/whisper/');
  const red2 = await fetch(`${d.url}/upstream/whisper`, { method: 'POST', redirect: 'manual' });
  assert.equal(red2.status, 308);
  await d.stop();
});

test('/upstream path traversal is refused before any model starts', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) });
  for (const p of ['..%2f..%2fetc/passwd', '%2e%2e/%2e%2e/etc/passwd', 'a/%2e%2e/b', 'a%5cb', 'a%00b']) {
    const r = await h.curl(['--path-as-is', '-w', '\n%{http_code}', `${d.url}/upstream/whisper/${p}`]);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[lines.length - 1], '400', `${p}: ${r.stdout}`);
    assert.match(JSON.parse(lines[0]).error.message, /upstream path refused/);
  }
  const raw = await h.curl(['--path-as-is', '-w', '\n%{http_code}', `${d.url}/upstream/whisper/../../etc/passwd`]);
  assert.match(raw.stdout, /400$/);
  assert.equal(d.logCount(/msg=spawned/), 0, 'no backend started');
  await d.stop();
});

test('sendLoadingState: a streaming chat that triggers a load sees progress, then the real stream', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}\nsendLoadingState: true\nmodels:\n` +
      `  slow:\n    cmd: ${h.FAKE} --port \${PORT} --health-delay 1600 --chunks 3\n` +
      `  broken:\n    cmd: ${h.FAKE} --port \${PORT} --exit-at-start 2\n    sendLoadingState: true\n`,
  });
  const t0 = Date.now();
  const res = await fetch(`${d.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [] }),
  });
  // The head comes at once, long before the model is ready.
  assert.ok(Date.now() - t0 < 1000, 'head sent while loading');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  const text = await res.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)));
  const reasoning = events.map((e) => e.choices[0].delta.reasoning_content).filter(Boolean);
  assert.match(reasoning[0], /Loading model slow/);
  assert.ok(reasoning.includes('.'), 'progress dots');
  assert.match(reasoning[reasoning.length - 1], /Done! \(\d+\.\d\ds\)/);
  const content = events.map((e) => e.choices[0].delta.content).filter(Boolean).join('');
  assert.equal(content, 'Hello from the');
  assert.match(text, /data: \[DONE\]/);

  // Not streaming, or already loaded: no progress.
  const plain = await h.post(`${d.url}/v1/chat/completions`, { model: 'slow', stream: true, messages: [] });
  assert.doesNotMatch(plain.text, /reasoning_content/);

  // A load that fails ends the stream with an error event.
  const bad = await fetch(`${d.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'broken', stream: true, messages: [] }),
  });
  let btext = '';
  const dec = new TextDecoder();
  try {
    for await (const chunk of bad.body) btext += dec.decode(chunk, { stream: true });
  } catch { /* the stream ends in error after the event */ }
  assert.match(btext, /"code":"backend_start_failed"/);
  assert.match(btext, /failed to load model file/);
  await d.stop();
});

test('/upstream bodies pass through byte for byte, spooled: memory stays flat; limits by kind', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, { config: config(port) + `limits:
  maxJsonBodyBytes: 1048576
  maxMultipartBodyBytes: 67108864
` });
  // Warm up: the model is running and the connection pools are made.
  assert.equal((await h.get(`${d.url}/upstream/whisper/echo`)).status, 200);
  const rss0 = h.rssKb(d.proc.pid);

  const small = crypto.randomBytes(500 * 1024);
  let r = await fetch(`${d.url}/upstream/whisper/echo`, { method: 'POST', body: small,
    headers: { 'Content-Type': 'application/octet-stream' } });
  let j = await r.json();
  assert.equal(r.status, 200);
  assert.equal(j.body_sha256, sha256(small));

  // A 24 MB upload (multipart to an upstream endpoint, e.g. whisper-server's /inference).
  const big = crypto.randomBytes(24 * 1024 * 1024);
  r = await fetch(`${d.url}/upstream/whisper/echo`, { method: 'POST', body: big,
    headers: { 'Content-Type': 'multipart/form-data; boundary=zz' } });
  j = await r.json();
  assert.equal(r.status, 200);
  assert.equal(j.body_len, big.length);
  assert.equal(j.body_sha256, sha256(big));
  if (!h.SANITIZED) {
    const grew = h.rssKb(d.proc.pid) - rss0;
    assert.ok(grew < 8 * 1024, `daemon RSS grew ${grew} kB for a 24 MB upload`);
  }

  // Past the limit of its kind: 413 (a non-multipart body has the JSON limit).
  const file = path.join(h.tmpdir(), 'blob.bin');
  fs.writeFileSync(file, crypto.randomBytes(2 * 1024 * 1024));
  const c = await h.curl(['-s', '-w', '\n%{http_code}', '-H', 'Content-Type: application/octet-stream',
    '--data-binary', `@${file}`, `${d.url}/upstream/whisper/echo`]);
  const lines = c.stdout.trim().split('\n');
  assert.equal(lines.at(-1), '413');
  assert.match(JSON.parse(lines[0]).error.message, /1048576/);
  await d.stop();
});
