// GET /metrics: a well-formed Prometheus text exposition, and counters that follow scripted
// traffic — starts and swap unloads, requests by route and status, token totals from the
// backend's usage, ttl/api/crash unloads, crashes, the load histogram, model state, RSS.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./lib/harness');

const CHAT = '/v1/chat/completions';

function chat(d, model, extra = {}) {
  return h.post(`${d.url}${CHAT}`, { model, messages: [{ role: 'user', content: `hello ${model}` }], ...extra });
}

// Streams a chat to its end; returns the status, raw text and the usage of the last event.
async function streamChat(d, model) {
  const res = await fetch(`${d.url}${CHAT}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'a streamed question' }] }),
  });
  const text = await res.text();
  let usage = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('data: {')) {
      const ev = JSON.parse(line.slice(6));
      if (ev.usage) usage = ev.usage;
    }
  }
  return { status: res.status, text, usage };
}

// Streams to the end, whatever the end is (a crashing backend cuts it).
function streamRaw(url, body) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    let text = '';
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
    }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (s) => { text += s; });
      res.on('close', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', () => resolve({ status: 0, text }));
    req.end(data);
  });
}

const SAMPLE = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|[+-]Inf|NaN)$/;

// Parses the exposition into samples and the HELP/TYPE declarations.
function parse(text) {
  const samples = [];
  const help = new Map();
  const type = new Map();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# HELP ([a-z_]+) (.+)$/.exec(line))) {
      assert.ok(!help.has(m[1]), `HELP ${m[1]} twice`);
      help.set(m[1], m[2]);
      continue;
    }
    if ((m = /^# TYPE ([a-z_]+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(!type.has(m[1]), `TYPE ${m[1]} twice`);
      type.set(m[1], m[2]);
      continue;
    }
    assert.ok(!line.startsWith('#'), `unexpected comment line: ${line}`);
    m = SAMPLE.exec(line);
    assert.ok(m, `malformed sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      const inner = m[2].slice(1, -1);
      const re = /([a-z_]+)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let lm;
      let end = 0;
      while ((lm = re.exec(inner)) !== null) {
        labels[lm[1]] = lm[2];
        end = re.lastIndex;
        if (end === inner.length) break;
      }
      assert.equal(end, inner.length, `malformed labels: ${line}`);
    }
    // The declaration comes before the first sample of its family.
    const family = type.has(m[1]) ? m[1] : m[1].replace(/_(bucket|sum|count)$/, '');
    assert.ok(type.has(family), `sample before (or without) its TYPE: ${line}`);
    assert.ok(help.has(family), `sample without HELP: ${line}`);
    if (family !== m[1]) assert.equal(type.get(family), 'histogram', line);
    samples.push({ name: m[1], labels, value: Number(m[3]), line });
  }
  return { samples, help, type };
}

async function scrape(d) {
  const r = await h.get(`${d.url}/metrics`);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parse(r.text);
}

