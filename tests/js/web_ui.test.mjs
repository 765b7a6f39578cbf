// peekd's own web page (web/) in a real browser: Debian's Chromium driven by
// playwright-core.  The fake Stash (3000 scenes, seed 11, two generated clips
// as scenes 1-2) → `peekd sync --full` → `peekd serve --web-dir web --token`,
// then the page is used like a person would (sign-in form, sort, direction,
// search, tag/performer/studio autocomplete, chips, selects, paging, reload,
// back, scene view, video) and every grid it shows is compared with the
// API's answer to the request the test expects the page to send: the page's
// request must be exactly that body, and the shown count and card titles must
// equal the API's.  No console errors after sign-in.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { repoRoot, startFake, control } from './helpers.mjs';
import { runPeekd, cleanEnv, peekdBin, startProc, tmpDir } from './ops_lib.mjs';

const require = createRequire(path.join(repoRoot, 'tests', 'package.json'));
const { chromium } = require('playwright-core');

const CHROMIUM = '/usr/bin/chromium';
const SCENES = 3000;
const TOKEN = 'web-ui-token-2718';
const PER_PAGE = 24;
const WAIT = 20000;

let root, fake, serve, base, ctx, page;
const consoleErrors = []; // {text, signedIn}
const pageErrors = [];
const scenePosts = []; // bodies of the page's POST /api/library/scenes
let signedIn = false;

/** The API as the oracle (Bearer token; the page uses its cookie). */
async function api(p, body) {
  const res = await fetch(base + p, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(res.status, 200, `${p} ${JSON.stringify(body)}`);
  return res.json();
}

const browseBody = (filter = {}, sceneFilter = {}) => ({
  filter: { page: 1, per_page: PER_PAGE, sort: 'created_at', direction: 'DESC', ...filter },
  scene_filter: sceneFilter,
});

const isScenesPost = (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/library/scenes';

/** Runs action, waits for the page's scene request matching want (an exact
 *  body, or a predicate on it) and for the grid to render; then compares
 *  the grid with the API's answer to that body.  Returns the body. */
async function expectGrid(action, want) {
  const match = typeof want === 'function' ? want : (b) => { try { assert.deepEqual(b, want); return true; } catch { return false; } };
  const before = scenePosts.length;
  const resp = page.waitForResponse((r) => isScenesPost(r) && match(JSON.parse(r.request().postData())), { timeout: WAIT })
    .catch((e) => { throw new Error(`no scene request matching ${typeof want === 'function' ? want : JSON.stringify(want)}; the page sent ${JSON.stringify(scenePosts.slice(before))}: ${e.message}`); });
  await action();
  const r = await resp;
  assert.equal(r.status(), 200);
  const body = JSON.parse(r.request().postData());
  await page.waitForSelector('#results[aria-busy=false]', { timeout: WAIT });
  await compareGrid(body);
  return body;
}

async function compareGrid(body) {
  const want = (await api('/api/library/scenes', body)).findScenes;
  const shown = await page.locator('#total').textContent();
  assert.equal(Number(shown.replace(/[^0-9]/g, '')), want.count, `count for ${JSON.stringify(body)}`);
  assert.match(await page.locator('#time').textContent(), /\d+(\.\d+)? ms/);
  const titles = await page.locator('#grid .card-title').allTextContents();
  assert.deepEqual(titles, want.scenes.map((s) => s.title), `titles for ${JSON.stringify(body)}`);
  const ids = await page.locator('#grid .card').evaluateAll((els) => els.map((e) => e.dataset.id));
  assert.deepEqual(ids, want.scenes.map((s) => s.id));
  const pages = Math.max(1, Math.ceil(want.count / PER_PAGE));
  assert.equal(await page.locator('#pages').textContent(), pages.toLocaleString('en-US'));
  assert.equal(await page.locator('#page').inputValue(), String(body.filter.page));
  return want;
}

function ffmpeg(args) {
  const r = spawnSync('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', ...args], { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, `ffmpeg ${args.join(' ')}: ${r.stderr || r.error}`);
}

test.before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} missing: run make deps`);
  root = tmpDir('peekd-web-');
  const media = path.join(root, 'media');
  fs.mkdirSync(media);
  // Scene 1: VP9/Opus WebM (direct play); scene 2: H.264/AAC in Matroska
  // (not directly playable: HLS).
  const src = ['-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '2'];
  ffmpeg([...src, '-c:v', 'libvpx-vp9', '-b:v', '200k', '-deadline', 'realtime', '-cpu-used', '8', '-c:a', 'libopus', '-shortest', path.join(media, 'a_clip.webm')]);
  ffmpeg([...src, '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path.join(media, 'b_clip.mkv')]);

  fake = await startFake(['--scenes', String(SCENES), '--seed', '11', '--media-dir', media]);
  await control(fake.url, 'editScene', { id: '1', tags: ['3', '5'] }); // scene 1 (playable) has tag chips
  const store = path.join(root, 'store');
  const r = runPeekd(['sync', '--data', store, '--stash-url', fake.url, '--full'], { timeout: 120000 });
  assert.equal(r.code, 0, r.stderr);
  serve = startProc(peekdBin, ['serve', '--data', store, '--listen', '127.0.0.1:0', '--web-dir', path.join(repoRoot, 'web'),
    '--token', TOKEN, '--stash-url', fake.url, '--path-map', `/data/media=${media}`, '--sync-interval', '0',
    '--cache-dir', path.join(root, 'cache')], { env: cleanEnv() });
  base = (await serve.waitFor(/peekd ready: listening on (http:\/\/127\.0\.0\.1:\d+)/))[1];
  await serve.waitFor(/sync: sync done/); // the start-up sync: nothing changes under the page afterwards

  ctx = await chromium.launchPersistentContext(path.join(root, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push({ text: `${m.text()} (${m.location().url})`, signedIn }); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('request', (r) => { if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/library/scenes') scenePosts.push(JSON.parse(r.postData())); });
});

test.after(async () => {
  if (ctx) await ctx.close();
  if (serve) await serve.stop();
  if (fake) await fake.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

test('a 401 shows the sign-in form; signing in shows the first page', async () => {
  await page.goto(base + '/');
  await page.waitForSelector('#signin[open]');
  await page.fill('#signin-pass', 'wrong');
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#signin-error:not([hidden])');
  assert.equal(await page.locator('#signin-error').textContent(), 'Invalid credentials');
  await expectGrid(async () => {
    await page.fill('#signin-pass', TOKEN);
    await page.press('#signin-pass', 'Enter');
    await page.waitForSelector('#signin', { state: 'hidden' });
    signedIn = true;
  }, browseBody());
  assert.equal(Number((await page.locator('#total').getAttribute('data-count'))), SCENES);
  // The cards show what the API says.
  const first = (await api('/api/library/scenes', browseBody())).findScenes.scenes[0];
  const card = page.locator('#grid .card').first();
  assert.equal(await card.locator('img').getAttribute('src'), first.paths.screenshot);
  assert.equal(await card.locator('.card-link').getAttribute('href'), `#/scene/${first.id}`);
  assert.deepEqual(await card.locator('.chip').allTextContents(), first.tags.map((t) => t.name));
  if (first.performers.length) assert.equal(await card.locator('.performers').textContent(), first.performers.map((p) => p.name).join(', '));
  const img = await card.locator('img').evaluate((e) => e.decode().then(() => e.naturalWidth));
  assert.ok(img > 0, 'the screenshot through the proxy loads');
});

