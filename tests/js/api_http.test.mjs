// peekd's REST API end to end: the fake Stash → `peekd sync` → `peekd serve`
// on 127.0.0.1:0 (port from the readiness line), then
//   - every example of docs/API.md is executed (status + JSON shape),
//   - counts and ids are compared with an oracle computed from the generated
//     library (tests/gen/generate.mjs, same seed) for a few filters,
//   - the token rules, keep-alive, images through the proxy,
//   - and the Stash API key is searched in every response body and header.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { repoRoot, startFake } from './helpers.mjs';
import { runPeekd, cleanEnv, peekdBin } from './ops_lib.mjs';
import { generateLibrary } from '../gen/generate.mjs';

const SCENES = 2000;
const SEED = 7;
const KEY = 'K-js-api-key-never-shown-5150';
const TOKEN = 'js-token-8841';

const seen = []; // every response: headers + body, for the API key grep
let base;
let server;
let fake;
let root;

function startServe(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(peekdBin, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let all = '';
    const on = (d) => {
      all += d;
      const m = /peekd ready: listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(all);
      if (m) resolve({ child, url: m[1], port: Number(m[2]), log: () => all });
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`peekd serve exited (${code}): ${all}`)));
  });
}

async function call(method, p, { body, headers = {}, auth = true } = {}) {
  const h = { ...headers };
  if (auth) h.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(base + p, { method, headers: h, body });
  const buf = Buffer.from(await res.arrayBuffer());
  const text = buf.toString('latin1');
  seen.push(JSON.stringify([...res.headers]) + text);
  let json = null;
  try { json = JSON.parse(buf.toString('utf8')); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text, buf };
}

// Every key of `want` must exist in `got` with the same JSON type; arrays:
// the first element of want (if any) against every element of got.
function shape(want, got, where = '$') {
  const type = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  if (type(want) === 'null') return;
  assert.equal(type(got), type(want), `${where}: ${JSON.stringify(got)?.slice(0, 200)}`);
  if (Array.isArray(want)) {
    if (want.length) for (const [i, g] of got.entries()) shape(want[0], g, `${where}[${i}]`);
  } else if (type(want) === 'object') {
    for (const k of Object.keys(want)) {
      assert.ok(k in got, `${where}.${k} missing in ${JSON.stringify(got).slice(0, 300)}`);
      // Strings that are non-empty in the example are exact values.
      if (typeof want[k] === 'string' && want[k] !== '' && typeof got[k] === 'string')
        assert.equal(got[k], want[k], `${where}.${k}`);
      shape(want[k], got[k], `${where}.${k}`);
    }
  }
}

