// The video routes of `peekd serve` over real HTTP, on videos generated with
// ffmpeg lavfi at test time (video_lib.mjs: H.264/AAC MP4, HEVC/AC3 MKV,
// 10-bit H.264, VP9/Opus WebM, no audio at 29.97 fps, long GOP, a longer
// file for far seeks): fake Stash with --media-dir → peekd sync → serve
// with --path-map.  Direct play with Range (bodies compared byte for byte
// with the files), master and media playlists (RFC 8216), segments (each
// starts with a keyframe on the playlist's grid; the concatenation decodes
// cleanly with monotonic timestamps, also across a far-seek restart),
// Peek's proxy-stream paths, path traversal and bad ids, the token, the
// transcode limit (503 + Retry-After), HLS from Stash's stream (unmapped
// files, ffmpeg sends the ApiKey), and the API key never in a response.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  VIDEOS, genMedia, startServe, fakeAndStore, rawGet, parseMedia,
  videoPackets, audioDts, probe, decodeErrors,
} from './video_lib.mjs';

const KEY = 'K-video-key-never-shown-8812';
const TOKEN = 'video-token-3307';
const AUTH = { Authorization: `Bearer ${TOKEN}` };

let root;
let media;
let fake;
let store;
let A; // token, path map, Stash configured
const seen = []; // every response of every server: head + body (latin1)

async function get(srv, p, { headers = {}, auth = true, method = 'GET' } = {}) {
  const h = { ...headers };
  if (auth && srv === A) Object.assign(h, AUTH);
  const res = await fetch(srv.url + p, { method, headers: h });
  const body = Buffer.from(await res.arrayBuffer());
  seen.push(JSON.stringify([...res.headers]) + body.toString('latin1'));
  return { status: res.status, headers: res.headers, body, text: body.toString('utf8') };
}

function fileOf(v) { return path.join(media, v.file); }

async function waitSynced(srv, headers) {
  for (;;) {
    const r = await fetch(`${srv.url}/api/sync/status`, { headers });
    const j = await r.json();
    if (j.running === false && j.lastSuccess > 0) return;
    await new Promise((res) => setTimeout(res, 50));
  }
}

test.before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'peekd-video-'));
  media = path.join(root, 'media');
  genMedia(media);
  ({ fake, store } = await fakeAndStore(root, media, { apiKey: KEY }));
  A = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0', '--token', TOKEN,
    '--path-map', `/data/media=${media}`, '--stash-url', fake.url, '--api-key', KEY,
    '--sync-interval', '0', '--transcode-limit', '8', '--cache-dir', path.join(root, 'cacheA'),
    '--log-level', 'debug']);
  await waitSynced(A, AUTH);
});

test.after(async () => {
  if (A) {
    assert.equal(await A.stop(), 0, 'graceful shutdown');
    assert.ok(!A.log().includes(KEY), 'the key is never logged');
  }
  if (fake) await fake.stop();
  assert.ok(seen.length > 100, `${seen.length} responses`);
  for (const s of seen) assert.ok(!s.includes(KEY), `API key in a response: ${s.slice(0, 200)}`);
  fs.rmSync(root, { recursive: true, force: true });
});

// ---- Direct play --------------------------------------------------------------

// Deterministic pseudo-random ranges (LCG) over a file of `size` bytes.
function ranges(size) {
  let x = 12345;
  const rnd = (n) => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
  const out = [['bytes=0-0', 0, 0], [`bytes=0-${size - 1}`, 0, size - 1], [`bytes=${size - 1}-`, size - 1, size - 1],
    [`bytes=-${size}`, 0, size - 1], [`bytes=-${size + 100}`, 0, size - 1], [`bytes=10-${size + 5000}`, 10, size - 1], ['bytes=-1', size - 1, size - 1]];
  for (let i = 0; i < 12; i++) {
    const a = rnd(size);
    const b = a + rnd(size - a);
    out.push([`bytes=${a}-${b}`, a, b]);
    out.push([`bytes=${a}-`, a, size - 1]);
    const n = 1 + rnd(size);
    out.push([`bytes=-${n}`, size - n, size - 1]);
  }
  return out;
}

