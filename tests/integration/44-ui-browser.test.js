// The web page in a real browser: Debian's Chromium, headless, driven by playwright-core. Load
// the page, see the models, load one and watch it turn ready, stream a chat (and see the loading
// progress of a model that has to start), upload audio for a transcription, see log lines (ANSI
// colours rendered) arrive, read the activity, unload; with keys, refused until the admin key is
// entered. No console error (a CSP violation is one). Without Chromium this test fails: it is
// part of `make test` and CI (.ci/deps test installs it); MM_SKIP_BROWSER=1 skips it, loudly.
//   MM_UI_SCREENSHOT=docs/ui.png  also writes the README's screenshot.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const h = require('./lib/harness');

const CHROMIUM = process.env.MM_CHROMIUM || '/usr/bin/chromium';
const ADMIN = 'sk-admin-browser-0123456789';
const USER = 'sk-user-browser-0123456789';
const T = 10000 * (process.env.MM_SANITIZE === '1' ? 2 : 1); // per step

function config(port, extra = '') {
  return `startPort: ${port}\n${extra}models:\n` +
    `  chat-a:\n    cmd: ${h.FAKE} --port \${PORT} --model chat-a --health-delay 700 --ansi --chunks 8 --chunk-delay 40\n` +
    '    name: Chat A\n    aliases: [a]\n    ttl: 600\n' +
    `  chat-b:\n    cmd: ${h.FAKE} --port \${PORT} --model chat-b --health-delay 900 --chunks 4 --chunk-delay 30\n` +
    '    sendLoadingState: true\n' +
    `  whisper:\n    cmd: ${h.FAKE} --port \${PORT} --model whisper --reply "the quick brown fox"\n`;
}

// A model that dies soon after each start, held back after its first crash.
const CRASHY = 'crashBackoff:\n  maxCrashes: 1\n  holdSeconds: 50\n';
const crashyModel = () => `  crashy:\n    cmd: ${h.FAKE} --port \${PORT} --model crashy --exit-after 150\n`;

async function launch(t) {
  if (process.env.MM_SKIP_BROWSER === '1') {
    t.diagnostic('MM_SKIP_BROWSER=1: the browser test is SKIPPED');
    t.skip('MM_SKIP_BROWSER=1');
    return null;
  }
  assert.ok(fs.existsSync(CHROMIUM),
    `${CHROMIUM} is missing: the web page's browser test needs Debian's chromium (.ci/deps test, or ` +
    'apt-get install chromium); MM_SKIP_BROWSER=1 skips it');
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  });
  t.after(() => browser.close());
  return browser;
}

// A page that records console errors and uncaught exceptions.
async function openPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 820 }, ...opts });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.setDefaultTimeout(T);
  return page;
}

const card = (id) => `#model-list [data-model="${id}"]`;
const stateIs = (id, s) => `${card(id)} .state[data-state="${s}"]`;

