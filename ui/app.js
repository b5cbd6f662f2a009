// modelmux web page. Plain JavaScript, no framework, no build step. Every piece of data comes
// from the daemon's management routes; with keys configured each call carries the admin key
// (kept in this tab's sessionStorage, sent as a Bearer header, never shown). Text from the
// daemon is only ever set as textContent: nothing it says becomes markup.
'use strict';

const KEY = 'modelmux.adminKey';
const LOG_MAX = 2000;          // log lines kept in the page
const ACTIVITY_MAX = 500;      // activity rows kept in the page
const ACTIVITY_SHOWN = 100;    // rows in the table
const POLL_MS = 2000;
const POLL_HIDDEN_MS = 15000; // a tab in the background polls (and fills the access log) less
const pollMs = () => (document.hidden ? POLL_HIDDEN_MS : POLL_MS);
const $ = (sel) => document.querySelector(sel);

const ui = {
  health: null,      // last /api/health
  healthAt: 0,       // performance.now() when it came
  activity: [],
  activityLast: 0,
  keyWaiters: [],
  chat: [],          // {role, content}
  chatAbort: null,
  logAbort: null,
  eventsAbort: null,
};

// ---- elements ------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function notice(msg) {
  const n = $('#notice');
  n.textContent = msg || '';
  n.hidden = !msg;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function fmtS(s) {
  if (s === null || s === undefined) return '–';
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(s / 3600).toFixed(1)} h`;
}

// ---- the key and the calls ---------------------------------------------------------------

function askKey(why) {
  const d = $('#key-dialog');
  $('#key-why').textContent = why || 'This daemon requires an admin API key.';
  if (!d.open) d.showModal();
  $('#key-input').focus();
  return new Promise((resolve) => ui.keyWaiters.push(resolve));
}

function keyEntered() {
  const waiters = ui.keyWaiters;
  ui.keyWaiters = [];
  waiters.forEach((w) => w());
}

// fetch with the key; a 401, or a 403 asking for the admin key, asks for it and tries again.
async function api(path, opts = {}) {
  for (;;) {
    const headers = new Headers(opts.headers || {});
    const k = sessionStorage.getItem(KEY);
    if (k) headers.set('Authorization', `Bearer ${k}`);
    const res = await fetch(path, { ...opts, headers, cache: 'no-store', credentials: 'omit' });
    if (res.status !== 401 && res.status !== 403) return res;
    let msg = '';
    try { msg = (await res.clone().json()).error.message; } catch { /* not JSON */ }
    if (res.status === 403 && !/admin/.test(msg)) return res;
    if (k) sessionStorage.removeItem(KEY);
    notice(k ? 'That key was refused.' : 'An admin key is needed.');
    await askKey(k ? `The key was refused (${msg}). Enter an admin key.` : 'This daemon requires an admin API key.');
  }
}

async function apiJSON(path, opts) {
  const res = await api(path, opts);
  const body = await res.text();
  let doc = null;
  try { doc = JSON.parse(body); } catch { /* not JSON */ }
  if (!res.ok && res.status !== 503) {
    throw new Error(doc && doc.error ? doc.error.message : `${res.status} ${body.slice(0, 200)}`);
  }
  return doc;
}

// Reads a streaming body line by line until it ends or is aborted.
async function readLines(res, onLine) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}

// ---- tabs --------------------------------------------------------------------------------

function showTab() {
  const want = (location.hash || '#models').slice(1);
  const tab = ['models', 'activity', 'playground', 'logs'].includes(want) ? want : 'models';
  document.querySelectorAll('[data-panel]').forEach((p) => { p.hidden = p.dataset.panel !== tab; });
  document.querySelectorAll('[data-tab]').forEach((a) => a.classList.toggle('on', a.dataset.tab === tab));
  if (tab === 'activity') drawCharts();
}

// ---- models ------------------------------------------------------------------------------

function stateOf(m) {
  if (m.held_back) return { label: `held back ${fmtS(m.held_left_s)}`, cls: 's-held' };
  if (m.state === 'starting') return { label: `starting ${fmtMs(m.state_ms + (performance.now() - ui.healthAt))}`, cls: 's-starting' };
  return { label: m.state || 'unknown', cls: `s-${m.state}` };
}

function modelCard(m) {
  const card = el('div', 'card');
  card.dataset.model = m.id;
  const top = el('div', 'top');
  top.append(el('span', 'id', m.id));
  const st = stateOf(m);
  const badge = el('span', `state ${st.cls}`, st.label);
  badge.dataset.state = m.state;
  top.append(badge);
  card.append(top);
  if (m.name || m.description) card.append(el('div', 'muted small', [m.name, m.description].filter(Boolean).join(' — ')));

  const dl = el('dl');
  const row = (k, v) => { dl.append(el('dt', '', k), el('dd', '', v)); };
  row('in flight', `${m.inflight ?? 0} / ${m.concurrency ?? '?'}`);
  row('queued', m.queued ?? 0);
  if (m.state === 'ready') row('TTL left', m.ttl > 0 ? fmtS(m.ttl_left_s) + (m.ttl_left_s === null ? ' (busy)' : '') : 'never');
  else row('TTL', m.ttl > 0 ? fmtS(m.ttl) : 'never');
  row('group', m.group || '–');
  if (m.aliases && m.aliases.length) row('aliases', m.aliases.join(', '));
  if (m.peers && m.peers.length) row('peers', m.peers.join(', '));
  row('starts', m.starts ?? 0);
  if (m.reachable === false) row('backend', 'does not answer');
  card.append(dl);
  if (m.last_error) card.append(el('div', 'err', m.last_error));
  if (m.output && m.output.length) {
    const det = el('details');
    det.append(el('summary', 'muted small', 'last output'));
    const pre = el('pre');
    for (const line of m.output) {
      const p = parseLogLine(line);
      const div = el('div');
      renderAnsi(div, p.text);
      pre.append(div);
    }
    det.append(pre);
    det.open = Boolean(m.last_error || m.held_back);
    card.append(det);
  }
  const act = el('div', 'actions');
  const load = el('button', '', 'Load');
  load.type = 'button';
  load.dataset.act = 'load';
  load.disabled = m.state === 'ready' || m.state === 'starting';
  load.addEventListener('click', () => loadModel(m.id, load));
  const unload = el('button', 'ghost', 'Unload');
  unload.type = 'button';
  unload.dataset.act = 'unload';
  unload.disabled = m.state === 'stopped';
  unload.addEventListener('click', () => unloadModel(m.id, unload));
  act.append(load, unload);
  card.append(act);
  return card;
}

function renderModels() {
  const h = ui.health;
  if (!h) return;
  const pill = $('#health');
  pill.textContent = `${h.status} · v${h.version} · up ${fmtS(Math.round(h.uptime_seconds))}`;
  pill.className = `pill s-${h.status}`;
  pill.title = (h.warnings || []).join('\n') || 'daemon health';
  const list = $('#model-list');
  const openIds = new Set([...list.querySelectorAll('details[open]')].map((d) => d.closest('.card').dataset.model));
  const cards = h.models.map((m) => {
    const c = modelCard(m);
    const det = c.querySelector('details');
    if (det && openIds.has(m.id)) det.open = true;
    return c;
  });
  list.replaceChildren(...cards);
  const ready = h.models.filter((m) => m.state === 'ready').length;
  $('#models-summary').textContent = `${h.models.length} models, ${ready} ready, ${h.queue.queued} queued`;
  fillModelSelects(h.models);
}

// A starting model's elapsed time ticks between polls.
function tickStarting() {
  if (!ui.health) return;
  for (const m of ui.health.models) {
    if (m.state !== 'starting' || m.held_back) continue;
    const b = document.querySelector(`#model-list [data-model="${CSS.escape(m.id)}"] .state`);
    if (b) b.textContent = stateOf(m).label;
  }
}

