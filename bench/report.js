// Turns the bench driver's JSON lines into bench/results/latest.json and a table on stdout.
// usage: node report.js results.jsonl meta.json out.json
'use strict';

const fs = require('node:fs');

const [resFile, metaFile, outFile] = process.argv.slice(2);
const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
const lines = fs.readFileSync(resFile, 'utf8').split('\n').filter((l) => l.trim());
const R = {};
const ROUNDS = {};
for (const l of lines) {
  const o = JSON.parse(l);
  if (o.test.endsWith('_round')) ((ROUNDS[o.test.slice(0, -6)] ||= {})[o.path] ||= []).push(o);
  else (R[o.test] ||= {})[o.path] = o;
}
const get = (test, path) => (R[test] || {})[path];
// rounds of one test and path, summed: requests, seconds, errors
function summed(test, path) {
  const rs = (ROUNDS[test] || {})[path];
  if (!rs) return null;
  const n = rs.reduce((a, r) => a + (r.n ?? r.requests), 0), secs = rs.reduce((a, r) => a + r.secs, 0);
  return { n, secs, rps: n / secs, rounds: rs.length,
    errors: rs.reduce((a, r) => a + (r.errors || 0) + (r.non200 || 0) + (r.non2xx || 0), 0) };
}
const PROXIES = ['modelmux', 'nginx', 'haproxy'];
// Sections 1 and 2 also measure a modelmux at logLevel info (an access line per request), when
// the main one runs without (BENCH_MM_LOGLEVEL, default warn, as nginx and HAProxy log nothing).
const LOGGED = (R.lat1 || {}).modelmux_log ? ['modelmux_log'] : [];
const P12 = ['modelmux', ...LOGGED, 'nginx', 'haproxy'];
const label = (p) => (p === 'modelmux_log' ? 'modelmux, access log on' : p);
const f1 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(1));
const f0 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(0));
const ms1 = (us) => (us == null || Number.isNaN(us) ? 'n/a' : (us / 1000).toFixed(Math.abs(us) < 10000 ? 2 : 1));
const f2 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(2));
const mb = (kb) => (kb == null ? 'n/a' : (kb / 1024).toFixed(1));
const sub = (a, b) => (a == null || b == null ? null : a - b);

const out = { meta, targets: {}, results: {} };
const T = [];
const row = (...c) => T.push(`| ${c.join(' | ')} |`);
const head = (...c) => { row(...c); row(...c.map(() => '---')); };
const blank = () => T.push('');

// ---- 1. latency
const lat = {};
for (const p of P12) {
  lat[p] = {};
  for (const c of ['1', '64']) {
    const d = get(`lat${c}`, 'direct'), x = get(`lat${c}`, p);
    if (!d || !x) continue;
    lat[p][`c${c}`] = {
      p50: sub(x.lat_us.p50, d.lat_us.p50), p99: sub(x.lat_us.p99, d.lat_us.p99),
      p999: sub(x.lat_us.p999, d.lat_us.p999), errors: summed(`lat${c}`, p)?.errors,
    };
  }
}
out.results.added_latency_us = lat;
out.results.latency_direct_us = { c1: get('lat1', 'direct')?.lat_us, c64: get('lat64', 'direct')?.lat_us };

// ---- 2. throughput
const tp = {};
const dr = summed('rps64', 'direct')?.rps;
for (const p of ['direct', ...P12]) {
  const x = summed('rps64', p);
  if (x) tp[p] = { rps: x.rps, ratio: dr ? x.rps / dr : null, errors: x.errors, requests: x.n, secs: x.secs,
    loadgen_rps: summed('lat64', p)?.rps };
}
out.results.throughput_c64 = tp;

// ---- 3. SSE
const sse = {};
const ds = get('sse', 'direct');
for (const p of PROXIES) {
  const x = get('sse', p);
  if (!x || !ds) continue;
  sse[p] = {
    ttfe_added_p50_us: sub(x.ttfe_us.p50, ds.ttfe_us.p50), ttfe_added_p99_us: sub(x.ttfe_us.p99, ds.ttfe_us.p99),
    gap_added_p50_us: sub(x.gap_us.p50, ds.gap_us.p50), gap_added_p99_us: sub(x.gap_us.p99, ds.gap_us.p99),
    per_event_added_mean_us: sub(x.per_event_us.mean, ds.per_event_us.mean),
    errors: x.errors, events_min: x.events_min,
  };
}
out.results.sse = sse;
out.results.sse_direct = ds && { ttfe_us: ds.ttfe_us, gap_us: ds.gap_us, per_event_us: ds.per_event_us };