test('in Chromium: models, load, chat, audio, logs, activity, unload', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  const port = await h.freePorts(4);
  const d = await h.startDaemon(t, { config: config(port, CRASHY) + crashyModel() });
  const page = await openPage(browser);
  // Log errors the page's own calls would make are counted too: none are expected.

  await page.goto(`${d.url}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/', 'the browser is sent to the page');
  await page.waitForSelector(stateIs('chat-a', 'stopped'));
  await page.waitForSelector(stateIs('whisper', 'stopped'));
  assert.match(await page.textContent(card('chat-a')), /Chat A/);
  assert.match(await page.textContent(card('chat-a')), /aliases\s*a/);
  assert.match(await page.textContent('#health'), /healthy/);

  // Load: the state goes through starting (with its time) to ready.
  await page.click(`${card('chat-a')} button[data-act=load]`);
  await page.waitForSelector(stateIs('chat-a', 'starting'));
  assert.match(await page.textContent(`${card('chat-a')} .state`), /starting \d+ ms|starting [\d.]+ s/);
  await page.waitForSelector(stateIs('chat-a', 'ready'));
  assert.match(await page.textContent(card('chat-a')), /TTL left\s*(9|10) min/);

  // The chat streams: the answer grows before it is done.
  await page.click('a[data-tab=playground]');
  await page.selectOption('#chat-model', 'chat-a');
  await page.fill('#chat-input', 'Hello there');
  await page.click('#chat-send');
  await page.waitForSelector('.msg.assistant.streaming');
  const partial = await page.waitForFunction(() => {
    const m = document.querySelector('.msg.assistant.streaming');
    return m && m.textContent.length > 0 && m.textContent;
  });
  await page.waitForSelector('.msg.assistant.done');
  const answer = await page.textContent('.msg.assistant.done');
  assert.match(answer, /Hello from the modelmux demo backend/);
  assert.ok(answer.length > (await partial.jsonValue()).length, 'seen while streaming, then longer');
  assert.equal(await page.textContent('.msg.user'), 'Hello there');

  // A model that has to start first: the progress line says so until the first token, with
  // the daemon's own loading progress (sendLoadingState) when the model sends it.
  await page.click('#chat-clear');
  await page.selectOption('#chat-model', 'chat-b');
  await page.fill('#chat-input', 'Are you there?');
  await page.click('#chat-send');
  await page.waitForFunction(() => /^Loading model chat-b….* — chat-b is starting/.test(document.querySelector('#chat-progress').textContent));
  await page.waitForSelector('.msg.assistant.done');
  assert.match(await page.textContent('.msg.assistant.done'), /Hello from/);
  assert.equal(await page.isHidden('#chat-progress'), true);

  // Audio for a transcription model: multipart upload.
  await page.selectOption('#audio-model', 'whisper');
  await page.setInputFiles('#audio-file', { name: 'hello.wav', mimeType: 'audio/wav', buffer: Buffer.alloc(2048, 1) });
  await page.click('#audio-send');
  await page.waitForFunction(() => /quick brown fox|failed/.test(document.querySelector('#audio-out').textContent));
  assert.equal(await page.textContent('#audio-out'), 'the quick brown fox');

  // Logs: history and live lines; a backend's ANSI colours become classed spans.
  await page.click('a[data-tab=logs]');
  await page.waitForSelector('#log-lines div');
  const coloured = await page.waitForSelector('#log-lines span.f1.a-b');
  assert.equal(await coloured.textContent(), 'coloured');
  assert.equal(await page.textContent('#log-lines span.f2'), 'fake:');
  assert.equal(await page.locator('#log-lines', { hasText: '\x1b' }).count(), 0, 'no raw escape shown');
  // New lines arrive as they happen (an access line of a request made now).
  assert.equal((await h.post(`${d.url}/v1/chat/completions`, { model: 'a', messages: [] }, { 'X-Request-ID': 'browser-live-line' })).status, 200);
  await page.waitForSelector('#log-lines div:has-text("browser-live-line")');
  // Filtered by model: only its lines.
  await page.selectOption('#log-source', 'chat-b');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#log-lines div')];
    return rows.length > 0 && rows.every((r) => r.dataset.model === 'chat-b' || /^--/.test(r.textContent));
  });
  await page.fill('#log-filter', 'ready');
  const shown = await page.$$eval('#log-lines div:not([hidden])', (rows) => rows.map((r) => r.textContent));
  assert.ok(shown.length > 0 && shown.every((s) => /ready/i.test(s)), shown.join('\n'));

  // Activity: the requests so far, charts drawn.
  await page.click('a[data-tab=activity]');
  await page.waitForFunction(() => document.querySelectorAll('#activity-table tbody tr').length >= 4);
  const rows = await page.$$eval('#activity-table tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(rows.some((r) => /chat-a.*chat \(stream\).*200/.test(r)), rows.join('\n'));
  assert.ok(rows.some((r) => /whisper.*transcriptions.*200/.test(r)), rows.join('\n'));
  assert.match(await page.textContent('#chart-legend'), /chat-a/);
  const inked = await page.$eval('#chart-ttfb', (c) => {
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i]) n++;
    return n;
  });
  assert.ok(inked > 100, 'the chart is drawn');

  // Unload: back to stopped.
  await page.click('a[data-tab=models]');
  await page.click(`${card('chat-a')} button[data-act=unload]`);
  await page.waitForSelector(stateIs('chat-a', 'stopped'));

  // A crash loop: the model is held back, with its error and last output shown.
  assert.equal((await h.post(`${d.url}/v1/chat/completions`, { model: 'crashy', messages: [] })).status, 200);
  await d.waitLog(/sched model=crashy msg="crash loop: holding back"/);
  await page.waitForSelector(`${card('crashy')} .state.s-held`);
  assert.match(await page.textContent(`${card('crashy')} .state`), /^held back \d+ s$/);
  assert.match(await page.textContent(`${card('crashy')} .err`), /exited/);
  assert.equal(await page.$eval(`${card('crashy')} details`, (e) => e.open), true);
  assert.match(await page.textContent(`${card('crashy')} details pre`), /fake: ready/);

  if (process.env.MM_UI_SCREENSHOT) {
    // The README's picture: a model ready with its last output, the others stopped.
    await page.click(`${card('chat-a')} button[data-act=load]`);
    await page.waitForSelector(stateIs('chat-a', 'ready'));
    await page.waitForSelector(`${card('chat-a')} details`);
    await page.click(`${card('chat-a')} details summary`);
    await page.setViewportSize({ width: 1100, height: 560 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: process.env.MM_UI_SCREENSHOT, fullPage: false });
  }
  assert.deepEqual(page.errors, [], 'no console errors (a CSP violation is one)');
  await d.stop();
});

test('in Chromium: with keys, the page refuses until the admin key is entered; phone width, dark', async (t) => {
  const browser = await launch(t);
  if (!browser) return;
  const port = await h.freePorts(3);
  const d = await h.startDaemon(t, {
    config: config(port, `apiKeys:\n  - "${USER}"\n  - {key: "${ADMIN}", admin: true}\n`),
  });
  const page = await openPage(browser, { viewport: { width: 390, height: 800 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  // The refusals the page meets before the key are expected console noise: counted apart.
  await page.goto(`${d.url}/`);
  await page.waitForSelector('#key-dialog[open]');
  assert.equal(await page.locator('#model-list .card').count(), 0, 'nothing shown without the key');
  // A user key is not enough: asked again, told why.
  await page.fill('#key-input', USER);
  await page.click('#key-save');
  await page.waitForFunction(() => /refused/.test(document.querySelector('#key-why').textContent) &&
    document.querySelector('#key-dialog').open);
  assert.equal(await page.locator('#model-list .card').count(), 0);
  // The admin key: the page works, the key is nowhere on it.
  await page.fill('#key-input', ADMIN);
  await page.click('#key-save');
  await page.waitForSelector(stateIs('chat-a', 'stopped'));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('modelmux.adminKey')), ADMIN);
  assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie');
  const html = await page.content();
  assert.ok(!html.includes(ADMIN) && !html.includes(USER), 'the key is never shown');
  assert.equal(await page.inputValue('#key-input'), '');
  await page.click(`${card('chat-a')} button[data-act=load]`);
  await page.waitForSelector(stateIs('chat-a', 'ready'));
  // Phone width: nothing wider than the screen; dark colours.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const lum = bg.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0);
  assert.ok(lum < 150, `a dark background: ${bg}`);
  await page.click('a[data-tab=logs]');
  await page.waitForSelector('#log-lines div');
  // Only the refusals of the key-less calls (401, 403) may have reached the console.
  assert.deepEqual(page.errors.filter((e) => !/status of 40[13]/.test(e)), []);
  await d.stop();
});