for (const [name, type] of [['h264', 'video/mp4'], ['vp9', 'video/webm']]) {
  test(`direct play of ${name}: 200, Range 206 byte-exact, 416, HEAD`, async () => {
    const v = VIDEOS[name];
    const file = fs.readFileSync(fileOf(v));
    const size = file.length;
    for (const route of ['stream', 'proxy-stream/stream']) {
      const p = `/api/scene/${v.id}/${route}`;
      const full = await get(A, p);
      assert.equal(full.status, 200, p);
      assert.equal(full.headers.get('content-type'), type);
      assert.equal(full.headers.get('content-length'), String(size));
      assert.equal(full.headers.get('accept-ranges'), 'bytes');
      assert.ok(full.body.equals(file), `${p}: body differs from the file`);
      for (const [h, a, b] of ranges(size)) {
        const r = await get(A, p, { headers: { Range: h } });
        assert.equal(r.status, 206, `${p} ${h}`);
        assert.equal(r.headers.get('content-range'), `bytes ${a}-${b}/${size}`, h);
        assert.equal(r.headers.get('content-length'), String(b - a + 1), h);
        assert.equal(r.headers.get('content-type'), type);
        assert.equal(r.headers.get('accept-ranges'), 'bytes');
        assert.ok(r.body.equals(file.subarray(a, b + 1)), `${p} ${h}: body differs`);
      }
      for (const h of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0']) {
        const r = await get(A, p, { headers: { Range: h } });
        assert.equal(r.status, 416, `${p} ${h}`);
        assert.equal(r.headers.get('content-range'), `bytes */${size}`, h);
      }
      // Malformed and multi-range headers are ignored (RFC 9110): 200.
      for (const h of ['bytes=5-2', 'bytes=0-1,4-5', 'items=0-1', 'bytes=abc']) {
        const r = await get(A, p, { headers: { Range: h } });
        assert.equal(r.status, 200, `${p} ${h}`);
        assert.equal(r.body.length, size);
      }
      const head = await rawGet(A.port, p, { ...AUTH, Range: 'bytes=100-199' }, 'HEAD');
      assert.equal(head.status, 206);
      assert.match(head.head, /\r\nContent-Length: 100(\r\n|$)/i);
      assert.equal(head.body.length, 0);
    }
  });
}

test('direct play refuses what a browser cannot play, and files that are not local', async () => {
  for (const v of [VIDEOS.hevc, VIDEOS.hi10]) {
    for (const route of ['stream', 'proxy-stream/stream']) {
      const r = await get(A, `/api/scene/${v.id}/${route}`, { headers: { Range: 'bytes=0-10' } });
      assert.equal(r.status, 404, `${v.file} ${route}`);
      assert.match(r.headers.get('content-type'), /json/);
    }
  }
  // Scene 9 has no media file: its mapped path does not exist, so the
  // source is Stash's stream, which direct play does not proxy.
  assert.equal((await get(A, '/api/scene/9/stream')).status, 404);
  assert.equal((await get(A, '/api/scene/999999/stream')).status, 404);
  assert.equal((await get(A, '/api/scene/1/stream', { method: 'POST' })).status, 405);
});

// ---- Playlists ------------------------------------------------------------------

function checkMaster(text) {
  const lines = text.trim().split('\n');
  assert.equal(lines[0], '#EXTM3U');
  const variants = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('#EXT-X-STREAM-INF:')) continue;
    const attrs = lines[i].slice(18);
    assert.match(attrs, /(^|,)BANDWIDTH=\d+/, lines[i]);
    assert.match(attrs, /(^|,)CODECS="avc1\.[0-9a-f]{6}(,mp4a\.40\.2)?"/, lines[i]);
    const res = /(^|,)RESOLUTION=(\d+)x(\d+)/.exec(attrs);
    assert.ok(res, lines[i]);
    const uri = lines[i + 1];
    assert.ok(uri && !uri.startsWith('#'), 'a URI follows every STREAM-INF');
    variants.push({ uri, w: Number(res[2]), h: Number(res[3]), audio: attrs.includes('mp4a') });
  }
  return variants;
}

