// Helpers shared by the video tests (video_http, hls_browser): small test
// videos generated with ffmpeg lavfi at test time (never committed), the
// fake Stash with --media-dir → `peekd sync` → `peekd serve --path-map`,
// raw HTTP, playlist parsing, and ffprobe/ffmpeg checks of segments.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { peekdBin, cleanEnv, runPeekd } from './ops_lib.mjs';
import { startFake } from './helpers.mjs';

// The library of test videos.  The fake gives the files of the media dir,
// sorted by name, to scenes 1..K: the name prefix fixes the scene id.
const SINE = (f) => ['-f', 'lavfi', '-i', `sine=frequency=${f}:sample_rate=48000`];
const X264 = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
export const VIDEOS = {
  h264: { id: 1, file: 'a_h264.mp4', size: '320x240', rate: '25', t: 10, audio: 1000, args: [...X264, '-g', '50', '-c:a', 'aac', '-b:a', '64k', '-movflags', '+faststart'] },
  hevc: { id: 2, file: 'b_hevc.mkv', size: '640x360', rate: '24000/1001', t: 6, audio: 700, args: ['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error', '-c:a', 'ac3'] },
  hi10: { id: 3, file: 'c_hi10.mp4', size: '320x240', rate: '25', t: 6, audio: 800, args: ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p10le', '-g', '50', '-c:a', 'aac', '-b:a', '64k'] },
  vp9: { id: 4, file: 'd_vp9.webm', size: '320x240', rate: '25', t: 6, audio: 900, args: ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-g', '50', '-c:a', 'libopus'] },
  silent: { id: 5, file: 'e_silent.mp4', size: '320x240', rate: '30000/1001', t: 8, audio: 0, args: [...X264, '-g', '60'] },
  gop: { id: 6, file: 'f_gop.mp4', size: '320x240', rate: '25', t: 16, audio: 600, args: [...X264, '-g', '150', '-keyint_min', '150', '-sc_threshold', '0', '-c:a', 'aac', '-b:a', '64k'] },
  long: { id: 7, file: 'g_long.mp4', size: '320x240', rate: '25', t: 60, audio: 500, args: [...X264, '-g', '50', '-c:a', 'aac', '-b:a', '64k'] },
};

/** Generates the videos named in `which` (keys of VIDEOS) into dir.
 *  Returns key → scene id (the fake numbers the files by sorted name; the
 *  ids in VIDEOS hold when every video is generated). */
export function genMedia(dir, which = Object.keys(VIDEOS)) {
  fs.mkdirSync(dir, { recursive: true });
  for (const k of which) {
    const v = VIDEOS[k];
    const args = ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=${v.size}:rate=${v.rate}`];
    if (v.audio) args.push(...SINE(v.audio));
    args.push('-t', String(v.t), ...v.args);
    if (v.audio) args.push('-shortest');
    args.push(path.join(dir, v.file));
    const r = spawnSync('ffmpeg', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ffmpeg ${v.file}: ${r.stderr}`);
  }
  const ids = {};
  [...which].sort((a, b) => (VIDEOS[a].file < VIDEOS[b].file ? -1 : 1)).forEach((k, i) => { ids[k] = i + 1; });
  return ids;
}

/** Starts `peekd serve` with args; resolves at its readiness line. */
export function startServe(args, { env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(peekdBin, args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let all = '';
    let ready = false;
    const on = (d) => {
      all += d;
      const m = !ready && /peekd ready: listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(all);
      if (m) {
        ready = true;
        resolve({ child, url: m[1], port: Number(m[2]), log: () => all, stop: () => stopServe(child) });
      }
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => { if (!ready) reject(new Error(`peekd serve exited (${code}): ${all}`)); });
  });
}

/** SIGTERM and wait; resolves with the exit code. */
export function stopServe(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** Media dir → fake Stash (n scenes) → peekd sync into <root>/<name>. */
export async function fakeAndStore(root, media, { scenes = 12, apiKey } = {}) {
  const args = ['--scenes', String(scenes), '--seed', '5', '--media-dir', media];
  if (apiKey) args.push('--api-key', apiKey);
  const fake = await startFake(args);
  const store = path.join(root, 'store');
  const sargs = ['sync', '--data', store, '--stash-url', fake.url, '--full'];
  if (apiKey) sargs.push('--api-key', apiKey);
  const r = runPeekd(sargs, { timeout: 120000 });
  if (r.code !== 0) throw new Error(`peekd sync: ${r.stderr}`);
  return { fake, store };
}

/** A raw HTTP/1.1 GET: the target goes out byte for byte (no client-side
 *  normalisation of "..").  Resolves {status, head, body (Buffer)}. */
export function rawGet(port, target, headers = {}, method = 'GET') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('end', () => {
      const buf = Buffer.concat(chunks);
      const i = buf.indexOf('\r\n\r\n');
      const head = buf.subarray(0, i < 0 ? buf.length : i).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, head, body: i < 0 ? Buffer.alloc(0) : buf.subarray(i + 4) });
    });
    let h = '';
    for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
    s.write(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${h}\r\n`);
  });
}

/** Parses a media playlist: {tags: Map name → value (first), lines, segs:
 *  [{dur, uri}]}.  Throws on lines RFC 8216 does not allow. */
export function parseMedia(text) {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const tags = new Map();
  const segs = [];
  let dur = null;
  for (const l of lines) {
    if (l.startsWith('#EXTINF:')) {
      dur = Number(l.slice(8).split(',')[0]);
    } else if (l.startsWith('#EXT')) {
      const j = l.indexOf(':');
      const name = j < 0 ? l : l.slice(0, j);
      if (!tags.has(name)) tags.set(name, j < 0 ? '' : l.slice(j + 1));
    } else if (l.length) {
      if (dur === null) throw new Error(`URI without EXTINF: ${l}`);
      segs.push({ dur, uri: l });
      dur = null;
    }
  }
  return { tags, lines, segs };
}

/** {pts, key} of every video packet of a file (ffprobe), in file order. */
export function videoPackets(file) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,dts_time,flags', '-of', 'csv=p=0', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`ffprobe ${file}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => {
    const [pts, dts, flags] = l.split(',');
    return { pts: Number(pts), dts: Number(dts), key: flags.startsWith('K') };
  });
}

/** dts of every audio packet (ffprobe). */
export function audioDts(file) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'a:0', '-show_entries', 'packet=dts_time', '-of', 'csv=p=0', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`ffprobe ${file}: ${r.stderr}`);
  return r.stdout.split('\n').map((l) => l.split(',')[0]).filter(Boolean).map(Number);
}

/** Stream facts (ffprobe -show_streams -show_format). */
export function probe(file) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffprobe ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Decodes file completely (a media file or a local playlist); returns
 *  ffmpeg's error output ('' = clean). */
export function decodeErrors(file) {
  const r = spawnSync('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  return r.status === 0 ? r.stderr.trim() : `exit ${r.status}: ${r.stderr}`;
}