test('sort, direction, search and paging update the grid to the API answer', async () => {
  await expectGrid(() => page.selectOption('#sort', 'title'), browseBody({ sort: 'title' }));
  await expectGrid(() => page.click('#dir'), browseBody({ sort: 'title', direction: 'ASC' }));
  assert.equal(await page.locator('#dir').getAttribute('aria-label'), 'Sort direction: ascending');
  await expectGrid(() => page.selectOption('#sort', 'duration'), browseBody({ sort: 'duration', direction: 'ASC' }));

  // Deep pages: the page number input, then last / previous / first.
  const deep = browseBody({ sort: 'duration', direction: 'ASC', page: 100 });
  await expectGrid(async () => { await page.fill('#page', '100'); await page.press('#page', 'Enter'); }, deep);
  const last = Math.ceil(SCENES / PER_PAGE);
  await expectGrid(() => page.click('button[data-page=last]'), browseBody({ sort: 'duration', direction: 'ASC', page: last }));
  assert.ok(await page.locator('button[data-page=next]').isDisabled());
  await expectGrid(() => page.click('button[data-page=prev]'), browseBody({ sort: 'duration', direction: 'ASC', page: last - 1 }));
  // State lives in the hash: reload and back give the same answers.
  await expectGrid(() => page.reload(), browseBody({ sort: 'duration', direction: 'ASC', page: last - 1 }));
  await expectGrid(() => page.goBack(), browseBody({ sort: 'duration', direction: 'ASC', page: last }));
  await expectGrid(() => page.click('button[data-page=first]'), browseBody({ sort: 'duration', direction: 'ASC' }));

  // Search (typed key by key: debounced into one request for the whole word).
  const word = (await api('/api/library/scenes', browseBody({ per_page: 5 }))).findScenes.scenes
    .map((s) => s.title.split(/\s+/)[0]).find((w) => /^[A-Za-z]{4,}$/.test(w)).toLowerCase();
  await expectGrid(() => page.locator('#q').pressSequentially(word), browseBody({ sort: 'duration', direction: 'ASC', q: word }));
  assert.ok(Number(await page.locator('#total').getAttribute('data-count')) < SCENES);
  await expectGrid(() => page.fill('#q', ''), browseBody({ sort: 'duration', direction: 'ASC' }));

  // Shuffle: random_<seed>, the same seed again after a reload.
  const shuffled = await expectGrid(() => page.click('#shuffle'), (b) => /^random_\d+$/.test(b.filter.sort));
  assert.deepEqual(shuffled, browseBody({ sort: shuffled.filter.sort, direction: 'ASC' }));
  assert.equal(await page.locator('#sort').inputValue(), 'random');
  await expectGrid(() => page.reload(), shuffled);
  await expectGrid(() => page.click('.reset'), browseBody());
});