let refreshTimer = null;
async function refreshModels() {
  clearTimeout(refreshTimer);
  try {
    ui.health = await apiJSON('/api/health');
    ui.healthAt = performance.now();
    renderModels();
    notice('');
  } catch (e) {
    notice(`Cannot read /api/health: ${e.message}`);
  }
  refreshTimer = setTimeout(refreshModels, pollMs());
}

function soon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshModels, 80);
}

const modelPath = (id) => encodeURIComponent(id).replace(/%2F/g, '/');

async function loadModel(id, btn) {
  btn.disabled = true;
  soon();
  try {
    await apiJSON(`/api/models/load/${modelPath(id)}`, { method: 'POST' });
  } catch (e) {
    notice(`Load ${id}: ${e.message}`);
  }
  soon();
}

async function unloadModel(id, btn) {
  btn.disabled = true;
  soon();
  try {
    const res = await api(`/api/models/unload/${modelPath(id)}`, { method: 'POST' });
    if (!res.ok) notice(`Unload ${id}: ${res.status} ${(await res.text()).slice(0, 200)}`);
  } catch (e) {
    notice(`Unload ${id}: ${e.message}`);
  }
  soon();
}

// /api/events: each state change refreshes the models at once (polling covers the rest).
async function followEvents() {
  for (;;) {
    ui.eventsAbort = new AbortController();
    try {
      const res = await api('/api/events', { signal: ui.eventsAbort.signal });
      if (res.ok) {
        await readLines(res, (line) => {
          if (!line.startsWith('data: ')) return;
          try {
            const ev = JSON.parse(line.slice(6));
            if (ev.type === 'modelStatus') soon();
          } catch { /* not ours */ }
        });
      }
    } catch { /* cut: try again */ }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

// ---- activity ----------------------------------------------------------------------------

const PALETTE = ['#3b5bdb', '#e8590c', '#2b8a3e', '#ae3ec9', '#0c8599', '#c92a2a', '#b08800', '#5f3dc4'];
const colourOf = (() => {
  const seen = new Map();
  return (model) => {
    if (!seen.has(model)) seen.set(model, PALETTE[seen.size % PALETTE.length]);
    return seen.get(model);
  };
})();

async function refreshActivity() {
  try {
    let doc = await apiJSON(`/api/activity?after=${ui.activityLast}`);
    if (doc && doc.last_id < ui.activityLast) { // the daemon restarted: its ids did too
      ui.activity = [];
      ui.activityLast = 0;
      doc = await apiJSON('/api/activity');
    }
    if (doc && doc.data.length) {
      ui.activity.push(...doc.data);
      if (ui.activity.length > ACTIVITY_MAX) ui.activity.splice(0, ui.activity.length - ACTIVITY_MAX);
      ui.activityLast = doc.data[doc.data.length - 1].id;
      renderActivity();
    }
    if (doc) $('#activity-summary').textContent = `last ${ui.activity.length} of ${doc.last_id} requests (the daemon keeps ${doc.capacity})`;
  } catch (e) {
    $('#activity-summary').textContent = `cannot read /api/activity: ${e.message}`;
  }
  setTimeout(refreshActivity, pollMs());
}

function renderActivity() {
  const rows = ui.activity.slice(-ACTIVITY_SHOWN).reverse().map((a) => {
    const tr = el('tr');
    tr.dataset.id = a.id;
    const td = (v, cls) => tr.append(el('td', cls || '', v));
    td(new Date(a.time * 1000).toLocaleTimeString());
    td(a.model);
    td(a.route + (a.stream ? ' (stream)' : ''));
    td(a.status, `num${a.status >= 400 ? ' bad' : ''}`);
    td(fmtMs(a.queued_ms), 'num');
    td(fmtMs(a.ttfb_ms), 'num');
    td(fmtMs(a.total_ms), 'num');
    td(a.prompt_tokens === null ? '–' : `${a.prompt_tokens} / ${a.completion_tokens}`, 'num');
    td(a.tokens_per_s === null ? '–' : a.tokens_per_s.toFixed(1), 'num');
    return tr;
  });
  $('#activity-table tbody').replaceChildren(...rows);
  drawCharts();
}

// One chart: each model's values over its requests, as a line with dots, on a canvas.
function drawChart(canvas, key) {
  if (canvas.offsetParent === null) return; // hidden tab: drawn when shown
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  const css = getComputedStyle(document.body);
  const fg = css.getPropertyValue('--muted').trim() || '#888';
  const line = css.getPropertyValue('--line').trim() || '#ccc';
  const pts = ui.activity.filter((a) => a[key] !== null && a[key] !== undefined);
  const left = 44;
  const bottom = h - 18;
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = fg;
  g.strokeStyle = line;
  if (!pts.length) {
    g.fillText('no data yet', left, h / 2);
    return;
  }
  const max = Math.max(...pts.map((a) => a[key])) * 1.1 || 1;
  const t0 = pts[0].time;
  const span = Math.max(pts[pts.length - 1].time - t0, 1);
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - 8) * (i / 4);
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - 6, y); g.stroke();
    const v = (max * i) / 4;
    g.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(1), 2, y + 4);
  }
  g.fillText(new Date(t0 * 1000).toLocaleTimeString(), left, h - 4);
  const models = [...new Set(pts.map((a) => a.model))];
  for (const m of models) {
    const mine = pts.filter((a) => a.model === m);
    g.strokeStyle = colourOf(m);
    g.fillStyle = colourOf(m);
    g.beginPath();
    mine.forEach((a, i) => {
      const x = left + ((w - left - 10) * (a.time - t0)) / span;
      const y = bottom - ((bottom - 8) * a[key]) / max;
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
    for (const a of mine) {
      const x = left + ((w - left - 10) * (a.time - t0)) / span;
      const y = bottom - ((bottom - 8) * a[key]) / max;
      g.beginPath(); g.arc(x, y, 2.5, 0, 2 * Math.PI); g.fill();
    }
  }
}

function drawCharts() {
  drawChart($('#chart-tps'), 'tokens_per_s');
  drawChart($('#chart-ttfb'), 'ttfb_ms');
  const models = [...new Set(ui.activity.map((a) => a.model))];
  $('#chart-legend').replaceChildren(...models.map((m) => {
    const s = el('span', '', m);
    s.style.setProperty('--sw', colourOf(m));
    return s;
  }));
}

// ---- playground --------------------------------------------------------------------------

function fillModelSelects(models) {
  for (const sel of [$('#chat-model'), $('#audio-model'), $('#log-source')]) {
    const keep = sel.value;
    const have = [...sel.options].map((o) => o.value).filter(Boolean).join('\n');
    const ids = models.filter((m) => !m.unlisted || sel.id === 'log-source').map((m) => m.id);
    if (have === ids.join('\n')) continue;
    const opts = ids.map((id) => { const o = el('option', '', id); o.value = id; return o; });
    if (sel.id === 'log-source') { const all = el('option', '', 'everything'); all.value = ''; opts.unshift(all); }
    sel.replaceChildren(...opts);
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }
}

function chatBubble(role, text) {
  const b = el('div', `msg ${role}`, text);
  $('#chat-out').append(b);
  $('#chat-out').scrollTop = $('#chat-out').scrollHeight;
  return b;
}

// While the answer has not begun: the model's state from the models view, ticking.
function progressWhileWaiting(model) {
  const p = $('#chat-progress');
  p.hidden = false;
  const t0 = performance.now();
  ui.loadingText = '';
  const tick = () => {
    const m = ui.health && ui.health.models.find((x) => x.id === model);
    const st = m ? stateOf(m).label : '';
    // sendLoadingState's own progress line, when the daemon sends one, comes first.
    const head = ui.loadingText || `waiting ${fmtMs(performance.now() - t0)}`;
    p.textContent = `${head}${st && st !== 'ready' ? ` — ${model} is ${st}` : ''}`;
  };
  tick();
  const timer = setInterval(tick, 250);
  return { tick, stop: () => { clearInterval(timer); p.hidden = true; } };
}

async function sendChat(ev) {
  ev.preventDefault();
  const model = $('#chat-model').value;
  const text = $('#chat-input').value.trim();
  if (!model || !text) return;
  $('#chat-input').value = '';
  ui.chat.push({ role: 'user', content: text });
  chatBubble('user', text);
  const out = chatBubble('assistant', '');
  out.classList.add('streaming');
  const progress = progressWhileWaiting(model);
  let waiting = true;
  const first = () => { if (waiting) { waiting = false; progress.stop(); } };
  ui.chatAbort = new AbortController();
  $('#chat-send').disabled = true;
  $('#chat-stop').hidden = false;
  soon();
  let answer = '';
  let loading = '';
  try {
    const res = await api('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, messages: ui.chat, stream: true }),
      signal: ui.chatAbort.signal,
    });
    if (!res.ok) {
      let msg = await res.text();
      try { msg = JSON.parse(msg).error.message; } catch { /* as is */ }
      throw new Error(`${res.status}: ${msg}`);
    }
    await readLines(res, (line) => {
      if (!line.startsWith('data:')) return;
      const data = line.slice(5).trim();
      if (data === '[DONE]') return;
      let j;
      try { j = JSON.parse(data); } catch { return; }
      if (j.error) throw new Error(j.error.message || 'stream error');
      const d = (j.choices && j.choices[0] && j.choices[0].delta) || {};
      // sendLoadingState: the daemon's loading progress comes as reasoning_content.
      if (d.reasoning_content && j.id === 'chatcmpl-modelmux-loading') {
        loading += d.reasoning_content;
        ui.loadingText = loading.trim().split('\n').pop();
        if (waiting) progress.tick();
        return;
      }
      if (d.content) {
        first();
        answer += d.content;
        out.textContent = answer;
        $('#chat-out').scrollTop = $('#chat-out').scrollHeight;
      }
    });
    ui.chat.push({ role: 'assistant', content: answer });
  } catch (e) {
    if (e.name !== 'AbortError') {
      out.classList.add('error');
      out.textContent = (answer ? `${answer}\n` : '') + e.message;
    }
    ui.chat.pop(); // the question goes unanswered: not kept in the history
  } finally {
    first();
    $('#chat-progress').hidden = true;
    out.classList.remove('streaming');
    out.classList.add('done');
    $('#chat-send').disabled = false;
    $('#chat-stop').hidden = true;
    ui.chatAbort = null;
    soon();
  }
}