/** RFC 8216 checks of a VOD media playlist; returns its segments. */
function checkMediaPlaylist(text, duration, frame) {
  const { tags, lines, segs } = parseMedia(text);
  assert.equal(lines[0], '#EXTM3U');
  assert.equal(tags.get('#EXT-X-VERSION'), '3');
  assert.equal(tags.get('#EXT-X-PLAYLIST-TYPE'), 'VOD');
  assert.equal(tags.get('#EXT-X-MEDIA-SEQUENCE'), '0');
  assert.equal(lines.at(-1), '#EXT-X-ENDLIST');
  const target = Number(tags.get('#EXT-X-TARGETDURATION'));
  assert.ok(Number.isInteger(target) && target > 0);
  assert.ok(segs.length > 0);
  for (const s of segs) {
    assert.ok(s.dur > 0 && Math.round(s.dur) <= target, `EXTINF ${s.dur} vs TARGETDURATION ${target}`);
  }
  const sum = segs.reduce((a, s) => a + s.dur, 0);
  assert.ok(Math.abs(sum - duration) <= frame + 0.001, `ΣEXTINF ${sum} vs duration ${duration}`);
  return segs;
}

function rate(v) { const [a, b = 1] = v.rate.split('/').map(Number); return a / b; }
function durationOf(v) { return Number(probe(fileOf(v)).format.duration); }

test('master playlists list the expected variants', async () => {
  const want = {
    h264: ['copy', '240p'], hevc: ['360p'], hi10: ['240p'], vp9: ['240p'], silent: ['copy', '240p'], gop: ['copy', '240p'],
  };
  for (const [k, rungs] of Object.entries(want)) {
    const v = VIDEOS[k];
    const r = await get(A, `/api/scene/${v.id}/hls/master.m3u8`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/vnd.apple.mpegurl');
    const vars = checkMaster(r.text);
    assert.deepEqual(vars.map((x) => x.uri), rungs.map((n) => `${n}/index.m3u8`), k);
    for (const x of vars) {
      assert.equal(x.audio, v.audio > 0, `${k} ${x.uri} audio codec`);
      assert.ok(x.w % 2 === 0 && x.h % 2 === 0 && x.h <= Number(v.size.split('x')[1]), `${k} ${x.uri} ${x.w}x${x.h}`);
    }
    for (const x of vars) {
      const pl = await get(A, `/api/scene/${v.id}/hls/${x.uri}`);
      assert.equal(pl.status, 200);
      assert.equal(pl.headers.get('content-type'), 'application/vnd.apple.mpegurl');
      const segs = checkMediaPlaylist(pl.text, durationOf(v), 1 / rate(v));
      segs.forEach((s, i) => assert.equal(s.uri, `${i}.ts`));
    }
  }
  // Scene 9: Stash's stream (not local): transcode rungs only, no copy.
  const r = await get(A, '/api/scene/9/hls/master.m3u8');
  assert.equal(r.status, 200);
  assert.ok(checkMaster(r.text).every((x) => x.uri !== 'copy/index.m3u8'));
});

// ---- Segments ------------------------------------------------------------------------

/** Fetches the segments of scene v / rung in `order` into dir. */
async function fetchSegments(srv, v, rung, order, dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const n of order) {
    const r = await get(srv, `/api/scene/${v.id}/hls/${rung}/${n}.ts`);
    assert.equal(r.status, 200, `${v.file} ${rung}/${n}.ts: ${r.text.slice(0, 200)}`);
    assert.equal(r.headers.get('content-type'), 'video/mp2t');
    assert.equal(r.headers.get('content-length'), String(r.body.length));
    assert.equal(r.body[0], 0x47, 'MPEG-TS sync byte');
    fs.writeFileSync(path.join(dir, `${n}.ts`), r.body);
  }
}

/** Every segment starts with a keyframe at pts(0) + the playlist boundary
 *  within one frame; the concatenation decodes without errors, with video
 *  timestamps strictly increasing and audio never stepping back more than
 *  one AAC frame. */
