// The data generator: determinism, exact shape per sync document, realistic distributions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { graphql, realSchema, readQuery, repoRoot } from './helpers.mjs';
import { generateLibrary, createLibrary, sceneJson, formatTs, parseTz, PLACEHOLDER_BASE } from '../gen/generate.mjs';

const { parse, getNamedType, isNonNullType, isListType, isEnumType, isScalarType, isObjectType, getNullableType } = graphql;
const real = realSchema();
const GEN = path.join(repoRoot, 'tests', 'gen', 'generate.mjs');

function runCli(args) { execFileSync(process.execPath, [GEN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }); }
function dirHash(dir) {
  const h = crypto.createHash('sha256');
  for (const f of ['tags', 'studios', 'performers', 'groups', 'galleries', 'scenes']) h.update(fs.readFileSync(path.join(dir, `${f}.ndjson`)));
  return h.digest('hex');
}

test('CLI: same seed ⇒ byte-identical output (single and multi-threaded), different seed ⇒ different', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'peekd-gen-'));
  try {
    runCli(['--seed', '5', '--scenes', '3000', '--out', path.join(tmp, 'a')]);
    runCli(['--seed', '5', '--scenes', '3000', '--out', path.join(tmp, 'b')]);
    runCli(['--seed', '6', '--scenes', '3000', '--out', path.join(tmp, 'c')]);
    assert.equal(dirHash(path.join(tmp, 'a')), dirHash(path.join(tmp, 'b')));
    assert.notEqual(dirHash(path.join(tmp, 'a')), dirHash(path.join(tmp, 'c')));
    // The worker-thread path (used for big N) must produce the same bytes as the in-process path.
    runCli(['--seed', '5', '--scenes', '60000', '--out', path.join(tmp, 'w1'), '--workers', '1']);
    runCli(['--seed', '5', '--scenes', '60000', '--out', path.join(tmp, 'w2'), '--workers', '2']);
    assert.equal(dirHash(path.join(tmp, 'w1')), dirHash(path.join(tmp, 'w2')));
    // NDJSON = the in-memory objects, one per line.
    const lib = generateLibrary({ seed: 5, scenes: 3000 });
    const lines = fs.readFileSync(path.join(tmp, 'a', 'scenes.ndjson'), 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 3000);
    assert.equal(lines[41], JSON.stringify(lib.scenes[41]));
    const tagLines = fs.readFileSync(path.join(tmp, 'a', 'tags.ndjson'), 'utf8').trimEnd().split('\n');
    assert.equal(tagLines.length, lib.tags.length);
    assert.deepEqual(JSON.parse(tagLines[0]), lib.tags[0]);
  } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
});

test('CLI: bad arguments exit non-zero', () => {
  assert.throws(() => runCli(['--seed', '1', '--scenes', 'x', '--out', '/tmp/never']));
  assert.throws(() => runCli(['--scenes', '10']));
});

test('the fast scene serializer is byte-identical to JSON.stringify', () => {
  const lib = createLibrary({ seed: 11, scenes: 5000 });
  for (let id = 1; id <= 5000; id++) { const s = lib.makeScene(id); assert.equal(sceneJson(s), JSON.stringify(s)); }
});

test('timestamps: RFC3339 second precision in the requested offset', () => {
  const z = parseTz('Z'), pst = parseTz('-08:00');
  assert.equal(formatTs(1766087518, z), '2025-12-18T19:51:58Z');
  assert.equal(formatTs(1766087518, pst), '2025-12-18T11:51:58-08:00');
  const lib = generateLibrary({ seed: 2, scenes: 200, tzOffset: '-08:00' });
  for (const s of lib.scenes) {
    assert.match(s.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-08:00$/);
    assert.ok(s.updated_at >= s.created_at, 'updated_at >= created_at');
    assert.equal(Date.parse(s.updated_at) >= Date.parse(s.created_at), true);
  }
  for (const t of generateLibrary({ seed: 2, scenes: 200 }).tags) assert.match(t.updated_at, /Z$/);
});

