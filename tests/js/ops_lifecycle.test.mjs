// The store's life as an operator sees it (docs/OPERATIONS.md), with real
// processes: the fake Stash, `peekd sync`, `peekd serve`, `peekd backup`,
// `peekd check`, and LMDB's own mdb_dump/mdb_load to tamper with the meta
// database.
//
//   - the readiness line carries the store's figures;
//   - backup while serving and while a full sync runs: the copy passes
//     check and, restored, serves the same answers;
//   - a store of another schema version is refused (both directions) and
//     left untouched; an index-only version change rebuilds at start;
//   - a first sync stopped in its deferred scene walk: check says so,
//     serve builds the indexes (or leaves them to its resumed sync);
//   - a store left by a SIGKILLed serve starts again, stale readers are
//     cleared and logged;
//   - SIGTERM: exit 0 and a request in flight completes;
//   - the activity sweep / reconciliation schedule lives in the store:
//     serve's start-up sync honours the times an earlier process recorded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { peekdBin, cleanEnv, tmpDir, startProc } from './ops_lib.mjs';
import { startFake, control } from './helpers.mjs';

const SCENES = 3000;
let fake;
let root;
let store; // synced once in before()
let libCounts; // the fake's counts
const procs = new Set();

const env = () => cleanEnv({ PEEKD_LOG_LEVEL: 'info' });

function peekd(args) {
  const p = startProc(peekdBin, args, { env: env() });
  procs.add(p);
  p.exit.then(() => procs.delete(p));
  return p;
}

async function run(args, okCodes = [0]) {
  const p = peekd(args);
  const { code, signal } = await p.exit;
  assert.ok(okCodes.includes(code), `peekd ${args.join(' ')} exited ${code ?? signal}:\n${p.all.slice(-3000)}`);
  return p;
}

const READY = /peekd ready: listening on http:\/\/[^\s:]+:(\d+) \(scenes (\d+), entities (\d+), store ([\d.]+) MiB, sync (on|off), auth (\w+)\)/;

async function serve(dir, extra = []) {
  const p = peekd(['serve', '--data', dir, '--listen', '127.0.0.1:0', '--cache-dir', path.join(root, 'cache'), ...extra]);
  const m = await p.waitFor(READY, 120000);
  // The stdout copy of the line (for scripts) may trail the stderr one.
  await p.waitFor(/^peekd ready: listening on http:\/\/\S+$/m, 30000);
  p.port = Number(m[1]);
  p.ready = { scenes: Number(m[2]), entities: Number(m[3]), mib: Number(m[4]), sync: m[5], auth: m[6] };
  return p;
}

async function api(port, method, p, body) {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // Absolute links carry the Host of the request: normalise the port.
  const text = (await res.text()).replaceAll(`127.0.0.1:${port}`, '127.0.0.1:PORT');
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

const scenesQ = (filter, sceneFilter = {}) => ({ filter: { page: 1, per_page: 40, ...filter }, scene_filter: sceneFilter });
const QUERIES = [
  ['POST', '/api/library/scenes', scenesQ({})],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'title', direction: 'ASC', page: 3 })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'date', direction: 'DESC', per_page: 100, page: 2 })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'rating', direction: 'DESC' })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'random_12345', direction: 'ASC', page: 5 })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'created_at', direction: 'DESC' }, { tags: { value: ['3'], modifier: 'INCLUDES', depth: -1 } })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'o_counter', direction: 'DESC' }, { performers: { value: ['2', '7'], modifier: 'INCLUDES' } })],
  ['POST', '/api/library/scenes', scenesQ({ sort: 'duration', direction: 'ASC' }, { rating100: { value: 60, modifier: 'GREATER_THAN' } })],
  ['POST', '/api/library/scenes', scenesQ({ q: 'scene' })],
  ['POST', '/api/library/scenes', scenesQ({ per_page: 1000, page: 3, sort: 'path', direction: 'DESC' })],
  ['GET', '/api/library/scenes/17'],
  ['GET', '/api/library/scenes/2999'],
  ['POST', '/api/library/performers', { filter: { page: 1, per_page: 50, sort: 'name', direction: 'ASC' } }],
  ['POST', '/api/library/tags', { filter: { page: 1, per_page: 50, sort: 'name', direction: 'ASC' } }],
  ['POST', '/api/library/studios', { filter: { page: 1, per_page: 50 } }],
];

