// Errors a client can meet: bad requests, unknown models and routes, backends that fail to
// start, never become healthy or crash mid-stream, and bodies over the limit.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function oneModel(port, cmd, extra = '') {
  return `startPort: ${port}\n${extra}models:\n  m:\n    cmd: ${cmd}\n`;
}

test('bad request bodies, unknown models and routes get OpenAI-shaped errors', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, `${h.FAKE} --port \${PORT}`) });
  const url = `${d.url}${CHAT}`;

  const bad = await h.post(url, '{"model": "m", "messages": [');
  h.assertError(bad, 400, /not valid JSON/);
  assert.equal(bad.json.error.type, 'invalid_request_error');
  assert.match(bad.headers.get('content-type'), /application\/json/);

  h.assertError(await h.post(url, ''), 400, /empty/);
  h.assertError(await h.post(url, '[1,2]'), 400, /JSON object/);
  h.assertError(await h.post(url, { messages: [] }), 400, /missing "model"/);
  h.assertError(await h.post(url, { model: 42, messages: [] }), 400, /"model" must be a non-empty string/);
  h.assertError(await h.post(url, { model: '', messages: [] }), 400, /non-empty string/);

  const unknown = await h.post(url, { model: 'no-such-model', messages: [] });
  h.assertError(unknown, 404, /no-such-model/);
  assert.equal(unknown.json.error.type, 'not_found_error');
  assert.equal(unknown.json.error.code, 'model_not_found');

  const getChat = await h.get(url);
  h.assertError(getChat, 405, /GET/);
  assert.equal(getChat.headers.get('allow'), 'POST');

  const nope = await h.get(`${d.url}/no/such/path`);
  h.assertError(nope, 404, /\/no\/such\/path/);
  assert.match(nope.headers.get('content-type'), /application\/json/);

  const postHealth = await h.post(`${d.url}/health`, {});
  h.assertError(postHealth, 405);
  assert.equal(postHealth.headers.get('allow'), 'GET');

  // None of this started a backend.
  assert.equal(d.logCount(/msg=spawned/), 0);
  await d.stop();
});

test('a backend that exits at start gives 502 with its last output; the next request retries', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, `${h.FAKE} --port \${PORT} --exit-at-start 3`) });
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  h.assertError(r, 502, /failed to load model file/);
  assert.match(r.json.error.message, /model m failed to start: exited with code 3 while starting/);
  assert.match(r.json.error.message, /unable to load model/);
  assert.equal(r.json.error.type, 'server_error');
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 1);
  await d.waitLog(/sched model=m state=stopped from=stopping/);

  const again = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  h.assertError(again, 502, /failed to load model file/);
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 2, 'second request started it again');
  await d.stop();
  assert.match(d.stderr, /backend model=m pid=\d+ stream=stderr line="error: failed to load model file/);
});

// fetch with a deadline, so a request the daemon never answers fails the test instead of hanging.
async function postWithin(url, body, ms = 5000) {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(ms * h.SLOW),
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
  } catch (e) {
    throw new Error(`no answer within ${ms} ms: ${e.message}`);
  }
}

test('a command missing at load is a config error; one gone since gives 502 "command not found"',
  async (t) => {
    const port = await h.freePorts(1);
    // At load: the executable is resolved, so a typo never gets as far as a request.
    const dir = h.tmpdir();
    fs.writeFileSync(path.join(dir, 'bad.yaml'), 'models:\n  m:\n    cmd: /nonexistent/bin --port ${PORT}\n');
    const check = spawnSync(h.MODELMUX, ['-t', '-c', path.join(dir, 'bad.yaml')], { encoding: 'utf8' });
    assert.equal(check.status, 1);
    assert.match(check.stderr, /bad\.yaml:3:5: models\.m\.cmd: command not found: \/nonexistent\/bin/);

    // At run time: a binary removed after the config was loaded.
    const copy = path.join(dir, 'backend-copy');
    fs.copyFileSync(h.FAKE, copy);
    fs.chmodSync(copy, 0o755);
    const d = await h.startDaemon(t, { config: oneModel(port, `${copy} --port \${PORT}`) });
    fs.unlinkSync(copy);
    const r = await postWithin(`${d.url}${CHAT}`, { model: 'm', messages: [] });
    h.assertError(r, 502, /command not found/);
    assert.equal(r.json.error.code, 'backend_start_failed');
    // The daemon is fine and tries again on the next request.
    h.assertError(await postWithin(`${d.url}${CHAT}`, { model: 'm', messages: [] }), 502, /command not found/);
    assert.equal((await h.get(`${d.url}/health`)).status, 200);
    await d.stop();
  });