function checkStream(dir, segs, fps, { audio, width, height, copy = false }) {
  const n = segs.length;
  let bound = 0;
  let pts0 = null;
  const parts = [];
  for (let k = 0; k < n; k++) {
    const f = path.join(dir, `${k}.ts`);
    const pk = videoPackets(f);
    assert.ok(pk.length > 0, `segment ${k} has video`);
    assert.ok(pk[0].key, `segment ${k} starts with a keyframe`);
    if (k === 0) pts0 = pk[0].pts;
    const start = Math.min(...pk.map((p) => p.pts));
    assert.ok(Math.abs(start - pts0 - bound) <= 1 / fps + 0.002, `segment ${k} starts at ${start - pts0}, playlist says ${bound}`);
    bound += segs[k].dur;
    parts.push(fs.readFileSync(f));
  }
  // As a player reads it: a local copy of the playlist over the fetched
  // files, through ffmpeg's HLS demuxer.  (Each segment is a TS file of its
  // own, so continuity counters restart at every segment, as in any HLS
  // stream; that is why -xerror is not used.)
  const target = Math.ceil(Math.max(...segs.map((s) => s.dur)));
  const m3u = ['#EXTM3U', '#EXT-X-VERSION:3', `#EXT-X-TARGETDURATION:${target}`, '#EXT-X-PLAYLIST-TYPE:VOD'];
  segs.forEach((s, k) => m3u.push(`#EXTINF:${s.dur},`, `${k}.ts`));
  m3u.push('#EXT-X-ENDLIST', '');
  const pl = path.join(dir, 'local.m3u8');
  fs.writeFileSync(pl, m3u.join('\n'));
  let errs = decodeErrors(pl);
  // Copy variant: a restart seam can repeat < 1 AAC frame of audio (the
  // audio is re-encoded from the keyframe on; docs/VIDEO.md), which
  // ffmpeg's null muxer reports for the audio stream (1); the size of each
  // step back is checked below.  Video (0) must be clean.
  if (copy) errs = errs.split('\n').filter((l) => !/non monotonically increasing dts to muxer in stream 1: /.test(l)).join('\n').trim();
  assert.equal(errs, '', 'the stream decodes without errors');
  const all = path.join(dir, 'all.ts');
  fs.writeFileSync(all, Buffer.concat(parts));
  const pk = videoPackets(all);
  for (let i = 1; i < pk.length; i++) assert.ok(pk[i].dts > pk[i - 1].dts, `video dts ${pk[i - 1].dts} → ${pk[i].dts}`);
  // No frame lost or repeated at the cuts (or at restart seams).
  assert.ok(Math.abs(pk.length - Math.round(bound * fps)) <= 1, `${pk.length} frames for ${bound} s at ${fps} fps`);
  const total = pk.at(-1).pts - pts0;
  assert.ok(Math.abs(total - (bound - 1 / fps)) <= 2 / fps + 0.01, `last frame at ${total}, duration ${bound}`);
  const p = probe(all);
  const vs = p.streams.find((s) => s.codec_type === 'video');
  assert.equal(vs.codec_name, 'h264');
  assert.equal(vs.pix_fmt, 'yuv420p', 'browser-decodable 8-bit 4:2:0');
  if (width) assert.deepEqual([vs.width, vs.height], [width, height]);
  const as = p.streams.find((s) => s.codec_type === 'audio');
  assert.equal(Boolean(as), audio, 'audio stream present iff the source has audio');
  if (as) {
    assert.equal(as.codec_name, 'aac');
    const ad = audioDts(all);
    for (let i = 1; i < ad.length; i++) assert.ok(ad[i] - ad[i - 1] > -1024 / 48000 - 1e-6, `audio dts ${ad[i - 1]} → ${ad[i]}`);
  }
}

async function playlistOf(srv, v, rung) {
  const r = await get(srv, `/api/scene/${v.id}/hls/${rung}/index.m3u8`);
  assert.equal(r.status, 200);
  return parseMedia(r.text).segs;
}

const CASES = [
  ['h264', 'copy', 320, 240], ['h264', '240p', 320, 240], ['hevc', '360p', 640, 360], ['hi10', '240p', 320, 240],
  ['vp9', '240p', 320, 240], ['silent', '240p', 320, 240], ['silent', 'copy', 320, 240], ['gop', 'copy', 320, 240],
];
for (const [k, rung, w, h] of CASES) {
  test(`segments of ${VIDEOS[k].file} ${rung}: keyframe grid, clean decode`, async () => {
    const v = VIDEOS[k];
    const segs = await playlistOf(A, v, rung);
    const dir = path.join(root, `seg-${k}-${rung}`);
    await fetchSegments(A, v, rung, segs.map((_, i) => i), dir);
    checkStream(dir, segs, rate(v), { audio: v.audio > 0, width: w, height: h, copy: rung === 'copy' });
    if (k === 'gop') {
      // The copy variant cuts at the source's keyframes (every 6 s).
      for (const s of segs.slice(0, -1)) assert.ok(Math.abs(s.dur - 6) < 0.05, `long-GOP segment of ${s.dur} s`);
    }
    // Past the end: 404; a cached segment comes back identical.
    assert.equal((await get(A, `/api/scene/${v.id}/hls/${rung}/${segs.length}.ts`)).status, 404);
    const again = await get(A, `/api/scene/${v.id}/hls/${rung}/0.ts`);
    assert.ok(again.body.equals(fs.readFileSync(path.join(dir, '0.ts'))));
  });
}