async function answers(port) {
  const out = [];
  for (const [m, p, b] of QUERIES) {
    const r = await api(port, m, p, b);
    out.push({ q: `${m} ${p} ${JSON.stringify(b ?? '')}`, status: r.status, body: r.json ?? r.text });
  }
  return out;
}

function assertSameAnswers(got, want, what) {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `${what}: ${want[i].q}`);
}

/** Polls cond() (async) every 50 ms until truthy: waiting on observed state. */
async function until(cond, what, ms = 120000) {
  const t0 = Date.now();
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const syncStatus = async (port) => (await api(port, 'GET', '/api/sync/status')).json;

function restore(backupDir, label) {
  // docs/OPERATIONS.md §4: replace the data dir's contents with the copy.
  const dir = path.join(root, label);
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.copyFileSync(path.join(backupDir, 'data.mdb'), path.join(dir, 'data.mdb'));
  return dir;
}

const sha = (f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

/** Rewrites one u64 (little-endian) of the meta database with LMDB's own
 *  tools: mdb_dump, edit the value line after the key, mdb_load. */
function setMetaU64(dir, key, value) {
  const dump = execFileSync('mdb_dump', ['-s', 'meta', dir], { encoding: 'utf8' }).split('\n');
  const khex = ' ' + Buffer.from(key).toString('hex');
  const i = dump.indexOf(khex);
  assert.ok(i > 0, `${key} is in the meta database`);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  assert.equal(dump[i + 1].length, 17, `${key} holds a u64`);
  dump[i + 1] = ' ' + b.toString('hex');
  const f = path.join(root, `meta-${key}-${value}.txt`);
  fs.writeFileSync(f, dump.join('\n'));
  execFileSync('mdb_load', ['-s', 'meta', '-f', f, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
}
function getMetaU64(dir, key) {
  const dump = execFileSync('mdb_dump', ['-s', 'meta', dir], { encoding: 'utf8' }).split('\n');
  const i = dump.indexOf(' ' + Buffer.from(key).toString('hex'));
  return Buffer.from(dump[i + 1].trim(), 'hex').readBigUInt64LE();
}

/** The decimal text value of key in the sync database (mdb_dump, hex). */
function getSyncTime(dir, key) {
  const dump = execFileSync('mdb_dump', ['-s', 'sync', dir], { encoding: 'utf8' }).split('\n');
  const i = dump.indexOf(' ' + Buffer.from(key).toString('hex'));
  assert.ok(i > 0, `${key} is in the sync database`);
  return Number(Buffer.from(dump[i + 1].trim(), 'hex').toString());
}
function setSyncTime(dir, key, value) {
  const dump = execFileSync('mdb_dump', ['-s', 'sync', dir], { encoding: 'utf8' }).split('\n');
  const i = dump.indexOf(' ' + Buffer.from(key).toString('hex'));
  assert.ok(i > 0, `${key} is in the sync database`);
  dump[i + 1] = ' ' + Buffer.from(String(value)).toString('hex');
  const f = path.join(root, `sync-${key}-${value}.txt`);
  fs.writeFileSync(f, dump.join('\n'));
  execFileSync('mdb_load', ['-s', 'sync', '-f', f, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
}
const extraReqs = async () => {
  const r = (await control(fake.url, 'stats')).requests;
  const ids = Object.entries(r).filter(([k]) => /^Sync\w+Ids$/.test(k)).reduce((a, [, n]) => a + n, 0);
  return { activity: r.SyncSceneActivity ?? 0, ids };
};

before(async () => {
  root = tmpDir('peekd-life-');
  fake = await startFake(['--scenes', String(SCENES), '--seed', '3']);
  libCounts = (await control(fake.url, 'snapshot')).counts;
  assert.equal(libCounts.scenes, SCENES);
  store = path.join(root, 'store');
  const p = await run(['sync', '--data', store, '--stash-url', fake.url]);
  assert.match(p.out, /sync done/);
});

after(async () => {
  for (const p of [...procs]) await p.stop('SIGKILL');
  if (fake) await fake.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

let baseline; // the answers of the synced store (serve without sync)
async function ensureBaseline() {
  if (baseline) return;
  const s = await serve(store);
  try {
    baseline = await answers(s.port);
  } finally {
    await s.stop();
  }
}

test('the readiness line carries the store figures; the store answers', async () => {
  const s = await serve(store);
  try {
    const entities = ['tags', 'performers', 'studios', 'groups', 'galleries'].reduce((a, k) => a + libCounts[k], 0);
    assert.equal(s.ready.scenes, SCENES);
    assert.equal(s.ready.entities, entities);
    assert.ok(s.ready.mib > 0);
    assert.equal(s.ready.sync, 'off');
    assert.equal(s.ready.auth, 'open');
    assert.match(s.out, /^peekd ready: listening on http:\/\/127\.0\.0\.1:\d+$/m, 'also on stdout for scripts');
    const h = await api(s.port, 'GET', '/api/health');
    assert.equal(h.status, 200);
    assert.equal(h.json.scenes, SCENES);
    // The container's HEALTHCHECK, end to end (0.0.0.0 probes loopback).
    const probe = startProc(peekdBin, ['health'], { env: cleanEnv({ PEEKD_LISTEN: `0.0.0.0:${s.port}` }) });
    assert.equal((await probe.exit).code, 0, probe.all);
    assert.match(probe.out, /healthy/);
    const metrics = await api(s.port, 'GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, new RegExp(`^peekd_scenes ${SCENES}$`, 'm'));
    baseline = await answers(s.port);
    assert.equal(baseline[0].status, 200, baseline[0].text);
    assert.equal(baseline[0].body.findScenes.count, SCENES);
    for (const a of baseline.slice(0, 10)) assert.equal(a.status, 200, a.q);
    assert.ok(baseline[5].body.findScenes.count > 0 && baseline[5].body.findScenes.count < SCENES, 'the tag filter selects');
  } finally {
    assert.deepEqual(await s.stop(), { code: 0, signal: null });
  }
});

test('backup while serving and while a full sync runs; the restored copy checks and answers the same', async () => {
  await ensureBaseline();
  const s = await serve(store, ['--stash-url', fake.url, '--page-size', '100', '--sync-interval', '0']);
  try {
    assert.equal(s.ready.sync, 'on');
    // The start-up sync (incremental: nothing changed) finishes first.
    await until(async () => { const st = await syncStatus(s.port); return st && !st.running && st.lastSuccess > 0; }, 'the start-up sync');
    // With sync on, answers also carry links to Stash: this server's own
    // answers are the reference while it syncs.
    const live0 = await answers(s.port);
    assert.equal(live0[1].status, 200);
    // A slow full sync: every Stash request takes 120 ms.
    await control(fake.url, 'fault', { kind: 'slow', ms: 120, count: 1000 });
    const before0 = Object.values((await control(fake.url, 'stats')).requests).reduce((a, b) => a + b, 0);
    const trig = await api(s.port, 'POST', '/api/sync/trigger', { type: 'full' });
    assert.equal(trig.status, 202, trig.text);
    await until(async () => Object.values((await control(fake.url, 'stats')).requests).reduce((a, b) => a + b, 0) >= before0 + 3, 'the full sync to be under way');
    assert.equal((await syncStatus(s.port)).running, true);

    // Backup, with readers hammering the server meanwhile.
    const b1 = path.join(root, 'backup-during-sync');
    const bk = peekd(['backup', '--data', store, b1]);
    let reads = 0;
    let done = false;
    bk.exit.then(() => { done = true; });
    while (!done) {
      const r = await api(s.port, 'POST', '/api/library/scenes', scenesQ({ sort: 'title', direction: 'ASC', page: 3 }));
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, live0[1].body, 'readers see the same page throughout');
      reads++;
    }
    assert.equal(bk.exited.code, 0, bk.all);
    assert.ok(reads >= 1);
    assert.match(bk.out, new RegExp(`wrote ${b1.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/data\\.mdb \\(\\d+ bytes, ${SCENES} scenes\\)`));
    assert.equal((await syncStatus(s.port)).running, true, 'the backup overlapped the sync');
    assert.equal(fs.statSync(path.join(b1, 'data.mdb')).mode & 0o777, 0o600);

    await control(fake.url, 'clearFaults');
    await until(async () => { const st = await syncStatus(s.port); return !st.running; }, 'the full sync to finish');
    assert.equal((await syncStatus(s.port)).lastError, null);
    assertSameAnswers(await answers(s.port), live0, 'the live server after the full sync');

    // A second copy of the idle store.
    const b2 = path.join(root, 'backup-idle');
    await run(['backup', '--data', store, b2]);
    for (const [label, b] of [['restored-during-sync', b1], ['restored-idle', b2]]) {
      const dir = restore(b, label);
      const c = await run(['check', '--data', dir]);
      assert.doesNotMatch(c.all, /error|corrupt|mismatch/i);
      const r = await serve(dir);
      try {
        assert.equal(r.ready.scenes, SCENES);
        assertSameAnswers(await answers(r.port), baseline, label);
      } finally {
        assert.equal((await r.stop()).code, 0);
      }
    }
    // The copy is compacted: never larger than the live file.
    assert.ok(fs.statSync(path.join(b2, 'data.mdb')).size <= fs.statSync(path.join(store, 'data.mdb')).size);
    // A backup refuses a non-empty destination.
    const again = await run(['backup', '--data', store, b2], [1, 2]);
    assert.match(again.err, /empty|exists/i);
  } finally {
    await control(fake.url, 'clearFaults');
    assert.equal((await s.stop()).code, 0);
  }
});

test('a store of another schema version is refused with a clear message and left untouched', async () => {
  const b = path.join(root, 'backup-schema');
  await run(['backup', '--data', store, b]);
  const cur = Number(getMetaU64(restore(b, 'schema-probe'), 'schema_version'));
  assert.ok(cur >= 1);
  for (const [ver, says] of [[cur - 1, /peekd sync/], [cur + 98, /newer peekd/]]) {
    const dir = restore(b, `schema-${ver}`);
    setMetaU64(dir, 'schema_version', ver);
    const h = sha(path.join(dir, 'data.mdb'));
    for (const args of [['serve', '--listen', '127.0.0.1:0'], ['check'], ['sync', '--stash-url', fake.url], ['reindex'], ['backup', path.join(root, `b-${ver}`)]]) {
      const p = await run([args[0], '--data', dir, ...args.slice(1)], [1]);
      assert.match(p.err, new RegExp(`schema version ${ver}\\b`), `${args[0]}: names the store's version`);
      assert.match(p.err, new RegExp(`schema version ${cur}\\b`), `${args[0]}: names its own version`);
      assert.match(p.err, says, `${args[0]}: says what to do`);
      assert.doesNotMatch(p.all, /peekd ready/);
    }
    assert.equal(sha(path.join(dir, 'data.mdb')), h, 'nothing was written');
  }
});

test('an index-only version change rebuilds the indexes at start, says so, and answers the same', async () => {
  await ensureBaseline();
  const b = path.join(root, 'backup-index');
  await run(['backup', '--data', store, b]);
  const dir = restore(b, 'index-old');
  setMetaU64(dir, 'index_version', 0);
  const s = await serve(dir);
  try {
    assert.match(s.all, /index version differs[^\n]*rebuilding the indexes/);
    assert.match(s.all, new RegExp(`indexes rebuilt: ${SCENES} scenes`));
    assert.ok(s.all.indexOf('indexes rebuilt') < s.all.indexOf('peekd ready'), 'rebuilt before serving');
    assertSameAnswers(await answers(s.port), baseline, 'after the automatic reindex');
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  assert.notEqual(getMetaU64(dir, 'index_version'), 0n, 'the new index version was recorded');
  const again = await serve(dir);
  try {
    assert.doesNotMatch(again.all, /rebuilding the indexes/, 'once only');
  } finally {
    await again.stop();
  }
});

test('a first sync stopped in its scene walk: check says the indexes are deferred; serve builds them', async () => {
  await ensureBaseline();
  // A first full sync into an empty store, stopped (SIGTERM) once its
  // deferred scene walk has committed some pages.
  const dir = path.join(root, 'deferred');
  const p = peekd(['sync', '--data', dir, '--stash-url', fake.url, '--full', '--page-size', '100', '--sync-commit', '100']);
  await p.waitFor(/progress scenes fetch [1-9]\d*\/\d+/, 120000);
  p.child.kill('SIGTERM');
  const { code } = await p.exit;
  assert.notEqual(code, 0, 'a stopped sync fails');
  assert.match(p.all, /sync aborted/);
  const chk = await run(['check', '--data', dir]);
  const m = /(\d+) scenes, records consistent; indexes deferred/.exec(chk.out);
  assert.ok(m, chk.all);
  const stored = Number(m[1]);
  assert.ok(stored > 0 && stored < SCENES, `stored ${stored} of ${SCENES}`);
  const b = path.join(root, 'backup-deferred');
  await run(['backup', '--data', dir, b]);
  const dir2 = restore(b, 'deferred-2');

  // Without a Stash URL: serve builds them before it serves.
  let s = await serve(dir);
  try {
    assert.match(s.all, /deferred the indexes and no Stash URL is set: building them/);
    assert.match(s.all, new RegExp(`indexes rebuilt: ${stored} scenes`));
    assert.equal(s.ready.scenes, stored);
    const r = await api(s.port, 'POST', '/api/library/scenes', scenesQ({}));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.findScenes.count, stored, 'every stored scene is in the indexes');
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  assert.match((await run(['check', '--data', dir])).out, /records and indexes consistent/);

  // With one: serve leaves them to its sync, which resumes the walk and
  // builds them at its end: then it answers as the ordinary store does.
  s = await serve(dir2, ['--stash-url', fake.url, '--sync-interval', '0']);
  try {
    assert.match(s.all, /the sync resumes and builds them at its end/);
    const st = await until(async () => { const x = await syncStatus(s.port); return x && !x.running && x.lastSuccess > 0 && x; }, 'the resumed sync');
    assert.equal(st.lastError, null);
    assert.match(s.all, new RegExp(`indexes built: ${SCENES} scenes`));
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
  assert.match((await run(['check', '--data', dir2])).out, /records and indexes consistent/);
  s = await serve(dir2); // as the baseline: no Stash URL (no stashUrl links)
  try {
    assertSameAnswers(await answers(s.port), baseline, 'after the resumed first sync');
  } finally {
    assert.equal((await s.stop()).code, 0);
  }
});

test('a store left by a SIGKILLed serve starts again; stale readers are cleared and logged', async () => {
  await ensureBaseline();
  const b = path.join(root, 'backup-kill');
  await run(['backup', '--data', store, b]);
  const dir = restore(b, 'killed');
  // A second server keeps the environment open, so the lock file (and the
  // dead process's reader slots in it) survive the kill.
  const holder = await serve(dir);
  const victim = await serve(dir, ['--threads', '4']);
  // Readers on several threads of the victim.
  await Promise.all(Array.from({ length: 16 }, () => api(victim.port, 'POST', '/api/library/scenes', scenesQ({ sort: 'title' }))));
  assert.deepEqual(await victim.stop('SIGKILL'), { code: null, signal: 'SIGKILL' });
  const next = await serve(dir);
  try {
    const m = /cleared (\d+) stale reader slot/.exec(next.all);
    assert.ok(m && Number(m[1]) >= 1, `stale reader slots cleared and logged:\n${next.all}`);
    assert.ok(next.all.indexOf(m[0]) < next.all.indexOf('peekd ready'));
    assertSameAnswers(await answers(next.port), baseline, 'after the crash');
    const c = await run(['check', '--data', dir]);
    assert.equal(c.exited.code, 0);
  } finally {
    assert.equal((await next.stop()).code, 0);
    assert.equal((await holder.stop()).code, 0);
  }
  // And alone, after everything died hard.
  const k = await serve(dir);
  await k.stop('SIGKILL');
  const alone = await serve(dir);
  try {
    assertSameAnswers(await answers(alone.port), baseline, 'restart after SIGKILL');
  } finally {
    await alone.stop();
  }
});

test('SIGTERM: the request in flight completes, then serve exits 0', async () => {
  await ensureBaseline();
  const s = await serve(store);
  const body = JSON.stringify(scenesQ({ sort: 'title', direction: 'ASC', page: 3 }));
  const sock = net.connect(s.port, '127.0.0.1');
  sock.setEncoding('latin1');
  let got = '';
  sock.on('data', (d) => { got += d; });
  let isClosed = false;
  const closed = new Promise((r) => sock.on('close', () => { isClosed = true; r(); }));
  await new Promise((r) => sock.once('connect', r));
  // One full request first: the connection is surely accepted.
  const req = (b) => `POST /api/library/scenes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n`;
  sock.write(req(body) + body);
  await until(() => /\r\n\r\n/.test(got) && got.length > 200 && /^HTTP\/1\.1 200/.test(got), 'the first response', 30000);
  const firstLen = () => { const m = /Content-Length: (\d+)/i.exec(got); return m ? got.indexOf('\r\n\r\n') + 4 + Number(m[1]) : Infinity; };
  await until(() => got.length >= firstLen(), 'the first body', 30000);
  got = '';
  // The second request: headers and half of the body, then SIGTERM.
  const half = Math.floor(body.length / 2);
  sock.write(req(body) + body.slice(0, half));
  const mark = s.all.length;
  s.child.kill('SIGTERM');
  await s.waitFor(/shutting down/, 30000, mark);
  sock.write(body.slice(half));
  await until(() => {
    if (got.length >= firstLen()) return true;
    if (isClosed) throw new Error(`serve closed the connection of the request in flight without answering it (got ${JSON.stringify(got.slice(0, 200))})`);
    return false;
  }, 'the in-flight response', 30000);
  assert.match(got, /^HTTP\/1\.1 200/);
  const json = JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4, firstLen()));
  assert.deepEqual(json.findScenes.scenes.map((x) => x.id), baseline[1].body.findScenes.scenes.map((x) => x.id));
  assert.equal(json.findScenes.count, SCENES);
  // The client is done: it hangs up (an idle keep-alive connection may
  // legitimately hold the server until its grace period).
  sock.destroy();
  await closed;
  assert.deepEqual(await s.exit, { code: 0, signal: null });
  // New connections are refused after the stop.
  await assert.rejects(fetch(`http://127.0.0.1:${s.port}/api/health`));
});

test('serve: the sweep and reconciliation run when due by the times in the store, across restarts', async () => {
  const b = path.join(root, 'backup-sched');
  await run(['backup', '--data', store, b]);
  const dir = restore(b, 'sched');
  const sweep0 = getSyncTime(dir, 'sweep_at');
  const rec0 = getSyncTime(dir, 'reconcile_at');
  assert.ok(sweep0 > 0 && rec0 > 0, 'the earlier syncs recorded both');
  // Each serve runs its start-up incremental sync and no other (interval 0).
  const startOnce = async () => {
    const before0 = await extraReqs();
    const s = await serve(dir, ['--stash-url', fake.url, '--sync-interval', '0']);
    try {
      const st = await until(async () => { const x = await syncStatus(s.port); return x && !x.running && x.lastSuccess > 0 && x; }, 'the start-up sync');
      assert.equal(st.lastError, null);
      assert.equal(st.mode, 'incremental');
      const metrics = (await api(s.port, 'GET', '/metrics')).text;
      assert.match(metrics, new RegExp(`^peekd_sync_last_sweep_timestamp ${st.lastSweep}$`, 'm'));
      assert.match(metrics, new RegExp(`^peekd_sync_last_reconcile_timestamp ${st.lastReconcile}$`, 'm'));
      const after0 = await extraReqs();
      return { st, all: s.all, activity: after0.activity - before0.activity, ids: after0.ids - before0.ids };
    } finally {
      assert.equal((await s.stop()).code, 0);
    }
  };
  // Recorded moments ago (default intervals 1h): not due.
  let r = await startOnce();
  assert.equal(r.activity, 0, 'no activity rows fetched');
  assert.equal(r.ids, 0, 'no id lists fetched');
  assert.equal(r.st.lastSweep, sweep0, 'status shows the time from the store');
  assert.equal(r.st.lastReconcile, rec0);
  assert.match(r.all, /activity sweep: not due/);
  assert.match(r.all, /schedule \(seconds, 0 = off\): incremental every 0, activity sweep every 3600, reconciliation every 3600/);
  // Two hours later (as the store says): both run, and are recorded.
  setSyncTime(dir, 'sweep_at', sweep0 - 7200);
  setSyncTime(dir, 'reconcile_at', rec0 - 7200);
  const t0 = Math.floor(Date.now() / 1000);
  r = await startOnce();
  assert.ok(r.activity > 0, 'the sweep ran');
  assert.ok(r.ids >= 6, 'the reconciliation walked every type');
  assert.ok(r.st.lastSweep >= t0 && r.st.lastReconcile >= t0, JSON.stringify(r.st));
  assert.equal(getSyncTime(dir, 'sweep_at'), r.st.lastSweep);
  assert.equal(getSyncTime(dir, 'reconcile_at'), r.st.lastReconcile);
  // The next start sees what that process recorded: not due again.
  const prev = r.st;
  r = await startOnce();
  assert.equal(r.activity, 0);
  assert.equal(r.ids, 0);
  assert.equal(r.st.lastSweep, prev.lastSweep);
  assert.equal(r.st.lastReconcile, prev.lastReconcile);
});