test('tag, performer and studio filters via autocomplete, chips and selects', async () => {
  // A tag with many scenes, picked by mouse from the autocomplete list.
  const top = (await api('/api/library/tags', { filter: { per_page: 1, sort: 'scene_count', direction: 'DESC' } })).findTags.tags[0];
  const auto = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/library/tags/minimal');
  await page.locator('#tags-input').pressSequentially(top.name.slice(0, 4));
  const req = JSON.parse((await auto).request().postData());
  assert.deepEqual(req, { filter: { q: top.name.slice(0, 4), per_page: 20 } });
  const tagFilter = (value, modifier = 'INCLUDES', depth = 0) => ({ tags: { value, modifier, depth } });
  await expectGrid(() => page.locator('#tags-list').getByRole('option', { name: top.name, exact: true }).click(),
    browseBody({}, tagFilter([top.id])));
  assert.deepEqual(await page.locator('.picker[data-kind=tags] .chip.selected').allTextContents(), [`${top.name} ×`]);
  // A second tag from a card's chip.
  const chip = page.locator(`#grid .card .chip:not([data-tag="${top.id}"])`).first();
  const second = await chip.getAttribute('data-tag');
  await expectGrid(() => chip.click(), browseBody({}, tagFilter([top.id, second])));
  await expectGrid(() => page.check('#tags-all'), browseBody({}, tagFilter([top.id, second], 'INCLUDES_ALL')));
  await expectGrid(() => page.check('#tags-sub'), browseBody({}, tagFilter([top.id, second], 'INCLUDES_ALL', -1)));
  // Names of the chips come back after a reload (looked up by id).
  await expectGrid(() => page.reload(), browseBody({}, tagFilter([top.id, second], 'INCLUDES_ALL', -1)));
  await page.waitForFunction(() => ![...document.querySelectorAll('.picker[data-kind=tags] .chip')].some((c) => c.textContent.startsWith('#')));
  // Remove the first tag with its chip.
  await expectGrid(() => page.click(`.picker[data-kind=tags] [data-remove="${top.id}"]`), browseBody({}, tagFilter([second], 'INCLUDES_ALL', -1)));
  await expectGrid(() => page.click('.reset'), browseBody());

  // A performer by keyboard: type, ArrowDown to the second option, Enter.
  const perf = (await api('/api/library/performers', { filter: { per_page: 1, sort: 'scene_count', direction: 'DESC' } })).findPerformers.performers[0];
  const q = perf.name.slice(0, 2);
  const options = (await api('/api/library/performers/minimal', { filter: { q, per_page: 20 } })).performers;
  assert.ok(options.length >= 2, `performers matching ${q}`);
  await page.locator('#performers-input').pressSequentially(q);
  await page.waitForFunction((n) => document.querySelectorAll('#performers-list [role=option]').length === n, options.length);
  assert.deepEqual(await page.locator('#performers-list [role=option]').allTextContents(), options.map((o) => o.name));
  await page.press('#performers-input', 'ArrowDown');
  assert.equal(await page.locator('#performers-input').getAttribute('aria-activedescendant'), 'performers-opt-1');
  await expectGrid(() => page.press('#performers-input', 'Enter'),
    browseBody({}, { performers: { value: [options[1].id], modifier: 'INCLUDES' } }));
  await expectGrid(() => page.check('#performers-all'),
    browseBody({}, { performers: { value: [options[1].id], modifier: 'INCLUDES_ALL' } }));
  await expectGrid(() => page.click('.reset'), browseBody());

  // A studio, the rating, resolution and organized selects.
  const studio = (await api('/api/library/studios', { filter: { per_page: 1, sort: 'scene_count', direction: 'DESC' } })).findStudios.studios[0];
  await page.locator('#studios-input').pressSequentially(studio.name);
  await page.waitForSelector('#studios-list [role=option]');
  const studioOpt = page.locator('#studios-list').getByRole('option', { name: studio.name, exact: true });
  const sf = { studios: { value: [studio.id], modifier: 'INCLUDES', depth: 0 } };
  await expectGrid(() => studioOpt.click(), browseBody({}, sf));
  await expectGrid(() => page.selectOption('#rating', '40'), browseBody({}, { ...sf, rating100: { value: 39, modifier: 'GREATER_THAN' } }));
  await expectGrid(() => page.selectOption('#rating', ''), browseBody({}, sf));
  await expectGrid(() => page.selectOption('#resolution', 'FULL_HD'), browseBody({}, { ...sf, resolution: { value: 'FULL_HD', modifier: 'EQUALS' } }));
  await expectGrid(() => page.selectOption('#organized', 'false'),
    browseBody({}, { ...sf, resolution: { value: 'FULL_HD', modifier: 'EQUALS' }, organized: false }));
  await expectGrid(() => page.click('.reset'), browseBody());
});