for (const rung of ['240p', 'copy']) {
  test(`far seek on ${rung} restarts ffmpeg on the same grid`, async () => {
    const v = VIDEOS.long;
    const segs = await playlistOf(A, v, rung);
    const n = segs.length;
    assert.ok(n >= 8, `${n} segments`);
    const far = Math.floor(n * 0.75);
    // 0, 1, then far ahead (restart), back to 2 (restart behind), the rest.
    const order = [0, 1, far, far + 1, 2];
    for (let i = 3; i < n; i++) if (!order.includes(i)) order.push(i);
    const dir = path.join(root, `seek-${rung}`);
    await fetchSegments(A, v, rung, order, dir);
    // The first run was paused 10 segments ahead of its reader, so the far
    // request and the way back each started a run at their segment.
    for (const at of [0, far, 2])
      assert.match(A.log(), new RegExp(`scene ${v.id} ${rung}: ffmpeg \\d+ for segments ${at}\\.\\.`), `a run starting at ${at}`);
    checkStream(dir, segs, rate(v), { audio: true, width: 320, height: 240, copy: rung === 'copy' });
  });
}

test("Peek's proxy-stream/stream.m3u8: relative URIs under proxy-stream/", async () => {
  const v = VIDEOS.hevc;
  const base = `${A.url}/api/scene/${v.id}/proxy-stream/stream.m3u8?resolution=STANDARD_HD`;
  const r = await get(A, `/api/scene/${v.id}/proxy-stream/stream.m3u8?resolution=STANDARD_HD`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/vnd.apple.mpegurl');
  const segs = checkMediaPlaylist(r.text, durationOf(v), 1 / rate(v));
  for (const [i, s] of segs.entries()) {
    const u = new URL(s.uri, base);
    assert.equal(u.pathname, `/api/scene/${v.id}/proxy-stream/hls/360p/${i}.ts`);
  }
  const u = new URL(segs[0].uri, base);
  const seg = await get(A, u.pathname);
  assert.equal(seg.status, 200);
  assert.equal(seg.headers.get('content-type'), 'video/mp2t');
  const same = await get(A, `/api/scene/${v.id}/hls/360p/0.ts`);
  assert.ok(seg.body.equals(same.body), 'proxy-stream/hls/ and hls/ serve the same segment');
  // ORIGINAL on a remuxable source is the copy variant; LOW the smallest.
  const orig = await get(A, `/api/scene/${VIDEOS.h264.id}/proxy-stream/stream.m3u8?resolution=ORIGINAL`);
  assert.match(orig.text, /^hls\/copy\/0\.ts$/m);
  const low = await get(A, `/api/scene/${VIDEOS.hevc.id}/proxy-stream/stream.m3u8?resolution=LOW`);
  assert.match(low.text, /^hls\/360p\/0\.ts$/m);
});

// ---- Hostile paths, auth ----------------------------------------------------------------

test('path traversal, bad ids, bad rungs, bad segment numbers: 4xx', async () => {
  const bad = [
    '/api/scene/1/hls/../../../../etc/passwd', '/api/scene/1/hls/%2e%2e/%2e%2e/etc/passwd',
    '/api/scene/1/hls/240p/../../../../etc/passwd', '/api/scene/1/hls/240p/..%2f..%2fetc%2fpasswd',
    '/api/scene/1/hls/%2e%2e%2f%2e%2e%2fetc/0.ts', '/api/scene/1/hls/240p/%2e%2e.ts',
    '/api/scene/1/stream/../../../etc/passwd', '/api/scene/1/proxy-stream/../../etc/passwd',
    '/api/scene/1/hls//etc/passwd', '/api/scene/1/hls/240p//etc/passwd', '/api/scene//etc/passwd',
    '/api/scene/%2fetc%2fpasswd/stream', '/api/scene/../../etc/passwd', '/api/scene/1/../../../etc/passwd',
    '/etc/passwd', '/api/scene/abc/stream', '/api/scene/-1/stream', '/api/scene/0x1/stream',
    '/api/scene/99999999999999999999999999/stream', '/api/scene/1.5/stream', '/api/scene/ 1/stream',
    '/api/scene/1/hls/COPY/0.ts', '/api/scene/1/hls/1080p/0.ts', '/api/scene/1/hls/720p/index.m3u8',
    '/api/scene/1/hls/aaaaaaaaaaaaaaaa/0.ts', '/api/scene/1/hls/240p/00.ts', '/api/scene/1/hls/240p/-1.ts',
    '/api/scene/1/hls/240p/1e3.ts', '/api/scene/1/hls/240p/4294967296.ts', '/api/scene/1/hls/240p/99999.ts',
    '/api/scene/1/hls/240p/0.ts.ts', '/api/scene/1/hls/240p/0.mp4', '/api/scene/1/hls/240p/a/0.ts',
    '/api/scene/1/hls/master.m3u8/x', '/api/scene/1/caption', '/api/scene/1/proxy-stream/hls/../stream',
    '/api/scene/2/stream', '/api/scene/7/hls/copy/100.ts',
  ];
  const passwd = fs.readFileSync('/etc/passwd', 'latin1').slice(0, 20);
  for (const p of bad) {
    const r = await rawGet(A.port, p, AUTH);
    assert.ok(r.status >= 400 && r.status < 500, `${p} → ${r.status}`);
    assert.ok(!r.body.toString('latin1').includes(passwd), `${p} leaked a file`);
    seen.push(r.head + r.body.toString('latin1'));
  }
  // An absolute-form request target.
  const abs = await rawGet(A.port, 'http://127.0.0.1/etc/passwd', AUTH);
  assert.ok(abs.status >= 400 && abs.status < 500, `absolute form → ${abs.status}`);
});

test('the token is required on every video route', async () => {
  const routes = ['stream', 'proxy-stream/stream', 'hls/master.m3u8', 'hls/240p/index.m3u8', 'hls/240p/0.ts',
    'proxy-stream/stream.m3u8?resolution=LOW', 'proxy-stream/hls/240p/0.ts'];
  for (const r of routes) {
    const p = `/api/scene/1/${r}`;
    assert.equal((await get(A, p, { auth: false })).status, 401, p);
    assert.equal((await get(A, p, { auth: false, headers: { Authorization: 'Bearer wrong' } })).status, 401, p);
    assert.equal((await get(A, p)).status, 200, p);
  }
});

// ---- Stash as the source, transcode limit ------------------------------------------------

test('unmapped files play through Stash (ffmpeg sends the key); limit 1 → 503 + Retry-After', async () => {
  // No path map: every file is read from the fake's /scene/{id}/stream,
  // which refuses requests without the API key.
  const B = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0',
    '--stash-url', fake.url, '--api-key', KEY, '--sync-interval', '0', '--transcode-limit', '1',
    '--cache-dir', path.join(root, 'cacheB')]);
  try {
    await waitSynced(B, {});
    const v = VIDEOS.long;
    const m = await get(B, `/api/scene/${v.id}/hls/master.m3u8`);
    assert.equal(m.status, 200);
    assert.deepEqual(checkMaster(m.text).map((x) => x.uri), ['240p/index.m3u8'], 'no copy variant for a remote file');
    assert.equal((await get(B, `/api/scene/${v.id}/stream`)).status, 404, 'no direct play of a remote file');
    const segs = await playlistOf(B, v, '240p');
    const dir = path.join(root, 'remote');
    // Segment 0 starts the only run; it keeps transcoding after answering
    // (not yet paused: it pauses 10 segments ahead of the reader), so a
    // second job finds no slot.
    await fetchSegments(B, v, '240p', [0], dir);
    const busy = await get(B, `/api/scene/${VIDEOS.h264.id}/hls/240p/0.ts`);
    assert.equal(busy.status, 503, busy.text);
    assert.match(busy.headers.get('retry-after') || '', /^[1-9]\d*$/);
    assert.match(busy.headers.get('content-type'), /json/);
    // The same job still serves its reader.
    await fetchSegments(B, v, '240p', segs.map((_, i) => i).slice(1), dir);
    checkStream(dir, segs, rate(v), { audio: true, width: 320, height: 240 });
    // A scene without any file at Stash: ffmpeg fails, a 5xx, no key shown.
    const m9 = await get(B, '/api/scene/9/hls/master.m3u8');
    const first = checkMaster(m9.text)[0].uri.replace('index.m3u8', '0.ts');
    const none = await get(B, `/api/scene/9/hls/${first}`);
    assert.equal(none.status, 502, none.text);
  } finally {
    assert.equal(await B.stop(), 0);
  }
  assert.ok(!B.log().includes(KEY), 'the key is never logged');
});