// The value of the one sample with this name and (at least) these labels; undefined if none.
function val(p, name, labels = {}) {
  const hits = p.samples.filter((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
    Object.keys(s.labels).length === Object.keys(labels).length);
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits.length ? hits[0].value : undefined;
}

// Scrapes until check(p) passes (counters of finished requests land just after the answer).
async function scrapeUntil(d, check, what) {
  let last;
  try {
    return await h.waitFor(async () => {
      last = await scrape(d);
      check(last);
      return last;
    }, { timeout: 4000, what });
  } catch (e) {
    if (last) check(last); // fail with the assertion's own message
    throw e;
  }
}

test('the exposition is well formed: every sample parses and has HELP and TYPE', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  "we\\"ird":
    cmd: ${h.FAKE} --port \${PORT} --model w
`,
  });
  // Before any traffic: every family is declared, every model has zeroed series.
  const p0 = await scrape(d);
  for (const name of ['modelmux_model_starts_total', 'modelmux_model_crashes_total',
    'modelmux_model_unloads_total', 'modelmux_model_load_duration_seconds', 'modelmux_queue_wait_seconds',
    'modelmux_time_to_first_byte_seconds', 'modelmux_requests_total', 'modelmux_prompt_tokens_total',
    'modelmux_completion_tokens_total', 'modelmux_gate_refusals_total',
    'modelmux_process_resident_memory_bytes', 'modelmux_process_open_fds', 'modelmux_http_connections',
    'modelmux_model_state', 'modelmux_queue_depth', 'modelmux_requests_in_flight']) {
    assert.ok(p0.type.has(name), `TYPE for ${name}`);
  }
  assert.equal(p0.type.get('modelmux_model_load_duration_seconds'), 'histogram');
  assert.equal(p0.type.get('modelmux_model_starts_total'), 'counter');
  assert.equal(p0.type.get('modelmux_process_resident_memory_bytes'), 'gauge');
  assert.equal(val(p0, 'modelmux_model_starts_total', { model: 'a' }), 0);
  assert.equal(val(p0, 'modelmux_model_starts_total', { model: 'we\\"ird' }), 0, 'label value escaped');
  for (const reason of ['ttl', 'swap', 'api', 'crash', 'shutdown']) {
    assert.equal(val(p0, 'modelmux_model_unloads_total', { model: 'a', reason }), 0, reason);
  }
  assert.equal(val(p0, 'modelmux_model_state', { model: 'a', state: 'stopped' }), 1);
  assert.equal(val(p0, 'modelmux_model_state', { model: 'a', state: 'ready' }), 0);

  // After traffic, including a streamed answer and an error, it still parses.
  assert.equal((await chat(d, 'a')).status, 200);
  assert.equal((await streamChat(d, 'a')).status, 200);
  h.assertError(await chat(d, 'missing'), 404);
  const p1 = await scrape(d);
  // Histogram buckets are cumulative and end in +Inf == _count.
  const buckets = p1.samples.filter((s) => s.name === 'modelmux_time_to_first_byte_seconds_bucket' &&
    s.labels.model === 'a');
  assert.ok(buckets.length > 2);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, buckets[i].line);
  assert.equal(buckets.at(-1).labels.le, '+Inf');
  assert.equal(buckets.at(-1).value, val(p1, 'modelmux_time_to_first_byte_seconds_count', { model: 'a' }));
  await d.stop();
});

test('scripted traffic: swaps, requests, tokens, load histogram, model state, RSS', async (t) => {
  const port = await h.freePorts(2);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  a:
    cmd: ${h.FAKE} --port \${PORT} --model a
  b:
    cmd: ${h.FAKE} --port \${PORT} --model b --chunks 3
`,
  });
  const usage = { a: [0, 0], b: [0, 0] };
  const add = (m, u) => { usage[m][0] += u.prompt_tokens; usage[m][1] += u.completion_tokens; };

  // a, a, then b (swap a out), then a (swap b out).
  for (let i = 0; i < 2; i++) {
    const r = await chat(d, 'a', { messages: [{ role: 'user', content: 'x'.repeat(40 * (i + 1)) }] });
    assert.equal(r.status, 200, r.text);
    add('a', r.json.usage);
  }
  const s = await streamChat(d, 'b');
  assert.equal(s.status, 200, s.text);
  assert.ok(s.usage, 'usage in the last SSE event');
  add('b', s.usage);
  const rb = await chat(d, 'b');
  assert.equal(rb.status, 200, rb.text);
  add('b', rb.json.usage);
  const r3 = await chat(d, 'a');
  assert.equal(r3.status, 200, r3.text);
  add('a', r3.json.usage);
  await d.waitLog(/sched model=b msg="unloading" reason=swap/);

  const p = await scrapeUntil(d, (q) => {
    assert.equal(val(q, 'modelmux_requests_total', { model: 'a', route: 'chat', status: '200' }), 3,
      'three 200s for a');
  }, 'requests_total for a');
  assert.equal(val(p, 'modelmux_model_starts_total', { model: 'a' }), 2);
  assert.equal(val(p, 'modelmux_model_starts_total', { model: 'b' }), 1);
  assert.equal(val(p, 'modelmux_model_unloads_total', { model: 'a', reason: 'swap' }), 1);
  assert.equal(val(p, 'modelmux_model_unloads_total', { model: 'b', reason: 'swap' }), 1);
  for (const reason of ['ttl', 'api', 'crash', 'shutdown']) {
    assert.equal(val(p, 'modelmux_model_unloads_total', { model: 'a', reason }), 0, reason);
  }
  assert.equal(val(p, 'modelmux_model_crashes_total', { model: 'a' }), 0);
  assert.equal(val(p, 'modelmux_requests_total', { model: 'b', route: 'chat', status: '200' }), 2);

  // Tokens: the sums of what the fake backend reported, streamed and not.
  assert.equal(val(p, 'modelmux_prompt_tokens_total', { model: 'a' }), usage.a[0]);
  assert.equal(val(p, 'modelmux_completion_tokens_total', { model: 'a' }), usage.a[1]);
  assert.equal(val(p, 'modelmux_prompt_tokens_total', { model: 'b' }), usage.b[0]);
  assert.equal(val(p, 'modelmux_completion_tokens_total', { model: 'b' }), usage.b[1]);
  assert.ok(usage.a[0] > 0 && usage.b[1] > 0);

  // Load histogram: one observation per start.
  for (const m of ['a', 'b']) {
    assert.equal(val(p, 'modelmux_model_load_duration_seconds_count', { model: m }),
      val(p, 'modelmux_model_starts_total', { model: m }), `load count == starts for ${m}`);
    assert.ok(val(p, 'modelmux_model_load_duration_seconds_sum', { model: m }) > 0);
    assert.equal(val(p, 'modelmux_model_load_duration_seconds_bucket', { model: m, le: '+Inf' }),
      val(p, 'modelmux_model_starts_total', { model: m }));
  }
  // Queue wait and time to first byte: one observation per granted / answered request.
  assert.equal(val(p, 'modelmux_time_to_first_byte_seconds_count', { model: 'a' }), 3);
  assert.equal(val(p, 'modelmux_queue_wait_seconds_count', { model: 'a' }), 3);

  // State: a runs, b is stopped; gauges idle.
  assert.equal(val(p, 'modelmux_model_state', { model: 'a', state: 'ready' }), 1);
  assert.equal(val(p, 'modelmux_model_state', { model: 'a', state: 'stopped' }), 0);
  assert.equal(val(p, 'modelmux_model_state', { model: 'b', state: 'stopped' }), 1);
  assert.equal(val(p, 'modelmux_model_state', { model: 'b', state: 'ready' }), 0);
  assert.equal(val(p, 'modelmux_queue_depth', { model: 'a' }), 0);
  assert.equal(val(p, 'modelmux_requests_in_flight', { model: 'a' }), 0);

  // Process gauges.
  assert.ok(val(p, 'modelmux_process_resident_memory_bytes') > 1024 * 1024, 'RSS over 1 MiB');
  assert.ok(val(p, 'modelmux_process_open_fds') > 2);
  assert.ok(val(p, 'modelmux_http_connections') >= 1, 'the scrape itself is a connection');

  // Errors count under their status; the unknown model under model="".
  h.assertError(await chat(d, 'nope'), 404);
  await scrapeUntil(d, (q) => {
    assert.equal(val(q, 'modelmux_requests_total', { model: '', route: 'chat', status: '404' }), 1);
  }, 'the 404 counted');
  await d.stop();
});