// ---- 4. hold
const hold = {};
for (const p of PROXIES) {
  const x = get('hold', p);
  if (x) hold[p] = { opened: x.opened, streams: x.streams, ended_early: x.ended_early, failed: x.failed_to_open,
    open_secs: x.open_secs, rss_before_kb: x.rss_before_kb, rss_open_kb: x.rss_open_kb, rss_peak_kb: x.rss_peak_kb, rss_end_kb: x.rss_end_kb,
    cpu_pct: x.cpu_pct, events: x.events_during_hold };
}
out.results.hold = hold;

// ---- 5. memory
const idle = get('idle', 'modelmux');
const gb = get('growth_before', 'modelmux'), ga = get('growth_after', 'modelmux'), g = get('growth', 'modelmux');
const anon = (x) => (x ? x.anon_kb + x.swap_kb : null);
out.results.memory = {
  idle_rss_kb: idle?.rss_kb, idle_anon_kb: idle?.anon_kb,
  growth_requests: g?.n, growth_errors: g ? g.errors + g.non200 : null, growth_rps: g?.rps,
  anon_swap_before_kb: anon(gb), anon_swap_after_kb: anon(ga), growth_kb: sub(anon(ga), anon(gb)),
  rss_after_hold_kb: get('after_hold', 'modelmux')?.rss_kb, rss_end_kb: get('end', 'modelmux')?.rss_kb,
};

// ---- 6. large bodies
const big = {};
for (const t of ['up_json', 'up_mp100', 'down_sse100', 'down_bytes100']) {
  big[t] = {};
  const d = get(t, 'direct');
  for (const p of ['direct', ...PROXIES]) {
    const x = get(t, p);
    big[t][p] = x ? { mbps: x.mbps, ratio: d ? x.mbps / d.mbps : null, status: x.status, bytes: x.bytes,
      rss_peak_kb: x.rss_peak_kb != null ? Math.max(x.rss_peak_kb, x.hwm_kb || 0) : null,
      rss_before_kb: x.rss_before_kb } : null;
  }
}
out.results.large = big;

// ---- 7. cold start / swap
const sp = get('spawn', 'direct'), cold = get('cold', 'modelmux'), sw = get('swap', 'modelmux');
out.results.start = {
  backend_start_to_healthy_p50_us: sp?.healthy_us.p50, backend_stop_p50_us: sp?.stop_us.p50,
  direct_first_ttfb_p50_us: sp?.first_ttfb_us.p50,
  cold_ttfb_p50_us: cold?.ttfb_us.p50, cold_ttfb_max_us: cold?.ttfb_us.max,
  cold_overhead_p50_us: sub(cold?.ttfb_us.p50, sp?.healthy_us.p50),
  swap_ttfb_p50_us: sw?.ttfb_us.p50, swap_ttfb_max_us: sw?.ttfb_us.max,
  swap_overhead_p50_us: sub(sw?.ttfb_us.p50, sp?.healthy_us.p50),
  errors: (cold?.errors || 0) + (sw?.errors || 0),
};

// ---- 8. llama-like backend
const llka = get('ll_ka', 'direct')?.lat_us, llnew = get('ll_new', 'direct')?.lat_us, llmm = get('ll_mm', 'modelmux')?.lat_us;
const llc8 = get('ll_c8', 'modelmux');
out.results.llama_like = {
  keepalive_direct_us: llka, new_conn_direct_us: llnew, modelmux_us: llmm,
  modelmux_minus_new_p50_us: sub(llmm?.p50, llnew?.p50), keepalive_minus_modelmux_p50_us: sub(llka?.p50, llmm?.p50),
  c8: llc8 && { lat_us: llc8.lat_us, errors: llc8.errors + llc8.non200, p99_over_p50: llc8.lat_us.p99 / llc8.lat_us.p50 },
};
const LL = out.results.llama_like;