// ---- the heap on huge pages (cmd/peekd.c, huge_heap) ----------------------------

test('serve runs re-executed with glibc.malloc.hugetlb=1 added; ffprobe and ffmpeg get the caller\'s GLIBC_TUNABLES', async () => {
  const envs = path.join(root, 'child-env');
  const wrap = (real) => {
    const f = path.join(root, `wrap-${real}`);
    fs.writeFileSync(f, `#!/bin/sh\n{ echo "== ${real}"; env; } >> '${envs}'\nexec ${real} "$@"\n`, { mode: 0o755 });
    return f;
  };
  const caller = 'glibc.malloc.arena_max=4';
  const C = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0',
    '--path-map', `/data/media=${media}`, '--sync-interval', '0', '--cache-dir', path.join(root, 'cacheC'),
    '--ffmpeg', wrap('ffmpeg'), '--ffprobe', wrap('ffprobe')], { env: { GLIBC_TUNABLES: caller } });
  try {
    // The environment the running image was executed with keeps the
    // caller's GLIBC_TUNABLES aside (glibc rewrites its own copy of the
    // variable in place, so that one is not compared).
    const pid = C.child.pid;
    const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes(`PEEKD_HUGE_HEAP=${caller}`), environ.filter((e) => /TUNABLES|HUGE/.test(e)).join(' '));
    // glibc's malloc (not ASan's) advises huge pages for the heap when the
    // kernel's THP mode is madvise: the [heap] mapping carries "hg".
    const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    const thp = fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');
    if (!/libasan/.test(maps) && /\[madvise\]/.test(thp)) {
      const heap = /\[heap\]\n[\s\S]*?VmFlags:([^\n]*)/.exec(fs.readFileSync(`/proc/${pid}/smaps`, 'utf8'));
      assert.ok(heap, 'a [heap] mapping');
      assert.match(heap[1], /\bhg\b/, `heap VmFlags:${heap[1]}`);
    }
    const v = VIDEOS.h264;
    assert.equal((await get(C, `/api/scene/${v.id}/hls/master.m3u8`)).status, 200);
    await fetchSegments(C, v, '240p', [0], path.join(root, 'hugeC'));
  } finally {
    assert.equal(await C.stop(), 0);
  }
  const dumps = fs.readFileSync(envs, 'utf8').split(/^== /m).filter(Boolean);
  assert.ok(dumps.some((d) => d.startsWith('ffmpeg')), 'ffmpeg ran');
  assert.ok(dumps.some((d) => d.startsWith('ffprobe')), 'ffprobe ran');
  for (const d of dumps) {
    const lines = d.split('\n');
    assert.ok(lines.includes(`GLIBC_TUNABLES=${caller}`), d.slice(0, 300));
    assert.ok(!lines.some((l) => l.startsWith('PEEKD_HUGE_HEAP=')), 'the mark is not passed on');
  }
  // A GLIBC_TUNABLES that names the tunable already is left alone: no re-exec.
  const D = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0', '--sync-interval', '0',
    '--cache-dir', path.join(root, 'cacheD')], { env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' } });
  try {
    const environ = fs.readFileSync(`/proc/${D.child.pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes('GLIBC_TUNABLES=glibc.malloc.hugetlb=0'));
    assert.ok(!environ.some((e) => e.startsWith('PEEKD_HUGE_HEAP=')));
    const heap = /\[heap\]\n[\s\S]*?VmFlags:([^\n]*)/.exec(fs.readFileSync(`/proc/${D.child.pid}/smaps`, 'utf8'));
    assert.ok(!heap || !/\bhg\b/.test(heap[1]), 'no advice with hugetlb=0');
  } finally {
    assert.equal(await D.stop(), 0);
  }
});