// ---- exact shape check: walk the document's selection set against the real schema
function opSelection(docName) {
  const doc = parse(readQuery(docName));
  const op = doc.definitions[0];
  const root = op.selectionSet.selections[0]; // find*(...)
  const field = real.getQueryType().getFields()[root.name.value];
  const resultType = getNamedType(field.type);
  const listSel = root.selectionSet.selections.find((s) => s.name.value !== 'count');
  const listField = resultType.getFields()[listSel.name.value];
  return { type: getNamedType(listField.type), selection: listSel.selectionSet };
}
function checkValue(value, type, sel, where, errs) {
  if (value === null) { if (isNonNullType(type)) errs.push(`${where}: null for ${type}`); return; }
  const t = getNullableType(type);
  if (isListType(t)) {
    if (!Array.isArray(value)) { errs.push(`${where}: expected list`); return; }
    value.forEach((v, i) => checkValue(v, t.ofType, sel, `${where}[${i}]`, errs));
    return;
  }
  if (isObjectType(t)) {
    if (typeof value !== 'object' || Array.isArray(value)) { errs.push(`${where}: expected object`); return; }
    checkObject(value, t, sel, where, errs);
    return;
  }
  if (isEnumType(t)) { if (!t.getValues().some((v) => v.name === value)) errs.push(`${where}: bad enum ${value}`); return; }
  if (isScalarType(t)) {
    const ok = {
      ID: () => typeof value === 'string' && /^\d+$/.test(value), String: () => typeof value === 'string', Boolean: () => typeof value === 'boolean',
      Int: () => Number.isInteger(value) && Math.abs(value) < 2 ** 31, Float: () => typeof value === 'number' && Number.isFinite(value),
      Int64: () => Number.isSafeInteger(value), Time: () => typeof value === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/.test(value),
    }[t.name];
    if (!ok) errs.push(`${where}: unhandled scalar ${t.name}`);
    else if (!ok()) errs.push(`${where}: ${JSON.stringify(value)} is not a ${t.name}`);
  }
}
function checkObject(obj, type, sel, where, errs) {
  const want = sel.selections.map((s) => s.name.value);
  const keys = Object.keys(obj);
  if (JSON.stringify(keys) !== JSON.stringify(want)) { errs.push(`${where}: keys ${keys.join(',')} != selection ${want.join(',')}`); return; }
  for (const s of sel.selections) {
    const f = type.getFields()[s.name.value];
    checkValue(obj[s.name.value], f.type, s.selectionSet, `${where}.${s.name.value}`, errs);
  }
}

const lib = generateLibrary({ seed: 42, scenes: 20000 });
const DOCS = { scenes: 'SyncScenes', tags: 'SyncTags', performers: 'SyncPerformers', studios: 'SyncStudios', groups: 'SyncGroups', galleries: 'SyncGalleries' };
for (const [k, docName] of Object.entries(DOCS)) {
  test(`${k}: every object has exactly the shape ${docName} returns`, () => {
    const { type, selection } = opSelection(docName);
    const errs = [];
    for (const obj of lib[k]) { checkObject(obj, type, selection, `${k}#${obj.id}`, errs); if (errs.length > 20) break; }
    assert.deepEqual(errs, []);
  });
}

test('activity projection: SyncSceneActivity fields are a subset of the scene shape', () => {
  const { selection } = opSelection('SyncSceneActivity');
  for (const f of selection.selections) assert.ok(f.name.value in lib.scenes[0], f.name.value);
});