test('ttl, api and crash unloads are counted by reason; crashes_total counts the crash', async (t) => {
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: `startPort: ${port}
models:
  t:
    cmd: ${h.FAKE} --port \${PORT} --model t
    ttl: 1
  x:
    cmd: ${h.FAKE} --port \${PORT} --model x
  c:
    cmd: ${h.FAKE} --port \${PORT} --model c --chunks 5 --chunk-delay 20 --crash-after-chunks 2
`,
  });
  // TTL.
  assert.equal((await chat(d, 't')).status, 200);
  await d.waitLog(/sched model=t msg="unloading" reason=ttl/, 4000);
  await scrapeUntil(d, (q) => {
    assert.equal(val(q, 'modelmux_model_unloads_total', { model: 't', reason: 'ttl' }), 1);
  }, 'ttl unload counted');

  // API unload.
  assert.equal((await chat(d, 'x')).status, 200);
  const u = await h.post(`${d.url}/api/models/unload/x`, '');
  assert.equal(u.status, 200, u.text);
  const p1 = await scrape(d);
  assert.equal(val(p1, 'modelmux_model_unloads_total', { model: 'x', reason: 'api' }), 1);
  assert.equal(val(p1, 'modelmux_model_unloads_total', { model: 'x', reason: 'swap' }), 0);
  assert.equal(val(p1, 'modelmux_model_unloads_total', { model: 't', reason: 'swap' }), 0,
    'a model the ttl already stopped is not swapped');

  // Crash mid-stream.
  const s = await streamRaw(`${d.url}${CHAT}`, { model: 'c', stream: true, messages: [] });
  assert.equal(s.status, 200);
  assert.doesNotMatch(s.text, /\[DONE\]/);
  await d.waitLog(/sched model=c msg="backend exited unexpectedly"/);
  const p2 = await scrapeUntil(d, (q) => {
    assert.equal(val(q, 'modelmux_model_crashes_total', { model: 'c' }), 1);
  }, 'crash counted');
  assert.equal(val(p2, 'modelmux_model_unloads_total', { model: 'c', reason: 'crash' }), 1);
  assert.equal(val(p2, 'modelmux_model_starts_total', { model: 'c' }), 1);
  assert.equal(val(p2, 'modelmux_model_crashes_total', { model: 'x' }), 0, 'an API unload is no crash');
  assert.equal(val(p2, 'modelmux_model_crashes_total', { model: 't' }), 0, 'a ttl unload is no crash');
  assert.equal(val(p2, 'modelmux_model_state', { model: 'c', state: 'stopped' }), 1);
  for (const m of ['t', 'x', 'c']) {
    assert.equal(val(p2, 'modelmux_model_load_duration_seconds_count', { model: m }),
      val(p2, 'modelmux_model_starts_total', { model: m }), `load count == starts for ${m}`);
  }
  await d.stop();
});