async function sendAudio(ev) {
  ev.preventDefault();
  const file = $('#audio-file').files[0];
  const model = $('#audio-model').value;
  if (!file || !model) return;
  const out = $('#audio-out');
  out.textContent = `uploading ${file.name} (${Math.round(file.size / 1024)} kB)…`;
  $('#audio-send').disabled = true;
  const form = new FormData();
  form.append('model', model);
  form.append('file', file, file.name);
  try {
    const res = await api('/v1/audio/transcriptions', { method: 'POST', body: form });
    const body = await res.text();
    let doc = null;
    try { doc = JSON.parse(body); } catch { /* text */ }
    if (!res.ok) throw new Error(doc && doc.error ? doc.error.message : `${res.status} ${body.slice(0, 300)}`);
    out.textContent = doc && typeof doc.text === 'string' ? doc.text : body;
  } catch (e) {
    out.textContent = `failed: ${e.message}`;
  } finally {
    $('#audio-send').disabled = false;
    soon();
  }
}

// ---- logs --------------------------------------------------------------------------------

const UNESC = { n: '\n', t: '\t', '"': '"', '\\': '\\' };
// A log value as the daemon quotes it ("…" with \" \\ \n \t \xHH) back to its text.
function unquote(s) {
  return s.replace(/\\(x[0-9a-f]{2}|.)/g, (m, c) => (c[0] === 'x' && c.length === 3 ? String.fromCharCode(parseInt(c.slice(1), 16)) : UNESC[c] ?? c));
}