test('scene view: details, direct play, HLS, similar scenes, back', async () => {
  const s1 = await api('/api/library/scenes/1');
  assert.equal(s1.isStreamable, true);
  // Find scene 1 by searching its title, open it from its card.
  await expectGrid(() => page.fill('#q', s1.title), browseBody({ q: s1.title }));
  await page.click('#grid .card[data-id="1"] .card-link');
  await page.waitForSelector('#scene[aria-busy=false]');
  assert.equal(await page.locator('#scene-title').textContent(), s1.title);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'scene-title');
  assert.match(await page.locator('#video').getAttribute('src'), /^\/api\/scene\/1\/stream$/);
  await page.waitForFunction(() => document.querySelector('#video').readyState >= 2);
  assert.deepEqual(await page.locator('.details dd', { hasText: '/data/media/' }).allTextContents(), [s1.files[0].path]);
  const sim = await api('/api/library/scenes/1/similar?page=1');
  assert.ok(sim.scenes.length > 0);
  assert.deepEqual(await page.locator('#similar .card-title').allTextContents(), sim.scenes.map((s) => s.title));
  // Back to the results: the grid is still the search's.
  await page.click('#scene .back');
  await page.waitForSelector('#browse:not([hidden])');
  await compareGrid(browseBody({ q: s1.title }));
  await expectGrid(() => page.click('.reset'), browseBody());

  // Scene 2 (H.264 in Matroska) is not directly playable: HLS.  Chromium
  // builds with native HLS play the master playlist; others show its URL.
  const s2 = await api('/api/library/scenes/2');
  assert.equal(s2.isStreamable, false);
  await page.goto(`${base}/#/scene/2`);
  await page.waitForSelector('#scene[aria-busy=false]');
  const master = '/api/scene/2/hls/master.m3u8';
  const nativeHls = await page.evaluate(() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl') !== '');
  if (nativeHls) {
    assert.equal(await page.locator('#video').getAttribute('src'), master);
    await page.waitForFunction(() => document.querySelector('#video').readyState >= 2, null, { timeout: 60000 });
  } else {
    assert.equal(await page.locator('#hls-url').textContent(), base + master);
  }
  // A tag chip in the scene view goes back to browsing with that filter.
  assert.deepEqual(s1.tags.map((t) => t.id), ['3', '5']);
  await page.goto(`${base}/#/scene/1`);
  await page.waitForSelector('#scene[aria-busy=false] .details');
  assert.deepEqual(await page.locator('#scene .details .chip').allTextContents(), s1.tags.map((t) => t.name));
  await expectGrid(() => page.click('#scene .details [data-tag="5"]'),
    browseBody({}, { tags: { value: ['5'], modifier: 'INCLUDES', depth: 0 } }));
});

test('sync status strip and the metrics link', async () => {
  const st = await api('/api/sync/status');
  assert.equal(st.running, false);
  assert.match(await page.locator('#sync').textContent(), /^Sync: up to date, /);
  assert.equal(await page.locator('a.metrics').getAttribute('href'), '/metrics');
  const res = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.match(await res.text(), /peekd_scenes/);
});

test('no console errors after signing in, no uncaught exceptions', () => {
  assert.deepEqual(pageErrors, []);
  // Before signing in, the browser logs the 401 answers that open the form.
  for (const e of consoleErrors.filter((c) => !c.signedIn)) assert.match(e.text, /status of 401/);
  assert.deepEqual(consoleErrors.filter((c) => c.signedIn).map((c) => c.text), []);
});