test('ids are unique strings and relations point at existing entities', () => {
  const ids = (arr) => new Set(arr.map((x) => x.id));
  const T = ids(lib.tags), P = ids(lib.performers), S = ids(lib.studios), G = ids(lib.groups), GA = ids(lib.galleries);
  for (const [k, set] of [['tags', T], ['performers', P], ['studios', S], ['groups', G], ['galleries', GA], ['scenes', ids(lib.scenes)]]) assert.equal(set.size, lib[k].length, k);
  const fileIds = new Set(), markerIds = new Set();
  for (const s of lib.scenes) {
    s.tags.forEach((r) => assert.ok(T.has(r.id)));
    s.performers.forEach((r) => assert.ok(P.has(r.id)));
    if (s.studio) assert.ok(S.has(s.studio.id));
    s.groups.forEach((g) => assert.ok(G.has(g.group.id)));
    s.galleries.forEach((r) => assert.ok(GA.has(r.id)));
    s.files.forEach((f) => { assert.ok(!fileIds.has(f.id), `file id ${f.id} unique`); fileIds.add(f.id); });
    s.scene_markers.forEach((m) => { assert.ok(!markerIds.has(m.id)); markerIds.add(m.id); assert.ok(T.has(m.primary_tag.id)); });
    assert.equal(new Set(s.tags.map((r) => r.id)).size, s.tags.length, 'no duplicate tags on a scene');
  }
  assert.equal(new Set(lib.tags.map((t) => t.name)).size, lib.tags.length, 'tag names unique');
  for (const p of lib.performers) p.tags.forEach((r) => assert.ok(T.has(r.id)));
});

function depthOf(nodes, parentsOf) {
  const memo = new Map(), onStack = new Set();
  const depth = (id) => {
    if (memo.has(id)) return memo.get(id);
    if (onStack.has(id)) throw new Error(`cycle at ${id}`);
    onStack.add(id);
    let d = 0;
    for (const p of parentsOf(id)) d = Math.max(d, depth(p) + 1);
    onStack.delete(id);
    memo.set(id, d);
    return d;
  };
  return Math.max(...nodes.map((n) => depth(n.id)));
}

test('tag DAG: acyclic, multiple parents exist, depth ≤ 4', () => {
  const byId = new Map(lib.tags.map((t) => [t.id, t]));
  const d = depthOf(lib.tags, (id) => byId.get(id).parents.map((p) => p.id));
  assert.ok(d >= 2 && d <= 4, `depth ${d}`);
  assert.ok(lib.tags.some((t) => t.parents.length >= 2), 'some tag has several parents');
});

test('studio tree: acyclic, depth ≤ 3 levels', () => {
  const byId = new Map(lib.studios.map((s) => [s.id, s]));
  const d = depthOf(lib.studios, (id) => { const p = byId.get(id).parent_studio; return p ? [p.id] : []; });
  assert.ok(d >= 1 && d <= 2, `depth ${d}`);
});

test('groups: containing_groups acyclic; scenes carry scene_index', () => {
  const byId = new Map(lib.groups.map((g) => [g.id, g]));
  depthOf(lib.groups, (id) => byId.get(id).containing_groups.map((c) => c.group.id));
  assert.ok(lib.scenes.some((s) => s.groups.length && s.groups[0].scene_index !== null));
});

