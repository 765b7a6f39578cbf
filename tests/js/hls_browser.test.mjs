// End to end in a real browser: Debian's Chromium (headless, driven by
// playwright-core) loads a test page served by `peekd serve --web-dir`,
// which plays /api/scene/{id}/hls/master.m3u8 (same origin) with hls.js
// from npm.  Debian's Chromium decodes H.264 and AAC (checked first with
// MediaSource.isTypeSupported), so this is the real path: MPEG-TS segments
// made on demand by ffmpeg, transmuxed by hls.js to fMP4, decoded by
// Chromium.  Asserted: playback starts (currentTime advances), a far seek
// (which restarts ffmpeg) plays from the target, no fatal hls.js error,
// frames decoded; direct play of a VP9/Opus WebM and an H.264/AAC MP4
// through /stream (Range requests) plays and seeks too.
// PEEKD_SCREENSHOT=file.png saves a screenshot of the playing page.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { repoRoot } from './helpers.mjs';
import { VIDEOS, genMedia, startServe, fakeAndStore } from './video_lib.mjs';

const require = createRequire(path.join(repoRoot, 'tests', 'package.json'));
const { chromium } = require('playwright-core');
const CHROMIUM = '/usr/bin/chromium';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>peekd HLS test</title></head>
<body style="margin:0;background:#222">
<video id="v" muted playsinline width="640" height="480"></video>
<script src="hls.min.js"></script>
<script>
// state is read by the test through page.evaluate.
window.state = { fatal: null, errors: [], frags: [], playing: false, t0: performance.now(), tPlaying: 0 };
const v = document.getElementById('v');
v.addEventListener('playing', () => {
  if (!state.playing) state.tPlaying = performance.now() - state.t0;
  state.playing = true;
});
window.playHls = (src) => {
  const hls = new Hls({ startPosition: 0, maxBufferLength: 12 });
  window.hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) => {
    state.errors.push(d.type + ':' + d.details);
    if (d.fatal) state.fatal = d.type + ':' + d.details;
  });
  hls.on(Hls.Events.FRAG_LOADED, (_, d) => state.frags.push(d.frag.url));
  hls.loadSource(src);
  hls.attachMedia(v);
  hls.on(Hls.Events.MANIFEST_PARSED, () => v.play());
};
window.playDirect = (src) => { v.src = src; v.play(); };
window.frames = () => v.getVideoPlaybackQuality().totalVideoFrames;
</script></body></html>
`;

let root;
let fake;
let srv;
let ctx;
let page;
let ids; // key of VIDEOS → scene id

test.before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} (make deps installs it)`);
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'peekd-browser-'));
  const media = path.join(root, 'media');
  const web = path.join(root, 'web');
  ids = genMedia(media, ['h264', 'vp9', 'long']);
  fs.mkdirSync(web);
  fs.writeFileSync(path.join(web, 'test.html'), PAGE);
  fs.copyFileSync(path.join(repoRoot, 'tests', 'node_modules', 'hls.js', 'dist', 'hls.min.js'), path.join(web, 'hls.min.js'));
  let store;
  ({ fake, store } = await fakeAndStore(root, media));
  srv = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0', '--path-map', `/data/media=${media}`,
    '--web-dir', web, '--cache-dir', path.join(root, 'cache'), '--log-level', 'debug']);
  ctx = await chromium.launchPersistentContext(path.join(root, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
});