test('a backend that never becomes healthy gives 504 after healthCheckTimeout', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, `${h.FAKE} --port \${PORT} --never-healthy`, 'healthCheckTimeout: 1\n'),
  });
  const t0 = Date.now();
  const r = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  const took = Date.now() - t0;
  h.assertError(r, 504, /health check timed out after 1 s/);
  assert.equal(r.json.error.code, 'backend_timeout');
  assert.ok(took >= 900 && took < 5000 * h.SLOW, `answered after ${took} ms`);
  await d.waitLog(/sched model=m state=stopped/);
  await d.stop();
});

function withDeadline(p, ms, what) {
  let timer;
  const to = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms * h.SLOW);
  });
  return Promise.race([p, to]).finally(() => clearTimeout(timer));
}


test('a backend crashing mid-stream ends the client stream; the daemon keeps serving', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, {
    config: oneModel(port, `${h.FAKE} --port \${PORT} --chunks 5 --chunk-delay 50 --crash-after-chunks 2`),
  });
  const r = await withDeadline(h.streamRaw(`${d.url}${CHAT}`, { model: 'm', stream: true, messages: [] }),
    10000, 'the truncated stream to end (no hang)');
  assert.equal(r.status, 200);
  const events = r.text.split('\n\n').filter((s) => s.startsWith('data: {'));
  assert.equal(events.length, 3, `the two chunks sent before the crash, then an error: ${r.text}`);
  const last = JSON.parse(events[2].slice(6));
  assert.equal(last.error.code, 'backend_stream_error');
  assert.match(last.error.message, /model m: the backend stopped in the middle of the response/);
  assert.doesNotMatch(r.text, /\[DONE\]/, 'a truncated stream must not look complete');
  assert.notEqual(r.how, 'end', `the stream must end in error, not cleanly: ${r.how}`);

  await d.waitLog(/backend closed the response early/);
  await d.waitLog(/sup model=m pid=\d+ msg=exited status="exited with code 3"/);
  await d.waitLog(/sched model=m state=stopped/);

  // The next request starts the model again and gets an answer.
  const ok = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(d.logCount(/sup model=m pid=\d+ msg=spawned/), 2);
  await d.stop();
});

test('a JSON body over 32 MiB gets 413', async (t) => {
  const port = await h.freePorts(1);
  const d = await h.startDaemon(t, { config: oneModel(port, `${h.FAKE} --port \${PORT}`) });
  const dir = h.tmpdir();
  const file = path.join(dir, 'big.json');
  const big = Buffer.alloc(40 * 1024 * 1024, 'a');
  Buffer.from('{"model":"m","prompt":"').copy(big);
  Buffer.from('"}').copy(big, big.length - 2);
  fs.writeFileSync(file, big);

  // With a Content-Length: refused from the head.
  const r = await h.curl(['-H', 'Content-Type: application/json', '--data-binary', `@${file}`,
    '-w', '\n%{http_code}', `${d.url}${CHAT}`]);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines[lines.length - 1], '413', `${r.stdout} ${r.stderr}`);
  const env = JSON.parse(lines.slice(0, -1).join('\n'));
  assert.equal(env.error.code, 'body_too_large');
  assert.match(env.error.message, /larger than 33554432 bytes/);

  // Chunked, no length announced: refused once the limit is passed.
  const c = await h.curl(['-H', 'Content-Type: application/json', '-H', 'Transfer-Encoding: chunked',
    '--data-binary', `@${file}`, '-w', '\n%{http_code}', `${d.url}${CHAT}`]);
  const cl = c.stdout.trimEnd().split('\n');
  assert.equal(cl[cl.length - 1], '413', `${c.stdout} ${c.stderr}`);

  assert.equal(d.logCount(/msg=spawned/), 0, 'no backend started for a refused body');
  // Still serving.
  const ok = await h.post(`${d.url}${CHAT}`, { model: 'm', messages: [] });
  assert.equal(ok.status, 200, ok.text);
  await d.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});