function examples() {
  const md = fs.readFileSync(path.join(repoRoot, 'docs', 'API.md'), 'utf8');
  const re = /```http\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/g;
  const out = [];
  for (let m; (m = re.exec(md));) {
    const [head, ...rest] = m[1].split('\n\n');
    const [line] = head.split('\n');
    const [method, target] = line.split(' ');
    const body = rest.join('\n\n').trim();
    const [statusLine, ...json] = m[2].trim().split('\n');
    out.push({ method, target, body: body || undefined, status: Number(statusLine.split(' ')[1]), json: json.join('\n').trim() });
  }
  return out;
}

const lib = generateLibrary({ seed: SEED, scenes: SCENES });
const scenesOf = (pred) => lib.scenes.filter(pred);
// A performer, a studio and a tag that carry several scenes.
const byCount = (key) => {
  const c = new Map();
  for (const s of lib.scenes) for (const r of (key === 'studio' ? (s.studio ? [s.studio] : []) : s[key])) c.set(r.id, (c.get(r.id) || 0) + 1);
  return [...c.entries()].sort((a, b) => b[1] - a[1]);
};
const perfCounts = byCount('performers');
const studioCounts = byCount('studio');
const PERFORMER = perfCounts[3][0];
const SCENE = lib.scenes[10].id;

test.before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'peekd-api-'));
  fake = await startFake(['--scenes', String(SCENES), '--seed', String(SEED), '--api-key', KEY]);
  const store = path.join(root, 'store');
  const r = runPeekd(['sync', '--data', store, '--stash-url', fake.url, '--api-key', KEY], { timeout: 120000 });
  assert.equal(r.code, 0, r.stderr);
  server = await startServe(['serve', '--data', store, '--listen', '127.0.0.1:0', '--token', TOKEN,
    '--stash-url', fake.url, '--api-key', KEY, '--sync-interval', '0',
    '--cache-dir', path.join(root, 'cache')]);
  base = server.url;
  // The start-up sync runs in the background: wait until it is done.
  for (;;) {
    const s = await call('GET', '/api/sync/status');
    if (s.json && s.json.running === false && s.json.lastSuccess > 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
});

test.after(async () => {
  if (server) {
    const exited = new Promise((res) => server.child.once('exit', (code, sig) => res({ code, sig })));
    server.child.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0, 'graceful shutdown exits 0');
  }
  if (fake) await fake.stop();
  // The API key never reached a response.
  for (const s of seen) assert.ok(!s.includes(KEY), `API key leaked: ${s.slice(0, 200)}`);
  assert.ok(seen.length > 40);
  fs.rmSync(root, { recursive: true, force: true });
});

test('every docs/API.md example runs as documented', async () => {
  const ex = examples();
  assert.ok(ex.length >= 30, `found ${ex.length} examples`);
  const sub = (s) => s && s.replaceAll('$SCENE', SCENE).replaceAll('$PERFORMER', PERFORMER).replaceAll('$TOKEN', TOKEN);
  for (const e of ex) {
    const r = await call(e.method, sub(e.target), { body: sub(e.body) });
    assert.equal(r.status, e.status, `${e.method} ${e.target}: ${r.text.slice(0, 300)}`);
    if (e.json) shape(JSON.parse(e.json), r.json, `${e.method} ${e.target}`);
  }
});

test('scene counts and ids match the generated library', async () => {
  const total = await call('POST', '/api/library/scenes', { body: '{"filter":{"per_page":1}}' });
  assert.equal(total.json.findScenes.count, SCENES);
  const want = scenesOf((s) => s.performers.some((p) => p.id === PERFORMER)).map((s) => s.id).sort();
  const r = await call('POST', '/api/library/scenes', { body: JSON.stringify({ filter: { per_page: -1 }, scene_filter: { performers: { value: [`${PERFORMER}:peekd`], modifier: 'INCLUDES' } } }) });
  assert.equal(r.json.findScenes.count, want.length);
  assert.deepEqual(r.json.findScenes.scenes.map((s) => s.id).sort(), want);
  const st = studioCounts[0][0];
  const r2 = await call('POST', '/api/library/scenes', { body: JSON.stringify({ scene_filter: { studios: { value: [st], modifier: 'INCLUDES', depth: 0 } } }) });
  assert.equal(r2.json.findScenes.count, scenesOf((s) => s.studio && s.studio.id === st).length);
  const ids = [lib.scenes[1].id, `${lib.scenes[2].id}:peekd`, '999999999'];
  const r3 = await call('POST', '/api/library/scenes', { body: JSON.stringify({ ids }) });
  assert.equal(r3.json.findScenes.count, 2);
  assert.deepEqual(r3.json.findScenes.scenes.map((s) => s.id).sort(), [lib.scenes[1].id, lib.scenes[2].id].sort());
  for (const s of r3.json.findScenes.scenes) {
    for (const k of ['tags', 'performers', 'groups', 'galleries', 'files', 'urls', 'sceneStreams', 'captions'])
      assert.ok(Array.isArray(s[k]), k);
    for (const st2 of s.sceneStreams) assert.match(st2.url, /^http:\/\/127\.0\.0\.1:\d+\/api\/scene\/\d+\//);
  }
});

test('entity scene counts match the generated library', async () => {
  const r = await call('POST', '/api/library/performers', { body: JSON.stringify({ filter: { per_page: 10, sort: 'scene_count', direction: 'DESC' } }) });
  assert.equal(r.json.findPerformers.count, lib.performers.length);
  const got = r.json.findPerformers.performers.map((p) => p.scene_count);
  assert.deepEqual(got, perfCounts.slice(0, 10).map((c) => c[1]));
  const fav = await call('POST', '/api/library/tags', { body: '{"tag_filter":{"favorite":true}}' });
  assert.equal(fav.json.findTags.count, lib.tags.filter((t) => t.favorite).length);
  const min = await call('POST', '/api/library/studios/minimal', { body: '{"filter":{"per_page":5000},"count_filter":{"min_scene_count":1}}' });
  assert.equal(min.json.studios.length, studioCounts.length);
});

test('token rules: 401 without, Bearer, sign-in cookie, 404 for unknown routes', async () => {
  assert.equal((await call('POST', '/api/library/scenes', { body: '{}', auth: false })).status, 401);
  assert.equal((await call('GET', `/api/proxy/scene/${SCENE}/screenshot`, { auth: false })).status, 401);
  assert.equal((await call('GET', `/api/scene/${SCENE}/stream`, { auth: false })).status, 401);
  assert.equal((await call('GET', '/api/health', { auth: false })).status, 200);
  const login = await call('POST', '/api/auth/login', { auth: false, body: JSON.stringify({ username: 'admin', password: TOKEN }) });
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie');
  assert.match(cookie, /^token=[^;]+; HttpOnly; SameSite=Strict; Path=\/; Max-Age=7200/);
  assert.ok(!cookie.includes(TOKEN));
  const withCookie = await call('GET', '/api/auth/check', { auth: false, headers: { Cookie: cookie.split(';')[0] } });
  assert.equal(withCookie.status, 200);
  assert.equal(withCookie.json.user.setupCompleted, true);
  for (const p of ['/api/user/settings', '/api/watch-history', '/api/carousels', '/api/playlists'])
    assert.equal((await call('GET', p)).status, 404, p);
});

test('keep-alive: two requests share one connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () => new Promise((resolve, reject) => {
    const req = http.request(`${base}/api/health`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(req.socket));
    });
    req.on('error', reject);
    req.end();
  });
  const s1 = await get();
  const s2 = await get();
  assert.equal(s1, s2, 'same socket');
  agent.destroy();
});

test('images come through the proxy, cached, with ETag and 304', async () => {
  const a = await call('GET', `/api/proxy/scene/${SCENE}/screenshot`);
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('content-type'), 'image/png');
  assert.equal(a.buf.subarray(0, 4).toString('latin1'), '\x89PNG');
  const etag = a.headers.get('etag');
  assert.ok(etag);
  const b = await call('GET', `/api/proxy/scene/${SCENE}/screenshot`, { headers: { 'If-None-Match': etag } });
  assert.equal(b.status, 304);
  const p = lib.performers.find((x) => x.image_path);
  const c = await call('GET', `/api/proxy/performer/${p.id}/image`);
  assert.equal(c.status, 200);
});