// ---- targets
const st = out.results.start, mem = out.results.memory;
const tgt = (name, ok, value) => { out.targets[name] = { ok, value }; };
tgt('p50 added ≤ 50 µs (c=1)', lat.modelmux.c1?.p50 <= 50, lat.modelmux.c1?.p50);
tgt('p99 added ≤ 200 µs (c=1)', lat.modelmux.c1?.p99 <= 200, lat.modelmux.c1?.p99);
tgt('throughput ratio at c=64 ≥ HAProxy\'s', tp.modelmux?.ratio >= tp.haproxy?.ratio, tp.modelmux?.ratio);
tgt('first SSE event added < 1 ms (p50)', sse.modelmux?.ttfe_added_p50_us < 1000, sse.modelmux?.ttfe_added_p50_us);
tgt('idle RSS < 10 MB', idle?.rss_kb < 10240, idle?.rss_kb);
tgt(`${meta.hold_streams} streams < 64 MB`, hold.modelmux?.rss_peak_kb < 65536 && hold.modelmux?.opened === meta.hold_streams,
  hold.modelmux?.rss_peak_kb);
tgt('zero memory growth (RssAnon+VmSwap)', mem.growth_kb != null && mem.growth_kb <= 0, mem.growth_kb);
tgt('llama-like: p50 ≤ a new connection direct + 0.1 ms', LL.modelmux_minus_new_p50_us != null && LL.modelmux_minus_new_p50_us <= 100,
  LL.modelmux_minus_new_p50_us);
tgt('llama-like: p50 ≥ 20 ms under a keep-alive client direct', LL.keepalive_minus_modelmux_p50_us >= 20000,
  LL.keepalive_minus_modelmux_p50_us);
tgt('llama-like: 8 at once vs 3 HTTP threads, p99 < 2× p50', LL.c8 != null && LL.c8.errors === 0 && LL.c8.p99_over_p50 < 2,
  LL.c8?.p99_over_p50);

// ---- table
const ok = (b) => (b ? 'met' : '**missed**');
T.push(`modelmux benchmark — ${meta.date}, ${meta.host.nproc} CPUs (${meta.host.cpu}), Linux ${meta.host.kernel}; ` +
  `${meta.versions.modelmux}, nginx ${meta.versions.nginx}, HAProxy ${meta.versions.haproxy}, wrk ${meta.versions.wrk}; ` +
  `${meta.proxy_threads} nginx worker / HAProxy thread; modelmux logLevel ${meta.mm_loglevel}` +
  `${LOGGED.length ? ' (no access log, like nginx and HAProxy here; the "access log on" rows: info, its default)' : ''}, concurrencyLimit 1024, ${meta.rate_note}; run took ${meta.secs} s`);
blank();
head('Target (modelmux)', 'Measured', 'Verdict');
const t = out.targets;
const withLog = (v) => (LOGGED.length ? ` (access log on: ${v})` : '');
row('p50 added ≤ 50 µs, p99 added ≤ 200 µs (c=1)', `${f1(lat.modelmux.c1?.p50)} µs, ${f1(lat.modelmux.c1?.p99)} µs` +
  withLog(`${f1(lat.modelmux_log?.c1?.p50)} µs, ${f1(lat.modelmux_log?.c1?.p99)} µs`) +
  `; p50 of nginx ${f1(lat.nginx?.c1?.p50)} µs, HAProxy ${f1(lat.haproxy?.c1?.p50)} µs`,
  ok(t['p50 added ≤ 50 µs (c=1)'].ok && t['p99 added ≤ 200 µs (c=1)'].ok));
row('throughput ratio at c=64 ≥ HAProxy\'s', `${f2(tp.modelmux?.ratio)} vs ${f2(tp.haproxy?.ratio)}${withLog(f2(tp.modelmux_log?.ratio))}`,
  ok(t['throughput ratio at c=64 ≥ HAProxy\'s'].ok));
row('first SSE event added < 1 ms', `${f1(sse.modelmux?.ttfe_added_p50_us)} µs (p50)`, ok(t['first SSE event added < 1 ms (p50)'].ok));
row('idle RSS < 10 MB', `${mb(idle?.rss_kb)} MB`, ok(t['idle RSS < 10 MB'].ok));
row(`${meta.hold_streams} streams < 64 MB`, `${mb(hold.modelmux?.rss_peak_kb)} MB`, ok(t[`${meta.hold_streams} streams < 64 MB`].ok));
row('zero memory growth', `${f0(mem.growth_kb)} KB`, ok(t['zero memory growth (RssAnon+VmSwap)'].ok));
row('llama-like backend, small reply: p50 ≤ new connection direct + 0.1 ms', `${f1(LL.modelmux_minus_new_p50_us)} µs`,
  ok(t['llama-like: p50 ≤ a new connection direct + 0.1 ms'].ok));