test.after(async () => {
  if (ctx) await ctx.close();
  if (srv) assert.equal(await srv.stop(), 0);
  if (fake) await fake.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

async function open() {
  page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const r = await page.goto(`${srv.url}/test.html`);
  assert.equal(r.status(), 200);
  return errors;
}

// Waits until currentTime passes `t` and keeps advancing (a later sample
// is larger), within `ms`.
async function playsPast(t, ms = 45000) {
  try {
    // Also ends on a fatal error (reported below) instead of waiting.
    const past = (x) => {
      const v = document.getElementById('v');
      return v.currentTime > x || Boolean(v.error) || Boolean(window.state.fatal);
    };
    await page.waitForFunction(past, t, { timeout: ms, polling: 50 });
    const a = await page.evaluate(() => document.getElementById('v').currentTime);
    await page.waitForFunction(past, a + 0.2, { timeout: ms, polling: 50 });
    const ok = await page.evaluate((x) => {
      const v = document.getElementById('v');
      return v.currentTime > x && !v.error && !window.state.fatal;
    }, a + 0.2);
    if (!ok) throw new Error('error while playing');
  } catch (e) {
    const st = await page.evaluate(() => {
      const v = document.getElementById('v');
      const b = [];
      for (let i = 0; i < v.buffered.length; i++) b.push([v.buffered.start(i), v.buffered.end(i)]);
      return { t: v.currentTime, ready: v.readyState, net: v.networkState, paused: v.paused, seeking: v.seeking,
        error: v.error && v.error.message, buffered: b, state: window.state };
    });
    throw new Error(`not playing past ${t}: ${JSON.stringify(st).slice(0, 3000)}`, { cause: e });
  }
}

test('Debian Chromium: MSE takes H.264/AAC (hls.js path) and VP9', async () => {
  const errors = await open();
  const caps = await page.evaluate(() => ({
    avc: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'),
    avcHigh: MediaSource.isTypeSupported('video/mp4; codecs="avc1.640028,mp4a.40.2"'),
    vp9: MediaSource.isTypeSupported('video/webm; codecs="vp9,opus"'),
    hls: Hls.isSupported(),
  }));
  assert.deepEqual(caps, { avc: true, avcHigh: true, vp9: true, hls: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('hls.js plays the master playlist; a far seek plays from the target', async () => {
  const errors = await open();
  const v = { ...VIDEOS.long, id: ids.long };
  const t0 = Date.now();
  await page.evaluate((src) => window.playHls(src), `/api/scene/${v.id}/hls/master.m3u8`);
  await playsPast(1.0);
  const tStart = (Date.now() - t0) / 1000;
  // Far seek: 45 s into the 60 s file, beyond what ffmpeg has produced
  // (the first run pauses 10 segments ahead of the reader), so the
  // segment request restarts ffmpeg there.
  const target = 45;
  const t1 = Date.now();
  await page.evaluate((x) => { document.getElementById('v').currentTime = x; }, target);
  await playsPast(target + 0.5);
  const tSeek = (Date.now() - t1) / 1000;
  const st = await page.evaluate(() => ({
    t: document.getElementById('v').currentTime, fatal: state.fatal, errors: state.errors,
    frags: state.frags, frames: window.frames(), level: hls.levels[hls.currentLevel]?.url?.[0] ?? '',
  }));
  if (process.env.PEEKD_SCREENSHOT) await page.screenshot({ path: process.env.PEEKD_SCREENSHOT });
  assert.equal(st.fatal, null, `fatal hls.js error; all: ${st.errors}`);
  assert.ok(st.t >= target && st.t < target + 15, `currentTime ${st.t} after seeking to ${target}`);
  assert.ok(st.frames > 0, 'frames decoded');
  // Segments came from peekd, including the far one.
  const seg = (u) => Number(/\/(\d+)\.ts$/.exec(u)?.[1]);
  assert.ok(st.frags.every((u) => new URL(u).pathname.startsWith(`/api/scene/${v.id}/hls/`)), st.frags.join(' '));
  assert.ok(st.frags.some((u) => seg(u) === 0), 'segment 0 loaded');
  const farSeg = Math.floor(target / 2);
  assert.ok(st.frags.some((u) => seg(u) === farSeg || seg(u) === farSeg - 1), `far segment loaded: ${st.frags}`);
  assert.match(srv.log(), new RegExp(`scene ${v.id} [a-z0-9]+: ffmpeg \\d+ for segments (${farSeg}|${farSeg - 1})\\.\\.`), 'ffmpeg restarted at the seek target');
  assert.deepEqual(errors, []);
  if (process.env.PEEKD_SCREENSHOT) console.log(srv.log().split('\n').filter((l) => / hls: /.test(l)).join('\n'));
  console.log(`# hls.js: playing after ${tStart.toFixed(2)} s, far seek playing after ${tSeek.toFixed(2)} s, ${st.frames} frames, fragments ${st.frags.map(seg).join(" ")}, non-fatal errors: ${st.errors.join(" ") || "none"}`);
  await page.close();
});

for (const [k, type] of [['vp9', 'video/webm'], ['h264', 'video/mp4']]) {
  test(`direct play of ${VIDEOS[k].file} (${type}) through /stream plays and seeks`, async () => {
    const errors = await open();
    const ranges = [];
    page.on('request', (r) => { if (r.url().endsWith('/stream')) ranges.push(r.headers().range || ''); });
    const v = { ...VIDEOS[k], id: ids[k] };
    await page.evaluate((src) => window.playDirect(src), `/api/scene/${v.id}/stream`);
    await playsPast(0.5);
    const target = v.t - 3;
    await page.evaluate((x) => { document.getElementById('v').currentTime = x; }, target);
    await playsPast(target + 0.3);
    const st = await page.evaluate(() => ({ t: document.getElementById('v').currentTime, frames: window.frames(), err: document.getElementById('v').error }));
    assert.equal(st.err, null);
    assert.ok(st.t >= target, `currentTime ${st.t}`);
    assert.ok(st.frames > 0, 'frames decoded');
    assert.ok(ranges.some((r) => r.startsWith('bytes=')), `Range requests: ${ranges}`);
    assert.deepEqual(errors, []);
    await page.close();
  });
}