// "<time> <level> <module> rest": a backend line's text is its line="…" value.
function parseLogLine(line) {
  const m = /^(\S+) (\S+) (\S+) ?(.*)$/.exec(line);
  if (!m) return { time: '', level: '', module: '', text: line };
  const out = { time: m[1], level: m[2], module: m[3], text: m[4], model: '' };
  const mm = /(?:^| )model=("(?:[^"\\]|\\.)*"|\S+)/.exec(m[4]);
  if (mm) out.model = mm[1].startsWith('"') ? unquote(mm[1].slice(1, -1)) : mm[1];
  if (m[3] === 'backend') {
    const lm = / stream=(\S+) line="((?:[^"\\]|\\.)*)"/.exec(m[4]);
    if (lm) { out.stream = lm[1]; out.text = unquote(lm[2]); }
  }
  return out;
}

// Renders text with ANSI SGR colours as spans with classes; other escape sequences are dropped.
function renderAnsi(parent, text) {
  const st = { b: false, d: false, i: false, u: false, f: -1, g: -1 };
  const re = /\x1b\[([0-9;]*)([A-Za-z])|\x1b[^[]?/g;
  let last = 0;
  let m;
  const put = (s) => {
    if (!s) return;
    const cls = [st.b && 'a-b', st.d && 'a-d', st.i && 'a-i', st.u && 'a-u', st.f >= 0 && `f${st.f}`, st.g >= 0 && `b${st.g}`].filter(Boolean);
    if (!cls.length) { parent.append(document.createTextNode(s)); return; }
    parent.append(el('span', cls.join(' '), s));
  };
  while ((m = re.exec(text)) !== null) {
    put(text.slice(last, m.index));
    last = re.lastIndex;
    if (m[2] !== 'm') continue;
    const ps = (m[1] || '0').split(';').map((x) => (x === '' ? 0 : Number(x)));
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      if (p === 0) Object.assign(st, { b: false, d: false, i: false, u: false, f: -1, g: -1 });
      else if (p === 1) st.b = true;
      else if (p === 2) st.d = true;
      else if (p === 3) st.i = true;
      else if (p === 4) st.u = true;
      else if (p === 22) st.b = st.d = false;
      else if (p === 23) st.i = false;
      else if (p === 24) st.u = false;
      else if (p >= 30 && p <= 37) st.f = p - 30;
      else if (p >= 90 && p <= 97) st.f = p - 90 + 8;
      else if (p === 39) st.f = -1;
      else if (p >= 40 && p <= 47) st.g = p - 40;
      else if (p >= 100 && p <= 107) st.g = p - 100 + 8;
      else if (p === 49) st.g = -1;
      else if (p === 38 || p === 48) {
        // 256-colour and true colour: the first 16 map to ours, the rest are skipped.
        if (ps[i + 1] === 5) { const n = ps[i + 2]; if (n < 16) { if (p === 38) st.f = n; else st.g = n; } i += 2; }
        else if (ps[i + 1] === 2) i += 4;
      }
    }
  }
  put(text.slice(last));
}

function logRow(line) {
  const p = parseLogLine(line);
  const div = el('div', p.level === 'warn' || p.level === 'error' ? `l-${p.level}` : '');
  div.dataset.model = p.model || '';
  if (p.module === 'access' && PAGE_PATHS.test(line)) div.dataset.page = '1';
  const time = p.time.length > 19 ? p.time.slice(11, 23) : p.time;
  if (p.module === 'backend') {
    div.append(el('span', 't', `${time} `), el('span', 'm', `${p.model}${p.stream === 'stderr' ? '' : ` ${p.stream}`} `));
    renderAnsi(div, p.text);
  } else if (p.module) {
    div.append(el('span', 't', `${time} `), el('span', '', `${p.level} ${p.module} `));
    div.append(document.createTextNode(p.text));
  } else {
    div.textContent = line;
  }
  return div;
}

// The page's own calls (polling, feeds, its files) fill the access log: hidden unless asked.
const PAGE_PATHS = / access .*path="\/(api\/health|api\/activity|api\/events|logs\/stream[^"]*|ui\/[^"]*|)"/;

function logMatches(div) {
  const f = $('#log-filter').value.toLowerCase();
  if ($('#log-quiet').checked && div.dataset.page) return false;
  return !f || div.textContent.toLowerCase().includes(f);
}

let logPending = [];
let logFlushQueued = false;
function addLogLine(line) {
  logPending.push(line);
  if (logPending.length > LOG_MAX) logPending.splice(0, logPending.length - LOG_MAX);
  if (!logFlushQueued) {
    logFlushQueued = true;
    requestAnimationFrame(flushLog);
  }
}

// Lines are added once per frame, the oldest dropped past LOG_MAX, the view kept at the tail.
function flushLog() {
  logFlushQueued = false;
  const box = $('#log-lines');
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const frag = document.createDocumentFragment();
  for (const line of logPending) {
    const d = logRow(line);
    d.hidden = !logMatches(d);
    frag.append(d);
  }
  logPending = [];
  box.append(frag);
  while (box.childElementCount > LOG_MAX) box.firstElementChild.remove();
  if ($('#log-follow').checked && (atEnd || box.dataset.fresh)) box.scrollTop = box.scrollHeight;
  delete box.dataset.fresh;
}

async function followLogs() {
  const source = $('#log-source').value;
  if (ui.logAbort) ui.logAbort.abort();
  const ctl = new AbortController();
  ui.logAbort = ctl;
  $('#log-lines').replaceChildren();
  $('#log-lines').dataset.fresh = '1';
  logPending = [];
  while (!ctl.signal.aborted) {
    try {
      const res = await api(source ? `/logs/stream/${modelPath(source)}` : '/logs/stream', { signal: ctl.signal });
      if (!res.ok) throw new Error(`${res.status}`);
      await readLines(res, (line) => { if (!ctl.signal.aborted && line) addLogLine(line); });
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    if (ctl.signal.aborted) return;
    addLogLine('-- the log stream ended; reconnecting --');
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (ctl.signal.aborted) return;
    $('#log-lines').replaceChildren(); // the history comes again
  }
}

function refilterLogs() {
  for (const d of $('#log-lines').children) d.hidden = !logMatches(d);
}

// ---- start -------------------------------------------------------------------------------

function start() {
  window.addEventListener('hashchange', showTab);
  showTab();
  $('#key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('#key-input').value.trim();
    $('#key-input').value = '';
    if (!v) return;
    sessionStorage.setItem(KEY, v);
    $('#key-dialog').close();
    notice('');
    keyEntered();
  });
  $('#key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    $('#key-input').value = '';
    $('#key-dialog').close();
    notice('Key forgotten.');
  });
  $('#key-button').addEventListener('click', () => askKey('Enter an admin key (or forget the one in use).'));
  $('#unload-all').addEventListener('click', async () => {
    try { await api('/api/models/unload', { method: 'POST' }); } catch (e) { notice(e.message); }
    soon();
  });
  $('#chat-form').addEventListener('submit', sendChat);
  $('#chat-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $('#chat-form').requestSubmit(); }
  });
  $('#chat-stop').addEventListener('click', () => ui.chatAbort && ui.chatAbort.abort());
  $('#chat-clear').addEventListener('click', () => { ui.chat = []; $('#chat-out').replaceChildren(); });
  $('#audio-form').addEventListener('submit', sendAudio);
  $('#log-source').addEventListener('change', followLogs);
  $('#log-filter').addEventListener('input', refilterLogs);
  $('#log-quiet').addEventListener('change', refilterLogs);
  $('#log-clear').addEventListener('click', () => $('#log-lines').replaceChildren());
  window.addEventListener('resize', () => drawCharts());
  setInterval(tickStarting, 250);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) soon(); });
  refreshModels().then(() => {
    followEvents();
    refreshActivity();
    followLogs();
  });
}

start();