row('llama-like backend, small reply: p50 ≥ 20 ms under a keep-alive client direct', `${ms1(LL.keepalive_minus_modelmux_p50_us)} ms`,
  ok(t['llama-like: p50 ≥ 20 ms under a keep-alive client direct'].ok));
row('llama-like backend, 8 at once vs 3 HTTP threads: p99 < 2× p50', `${f2(LL.c8?.p99_over_p50)}×`,
  ok(t['llama-like: 8 at once vs 3 HTTP threads, p99 < 2× p50'].ok));
blank();

T.push(`**1. Added latency** (small non-streaming chat request, µs, path minus direct; loadgen, every sample kept: ` +
  `${get('lat1', 'direct')?.lat_us.n} requests at c=1 and ${get('lat64', 'direct')?.lat_us.n} at c=64 per path, in interleaved rounds)`);
blank();
head('Path', 'c=1 p50', 'c=1 p99', 'c=1 p99.9', 'c=64 p50', 'c=64 p99', 'c=64 p99.9');
const dl1 = get('lat1', 'direct')?.lat_us, dl64 = get('lat64', 'direct')?.lat_us;
row('direct (absolute)', f1(dl1?.p50), f1(dl1?.p99), f1(dl1?.p999), f1(dl64?.p50), f1(dl64?.p99), f1(dl64?.p999));
for (const p of P12) {
  const a = lat[p].c1 || {}, b = lat[p].c64 || {};
  row(`${label(p)} (+)`, f1(a.p50), f1(a.p99), f1(a.p999), f1(b.p50), f1(b.p99), f1(b.p999));
}
blank();

T.push(`**2. Throughput** at concurrency 64 (wrk, ${summed('rps64', 'direct')?.rounds} rounds of ${f0(summed('rps64', 'direct')?.secs / summed('rps64', 'direct')?.rounds)} s per path, interleaved)`);
blank();
head('Path', 'req/s', 'ratio to direct', 'errors', 'req/s with loadgen (c=64)');
for (const p of ['direct', ...P12]) row(label(p), f0(tp[p]?.rps), f2(tp[p]?.ratio), tp[p]?.errors ?? 'n/a', f0(tp[p]?.loadgen_rps));
blank();

T.push('**3. SSE** (backend sends 200 events 5 ms apart; 64 streams, 16 at a time; µs added to direct)');
blank();
head('Path', 'first event p50', 'first event p99', 'event gap p50', 'event gap p99', 'mean per event');
if (ds) row('direct (absolute)', f1(ds.ttfe_us.p50), f1(ds.ttfe_us.p99), f1(ds.gap_us.p50), f1(ds.gap_us.p99), f1(ds.per_event_us.mean));
for (const p of PROXIES) {
  const s = sse[p] || {};
  row(`${p} (+)`, f1(s.ttfe_added_p50_us), f1(s.ttfe_added_p99_us), f1(s.gap_added_p50_us), f1(s.gap_added_p99_us),
    f1(s.per_event_added_mean_us));
}
blank();

T.push(`**4. ${meta.hold_streams} concurrent SSE streams held ${meta.hold_secs} s** (shortened from 30 s to fit 5 minutes; ` +
  'one event per stream per second; the proxy process only)');
blank();
head('Path', 'streams open', 'RSS before (MB)', 'RSS peak (MB)', 'per stream (KB)', 'CPU %');
for (const p of PROXIES) {
  const h = hold[p] || {};
  row(p, `${h.opened ?? 'n/a'}/${h.streams ?? ''}${h.ended_early ? ` (${h.ended_early} ended early)` : ''}`,
    mb(h.rss_before_kb), mb(h.rss_peak_kb), h.opened ? f0((h.rss_peak_kb - h.rss_before_kb) / h.opened) : 'n/a',
    f1(h.cpu_pct));
}
blank();

T.push('**5. Memory** (modelmux)');
blank();
head('Measure', 'Value');
row('idle RSS after start', `${mb(idle?.rss_kb)} MB (RssAnon ${mb(idle?.anon_kb)} MB)`);
row(`RssAnon+VmSwap growth over ${g?.n ?? 'n/a'} requests, swap every 1000`,
  `${f0(mem.growth_kb)} KB (${mb(mem.anon_swap_before_kb)} → ${mb(mem.anon_swap_after_kb)} MB; ` +
  `${mem.growth_errors ?? 'n/a'} errors, ${f0(mem.growth_rps)} req/s)`);