test('distributions look like a real library', () => {
  const S = lib.scenes, n = S.length;
  const frac = (pred) => S.filter(pred).length / n;
  const nullRating = frac((s) => s.rating100 === null);
  assert.ok(nullRating > 0.3 && nullRating < 0.5, `null ratings ${nullRating}`);
  for (const re of [/^\d{4}$/, /^\d{4}-\d\d$/, /^\d{4}-\d\d-\d\d$/]) assert.ok(S.some((s) => s.date && re.test(s.date)), `date ${re}`);
  assert.ok(S.some((s) => s.date === null));
  assert.ok(S.some((s) => s.files[0].height > s.files[0].width), 'portrait');
  assert.ok(S.some((s) => s.files[0].width === 5760 && s.files[0].height === 2880), 'VR');
  assert.ok(S.some((s) => Math.min(s.files[0].width, s.files[0].height) < 240), 'tiny');
  for (const c of ['h264', 'hevc', 'vp9', 'av1', 'mpeg4', 'wmv2']) assert.ok(S.some((s) => s.files[0].video_codec === c), c);
  for (const c of ['aac', 'ac3', 'opus', 'mp3', '']) assert.ok(S.some((s) => s.files[0].audio_codec === c), `audio ${c}`);
  for (const f of ['mp4', 'matroska', 'webm', 'avi']) assert.ok(S.some((s) => s.files[0].format === f), f);
  for (const r of [23.976, 25, 29.97, 30, 59.94, 60]) assert.ok(S.some((s) => s.files[0].frame_rate === r), `fps ${r}`);
  assert.ok(S.every((s) => s.files[0].duration >= 10 && s.files[0].duration <= 10800));
  assert.ok(S.some((s) => s.title === null) && S.some((s) => s.title === ''), 'null and empty titles');
  assert.ok(S.some((s) => s.title && /[\u3040-\u9fff]/.test(s.title)), 'CJK');
  assert.ok(S.some((s) => s.title && /\p{Extended_Pictographic}/u.test(s.title)), 'emoji');
  assert.ok(S.some((s) => s.title && /ı/.test(s.title)), 'Turkish dotless i');
  assert.ok(S.some((s) => s.title && /ß/.test(s.title)), 'German ß');
  assert.ok(S.some((s) => s.title && /[éèà]/.test(s.title)), 'accents');
  assert.ok(S.some((s) => s.title && /^Scene 0\d+$/.test(s.title)) && S.some((s) => s.title && /^Scene [1-9]\d*$/.test(s.title)), 'natural-sort titles');
  assert.ok(S.some((s) => s.details && s.details.length > 2048), 'long details');
  const zeroPlays = frac((s) => s.play_count === 0);
  assert.ok(zeroPlays > 0.5, 'mostly unplayed');
  assert.ok(S.every((s) => (s.play_count === 0) === (s.last_played_at === null)), 'last_played_at null iff never played');
  assert.ok(frac((s) => s.o_counter === 0) > 0.6);
  assert.ok(S.some((s) => s.organized) && S.some((s) => s.interactive && s.interactive_speed !== null));
  assert.ok(S.some((s) => s.captions.length) && S.some((s) => s.stash_ids.length === 2) && S.some((s) => s.scene_markers.length));
  assert.ok(S.some((s) => s.tags.length === 0) && S.some((s) => s.tags.length >= 10) && S.every((s) => s.tags.length <= 15));
  assert.ok(S.some((s) => s.performers.length === 0) && S.every((s) => s.performers.length <= 6));
  // Zipf: the most used tag is far more popular than the median one.
  const use = new Map();
  for (const s of S) for (const t of s.tags) use.set(t.id, (use.get(t.id) || 0) + 1);
  const counts = [...use.values()].sort((a, b) => b - a);
  assert.ok(counts[0] > 10 * counts[Math.floor(counts.length / 2)], 'zipf tags');
  for (const s of S.slice(0, 500)) {
    const f = s.files[0];
    assert.match(f.path, /^\/data\/media\/[^/]+\/[^/]+$/);
    assert.ok(f.path.endsWith('/' + f.basename));
    const fp = Object.fromEntries(f.fingerprints.map((x) => [x.type, x.value]));
    assert.match(fp.oshash, /^[0-9a-f]{16}$/);
    if (fp.md5) assert.match(fp.md5, /^[0-9a-f]{32}$/);
    if (fp.phash) { assert.match(fp.phash, /^[0-9a-f]{1,16}$/); assert.ok(!fp.phash.startsWith('0')); }
    assert.ok(s.paths.screenshot.startsWith(`${PLACEHOLDER_BASE}/scene/${s.id}/screenshot?t=`));
  }
  const P = lib.performers;
  assert.ok(P.some((p) => p.favorite) && P.filter((p) => p.favorite).length < P.length * 0.1);
  assert.ok(P.some((p) => p.gender === null) && P.some((p) => p.birthdate === null) && P.some((p) => p.birthdate && /^\d{4}$/.test(p.birthdate)));
  assert.ok(P[0].image_path.startsWith(`${PLACEHOLDER_BASE}/performer/1/image?t=`));
});

test('entity counts scale with N', () => {
  const small = generateLibrary({ seed: 1, scenes: 100 });
  assert.equal(small.tags.length, 50);
  assert.equal(lib.tags.length, 200);
  assert.equal(lib.performers.length, 1000);
  assert.equal(lib.studios.length, 100);
  assert.equal(lib.groups.length, 200);
  assert.equal(lib.galleries.length, 1000);
});