row(`RSS once the ${meta.hold_streams} held streams closed`, `${mb(mem.rss_after_hold_kb)} MB`);
row('RSS at the end of the run', `${mb(mem.rss_end_kb)} MB`);
blank();

T.push('**6. Large bodies** (median MB/s of 3, ratio to direct, peak RSS of the proxy process and its rise over the RSS before)');
blank();
head('Transfer', ...['direct', ...PROXIES]);
const cell = (x) => (x ? `${f0(x.mbps)} MB/s${x.ratio != null ? ` (${f2(x.ratio)})` : ''}${x.rss_peak_kb != null ? `, ${mb(x.rss_peak_kb)} MB (+${mb(x.rss_peak_kb - x.rss_before_kb)})` : ''}${x.status !== 200 ? `, HTTP ${x.status}` : ''}` : 'n/a');
const mbOf = (t) => (get(t, 'direct')?.bytes / 1e6 || 0).toFixed(0);
const notes = [];
const labels = {
  up_json: `${mbOf('up_json')} MB JSON upload (chat)${meta.json_up_bytes < 1e8 ? '¹' : ''}`,
  up_mp100: `${mbOf('up_mp100')} MB multipart upload (transcriptions)`,
  down_sse100: `${mbOf('down_sse100')} MB SSE response (chat)²`,
  down_bytes100: `${mbOf('down_bytes100')} MB response, GET /bytes (modelmux: /upstream/big/bytes)`,
};
for (const k of Object.keys(labels)) row(labels[k], ...['direct', ...PROXIES].map((p) => cell(big[k][p])));
blank();
if (meta.json_up_bytes < 1e8) notes.push('¹ modelmux refused `limits.maxJsonBodyBytes`, so the JSON upload stays under its 32 MiB default.');
notes.push('² the fake backend builds every event (about 650 bytes) and is the bottleneck here.');
notes.push('The fake backend reads JSON bodies over 1 MiB to the end and then answers 413. It does this on every path, so the upload figures are still comparable.');
T.push(notes.join('  \n'));
blank();

T.push('**7. Cold start and swap** (time to first byte minus the fake backend\'s own start-to-healthy time)');
blank();
head('Measure', 'p50 (ms)', 'max (ms)');
const ms = (us) => (us == null ? 'n/a' : (us / 1000).toFixed(1));
row('fake backend start-to-healthy, direct (polled every 1 ms)', ms(sp?.healthy_us.p50), ms(sp?.healthy_us.max));
row('cold start through modelmux: TTFB', ms(cold?.ttfb_us.p50), ms(cold?.ttfb_us.max));
row('**cold start overhead**', ms(st.cold_overhead_p50_us), '');
row('swap m1↔m2 through modelmux: TTFB (stop one, start the other)', ms(sw?.ttfb_us.p50), ms(sw?.ttfb_us.max));
row('**swap overhead** (fake backend stop alone: ' + ms(sp?.stop_us.p50) + ' ms)', ms(st.swap_overhead_p50_us), '');
blank();

T.push('**8. A llama-server-like backend** (the fake\'s `--llama-like` mode: head and body in two writes with Nagle on, ' +
  '3 HTTP threads each held by a connection until it has idled 5 s, /props total_slots; no concurrencyLimit: learned from /props)');
blank();
head('Path', 'p50 (ms)', 'p99 (ms)', 'max (ms)', 'requests');
const llrow = (name, d) => row(name, ms1(d?.p50), ms1(d?.p99), ms1(d?.max), d?.n ?? 'n/a');
llrow('small chat reply, direct, keep-alive client (curl)', llka);
llrow('small chat reply, direct, a new connection per request', llnew);
llrow('small chat reply, through modelmux (keep-alive client)', llmm);
llrow(`8 at once through modelmux, backend: 3 HTTP threads, 2 slots, 20 ms a reply (${LL.c8?.errors ?? 'n/a'} errors)`, LL.c8?.lat_us);
blank();

const table = T.join('\n');
out.table = table;
fs.writeFileSync(outFile, JSON.stringify(out, null, 2) + '\n');
process.stdout.write(table + '\n');
