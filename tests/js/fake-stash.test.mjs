// The fake Stash as a child process: transport, paging, ids, sorts, the updated_at quirk, control
// ops, faults, media.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { startFake, gql, control, readQuery } from './helpers.mjs';
import { randomSortKey, parseRandomSeed, naturalCompare } from '../fake-stash/order.mjs';
import { generateLibrary, PLACEHOLDER_BASE } from '../gen/generate.mjs';

const IDS = `query SyncSceneIds($filter: FindFilterType, $scene_filter: SceneFilterType, $ids: [ID!]) {
  findScenes(filter: $filter, scene_filter: $scene_filter, ids: $ids) { count scenes { id } } }`;
const ids = (r) => r.body.data.findScenes.scenes.map((s) => s.id);

test('random_<seed>: Stash double-rounding formula and the §5.2 vectors', () => {
  const order = (seed) => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].sort((a, b) => randomSortKey(a, seed) - randomSortKey(b, seed) || a - b);
  assert.deepEqual(order(12345), [6, 10, 9, 3, 1, 5, 8, 7, 2, 4]);
  assert.deepEqual(order(99999999), [2, 8, 3, 6, 10, 4, 7, 1, 9, 5]);
  assert.equal(randomSortKey(6, 12345), 337668469);
  assert.equal(randomSortKey(10, 12345), 455858704);
  assert.equal(randomSortKey(2, 99999999), 75625196);
  assert.equal(randomSortKey(8, 99999999), 574980512);
  assert.equal(parseRandomSeed('random_12345'), 12345);
  assert.equal(parseRandomSeed('random_100012345'), 12345, 'seed %= 1e8');
  assert.equal(parseRandomSeed('random'), null);
  assert.equal(parseRandomSeed('random_x'), null);
});

test('NATURAL_CI comparator', () => {
  const sorted = ['Scene 10', 'scene 2', 'Scene 007', 'Scene 7', 'Zeta', 'alpha', '10x', 'Scene 07'].sort(naturalCompare);
  assert.deepEqual(sorted, ['10x', 'alpha', 'scene 2', 'Scene 7', 'Scene 07', 'Scene 007', 'Scene 10', 'Zeta']);
  assert.equal(naturalCompare('abc', 'ABC'), 0);
  assert.ok(naturalCompare('ab', 'abc') < 0);
});

describe('fake stash (Z, api key)', () => {
  let f;
  const KEY = 'secret-key';
  const H = { ApiKey: KEY };
  before(async () => { f = await startFake(['--scenes', '500', '--seed', '9', '--api-key', KEY]); });
  after(async () => { if (f) await f.stop(); });

  test('healthz without auth', async () => {
    const r = await fetch(`${f.url}/healthz`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), '.');
  });

  test('auth: missing / wrong key → 401 + WWW-Authenticate; header and ?apikey= accepted', async () => {
    for (const headers of [{}, { ApiKey: 'nope' }]) {
      const r = await gql(f.url, IDS, {}, { headers });
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('www-authenticate'), 'FormBased');
    }
    assert.equal((await gql(f.url, IDS, {}, { headers: H })).status, 200);
    const r = await fetch(`${f.url}/graphql?apikey=${KEY}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ query: '{version{version}}' }) });
    assert.equal(r.status, 200);
    assert.equal((await fetch(`${f.url}/scene/1/screenshot`)).status, 401, 'media behind auth too');
  });

  test('transport errors: 400 non-JSON content type, 400 bad JSON, 422 invalid document, Cache-Control no-store', async () => {
    let r = await fetch(`${f.url}/graphql`, { method: 'POST', headers: { ...H, 'Content-Type': 'text/plain' }, body: '{"query":"{version{version}}"}' });
    assert.equal(r.status, 400);
    r = await fetch(`${f.url}/graphql`, { method: 'POST', headers: { ...H, 'Content-Type': 'application/json' }, body: '{"query":' });
    assert.equal(r.status, 400);
    const g = await gql(f.url, '{ findScenes { nope } }', {}, { headers: H });
    assert.equal(g.status, 422);
    assert.ok(g.body.errors.length && !('data' in g.body));
    const bad = await gql(f.url, IDS, { filter: { direction: 'SIDEWAYS' } }, { headers: H });
    assert.equal(bad.status, 422, 'variable coercion error');
    const ok = await gql(f.url, IDS, {}, { headers: H });
    assert.equal(ok.headers.get('cache-control'), 'no-store');
  });

  test('gzip when asked', async () => {
    const body = JSON.stringify({ query: IDS, variables: { filter: { per_page: -1, sort: 'id' } } });
    const r = await new Promise((resolve, reject) => {
      const u = new URL(`${f.url}/graphql`);
      const req = (require_http()).request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { ...H, 'Content-Type': 'application/json', 'Accept-Encoding': 'gzip' } }, (res) => {
        const chunks = []; res.on('data', (c) => chunks.push(c)); res.on('end', () => resolve({ res, buf: Buffer.concat(chunks) }));
      });
      req.on('error', reject); req.end(body);
    });
    assert.equal(r.res.headers['content-encoding'], 'gzip');
    const parsed = JSON.parse(zlib.gunzipSync(r.buf).toString());
    assert.equal(parsed.data.findScenes.count, 500);
  });

  test('paging: default 25, -1 all, 0 count only, page < 1 → 1, count always', async () => {
    let r = await gql(f.url, IDS, { filter: { sort: 'id' } }, { headers: H });
    assert.equal(r.body.data.findScenes.count, 500);
    assert.deepEqual(ids(r), Array.from({ length: 25 }, (_, i) => String(i + 1)));
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: -1 } }, { headers: H });
    assert.equal(ids(r).length, 500);
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: 0 } }, { headers: H });
    assert.equal(r.body.data.findScenes.count, 500);
    assert.deepEqual(ids(r), []);
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: 10, page: 0 } }, { headers: H });
    assert.equal(ids(r)[0], '1');
    r = await gql(f.url, IDS, { filter: { sort: 'id', direction: 'DESC', per_page: 3, page: 2 } }, { headers: H });
    assert.deepEqual(ids(r), ['497', '496', '495']);
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: 100, page: 6 } }, { headers: H });
    assert.deepEqual(ids(r), [], 'past the end');
    const tags = await gql(f.url, readQuery('SyncTagIds'), { filter: { per_page: 0 } }, { headers: H });
    assert.equal(tags.body.data.findTags.count, 50);
  });

  test('ids: keep order, ignore filter/paging/sort; any unknown id fails the query', async () => {
    let r = await gql(f.url, IDS, { ids: ['7', '3', '300'], filter: { per_page: 1, sort: 'title' }, scene_filter: { id: { value: 1, modifier: 'EQUALS' } } }, { headers: H });
    assert.deepEqual(ids(r), ['7', '3', '300']);
    assert.equal(r.body.data.findScenes.count, 3);
    r = await gql(f.url, IDS, { ids: ['7', '9999'] }, { headers: H });
    assert.equal(r.status, 200);
    assert.equal(r.body.data, null);
    assert.equal(r.body.errors[0].message, 'scene with id 9999 not found');
    assert.deepEqual(r.body.errors[0].path, ['findScenes']);
    r = await gql(f.url, readQuery('SyncPerformerIds'), { ids: ['1', '123456'] }, { headers: H });
    assert.equal(r.body.errors[0].message, 'performer with id 123456 not found');
  });

  test('sorts: whitelist, invalid sort error, random seed order, tie-break', async () => {
    const r = await gql(f.url, IDS, { filter: { sort: 'rating100' } }, { headers: H });
    assert.equal(r.status, 200);
    assert.equal(r.body.data, null);
    assert.equal(r.body.errors[0].message, 'invalid sort: rating100');
    const tr = await gql(f.url, readQuery('SyncTagIds'), { filter: { sort: 'title' } }, { headers: H });
    assert.equal(tr.body.errors[0].message, 'invalid sort: title');
    const rnd = await gql(f.url, IDS, { filter: { sort: 'random_12345', per_page: -1 } }, { headers: H });
    const want = Array.from({ length: 500 }, (_, i) => i + 1).sort((a, b) => randomSortKey(a, 12345) - randomSortKey(b, 12345) || a - b).map(String);
    assert.deepEqual(ids(rnd), want);
    const rnd2 = await gql(f.url, IDS, { filter: { sort: 'random_99999999', per_page: -1 } }, { headers: H });
    assert.deepEqual(ids(rnd2).filter((x) => Number(x) <= 10), ['2', '8', '3', '6', '10', '4', '7', '1', '9', '5']);
    for (const sort of ['title', 'date', 'rating', 'duration', 'resolution', 'studio', 'tag_count', 'path', 'last_played_at', 'random', 'performer_age', 'bitrate']) {
      const x = await gql(f.url, IDS, { filter: { sort, per_page: -1, direction: 'DESC' } }, { headers: H });
      assert.equal(x.body.data.findScenes.count, 500, sort);
      assert.equal(new Set(ids(x)).size, 500, sort);
    }
    // rating ASC: NULLs first, then ascending, ties by COALESCE(title,id) natural then id
    const q = `{ findScenes(filter: {sort: "rating", per_page: -1}) { scenes { id title rating100 } } }`;
    const rows = (await gql(f.url, q, {}, { headers: H })).body.data.findScenes.scenes;
    for (let i = 1; i < rows.length; i++) {
      const a = rows[i - 1], b = rows[i];
      const ka = a.rating100 ?? -1, kb = b.rating100 ?? -1;
      assert.ok(ka <= kb, 'non-decreasing with nulls first');
      if (ka === kb) {
        const c = naturalCompare(a.title ?? a.id, b.title ?? b.id);
        assert.ok(c < 0 || (c === 0 && Number(a.id) < Number(b.id)), `tie-break ${a.id} ${b.id}`);
      }
    }
    for (const [doc, sorts] of [['SyncPerformerIds', ['name', 'scenes_count', 'birthdate', 'rating']], ['SyncStudioIds', ['name', 'child_count', 'scenes_count']],
      ['SyncTagIds', ['name', 'scenes_count', 'performers_count']], ['SyncGroupIds', ['name', 'date', 'duration']], ['SyncGalleryIds', ['title', 'images_count']]]) {
      for (const sort of sorts) {
        const x = await gql(f.url, readQuery(doc), { filter: { sort, per_page: 5 } }, { headers: H });
        assert.ok(!x.body.errors, `${doc} ${sort}: ${JSON.stringify(x.body.errors)}`);
      }
    }
  });

  test('filters: AND/OR/NOT one per level, id criterion', async () => {
    let r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: -1 }, scene_filter: { id: { value: 10, value2: 20, modifier: 'BETWEEN' } } }, { headers: H });
    assert.equal(r.body.data.findScenes.count, 11);
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: -1 }, scene_filter: { id: { value: 5, modifier: 'LESS_THAN' }, OR: { id: { value: 498, modifier: 'GREATER_THAN' } } } }, { headers: H });
    assert.deepEqual(ids(r), ['1', '2', '3', '4', '499', '500']);
    r = await gql(f.url, IDS, { filter: { sort: 'id', per_page: -1 }, scene_filter: { id: { value: 10, modifier: 'LESS_THAN' }, NOT: { id: { value: 5, modifier: 'GREATER_THAN' } } } }, { headers: H });
    assert.deepEqual(ids(r), ['1', '2', '3', '4', '5']);
    r = await gql(f.url, IDS, { scene_filter: { AND: { id: { value: 1, modifier: 'EQUALS' } }, OR: { id: { value: 2, modifier: 'EQUALS' } } } }, { headers: H });
    assert.equal(r.body.errors[0].message, 'illegal filter combination');
  });

  test('SyncScenes output equals the generator NDJSON object (placeholder host replaced)', async () => {
    const lib = generateLibrary({ seed: 9, scenes: 500 });
    const r = await gql(f.url, readQuery('SyncScenes'), { ids: ['1', '77', '250'] }, { headers: H });
    const base = f.url.replace('127.0.0.1', '127.0.0.1');
    for (const [i, s] of r.body.data.findScenes.scenes.entries()) {
      const want = JSON.stringify(lib.scenes[[0, 76, 249][i]]).replaceAll(PLACEHOLDER_BASE, base);
      assert.equal(JSON.stringify(s), want);
    }
    for (const [doc, k, root] of [['SyncTags', 'tags', 'findTags'], ['SyncPerformers', 'performers', 'findPerformers'], ['SyncStudios', 'studios', 'findStudios'],
      ['SyncGroups', 'groups', 'findGroups'], ['SyncGalleries', 'galleries', 'findGalleries']]) {
      const x = await gql(f.url, readQuery(doc), { filter: { sort: 'id', per_page: -1 } }, { headers: H });
      assert.equal(JSON.stringify(x.body.data[root][k]), JSON.stringify(lib[k]).replaceAll(PLACEHOLDER_BASE, base), doc);
    }
    const v = await gql(f.url, readQuery('Version'), {}, { headers: H });
    assert.deepEqual(v.body.data, { version: { version: 'v0.30.1', hash: v.body.data.version.hash, build_time: v.body.data.version.build_time }, systemStatus: { status: 'OK', appSchema: 75 } });
    const st = await gql(f.url, '{ stats { scene_count tag_count performer_count } findSceneMarkers(filter:{per_page:1, sort:"id"}) { count scene_markers { id scene { id } primary_tag { name } } } }', {}, { headers: H });
    assert.equal(st.body.data.stats.scene_count, 500);
    assert.ok(st.body.data.findSceneMarkers.count > 0);
  });

  test('updated_at criterion: raw string comparison with prefix-match quirk (Z server)', async () => {
    const all = (await gql(f.url, '{ findScenes(filter:{per_page:-1, sort:"updated_at"}) { scenes { id updated_at } } }', {}, { headers: H })).body.data.findScenes.scenes;
    const row = all[Math.floor(all.length / 2)];
    assert.match(row.updated_at, /Z$/);
    const wall = row.updated_at.slice(0, 19);
    const q = (modifier, value, value2) => gql(f.url, IDS, { filter: { sort: 'updated_at', per_page: -1 }, scene_filter: { updated_at: { modifier, value, value2 } } }, { headers: H });
    let r = await q('GREATER_THAN', wall);
    assert.ok(ids(r).includes(row.id), 'GREATER_THAN "…:SS" matches the row stored at that exact second');
    assert.equal(r.body.data.findScenes.count, all.filter((s) => s.updated_at > wall).length);
    r = await q('GREATER_THAN', wall + '.999');
    assert.ok(ids(r).includes(row.id), "'.999' suffix does not help on a Z server: 'Z' sorts above '.'");
    r = await q('LESS_THAN', row.updated_at);
    assert.equal(r.body.data.findScenes.count, all.filter((s) => s.updated_at < row.updated_at).length);
    r = await q('EQUALS', row.updated_at);
    assert.ok(ids(r).includes(row.id));
    r = await q('BETWEEN', all[10].updated_at, all[20].updated_at);
    assert.equal(r.body.data.findScenes.count, all.filter((s) => s.updated_at >= all[10].updated_at && s.updated_at <= all[20].updated_at).length);
    // DESC with the same filter returns the same set reversed-by-key
    const d = await gql(f.url, IDS, { filter: { sort: 'updated_at', direction: 'DESC', per_page: -1 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: wall } } }, { headers: H });
    assert.equal(d.body.data.findScenes.count, all.filter((s) => s.updated_at > wall).length);
    // paging is consistent with the full list
    const p2 = await gql(f.url, IDS, { filter: { sort: 'updated_at', per_page: 7, page: 3 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: wall } } }, { headers: H });
    const fullR = await q('GREATER_THAN', wall);
    assert.deepEqual(ids(p2), ids(fullR).slice(14, 21));
  });

  test('control: edits bump updated_at; activity, renames and merges do not bump scenes', async () => {
    const S = `query($ids:[ID!]){ findScenes(ids:$ids){ scenes { id title updated_at play_count o_counter resume_time play_duration last_played_at studio { id } tags { id } performers { id } } } }`;
    const get = async (id) => (await gql(f.url, S, { ids: [String(id)] }, { headers: H })).body.data.findScenes.scenes[0];
    const snap0 = await control(f.url, 'snapshot');
    const before1 = await get(1);
    const maxBefore = snap0.max_updated_at;
    const e = await control(f.url, 'editScene', { id: '1', title: 'Edited Title', rating100: 77 });
    assert.ok(e.updated_at > maxBefore, 'strictly later than any existing value');
    const after1 = await get(1);
    assert.equal(after1.title, 'Edited Title');
    assert.equal(after1.updated_at, e.updated_at);
    const e2 = await control(f.url, 'editScene', { id: '2', tags: ['1', '2'] });
    assert.ok(e2.updated_at > e.updated_at);
    assert.deepEqual((await get(2)).tags, [{ id: '1' }, { id: '2' }]);
    // most recent first when sorting by updated_at DESC
    const top = await gql(f.url, IDS, { filter: { sort: 'updated_at', direction: 'DESC', per_page: 2 } }, { headers: H });
    assert.deepEqual(ids(top), ['2', '1']);

    await control(f.url, 'setActivity', { id: '3', play_count: 9, o_counter: 4, resume_time: 12.5, play_duration: 100, last_played_at: '2025-12-01T10:00:00Z' });
    const s3 = await get(3);
    assert.equal(s3.play_count, 9); assert.equal(s3.o_counter, 4); assert.equal(s3.resume_time, 12.5); assert.equal(s3.last_played_at, '2025-12-01T10:00:00Z');
    const lib = generateLibrary({ seed: 9, scenes: 500 });
    assert.equal(s3.updated_at, lib.scenes[2].updated_at, 'activity does not bump');

    const rt = await control(f.url, 'renameTag', { id: '1', name: 'Renamed Tag' });
    const tag = (await gql(f.url, '{ findTags(ids:["1"]) { tags { name updated_at } } }', {}, { headers: H })).body.data.findTags.tags[0];
    assert.equal(tag.name, 'Renamed Tag'); assert.equal(tag.updated_at, rt.updated_at);
    assert.equal((await get(2)).updated_at, e2.updated_at, 'tag rename does not bump scenes');
    await control(f.url, 'renamePerformer', { id: '1', name: 'New Name' });
    const pq = '{ findPerformers(ids:["1"]) { performers { name image_path updated_at } } }';
    const p0 = (await gql(f.url, pq, {}, { headers: H })).body.data.findPerformers.performers[0];
    const ni = await control(f.url, 'newImage', { kind: 'performer', id: '1' });
    const p1 = (await gql(f.url, pq, {}, { headers: H })).body.data.findPerformers.performers[0];
    assert.equal(p1.name, p0.name); assert.equal(p1.updated_at, ni.updated_at);
    assert.notEqual(p1.image_path, p0.image_path, 'a new image has a new URL');
    assert.equal((await get(2)).updated_at, e2.updated_at, 'a new image does not bump scenes');
    await assert.rejects(control(f.url, 'newImage', { kind: 'group', id: '1' }));
    await control(f.url, 'renameStudio', { id: '1', name: 'New Studio' });

    // merge tags 1,2 → 3 on scene 2 (a source named twice merges once)
    await control(f.url, 'mergeTags', { source: ['1', '2', '1'], destination: '3' });
    const s2 = await get(2);
    assert.deepEqual(s2.tags, [{ id: '3' }]);
    assert.equal(s2.updated_at, e2.updated_at, 'merge does not bump scenes');
    const gone = await gql(f.url, '{ findTags(ids:["1"]) { count } }', {}, { headers: H });
    assert.equal(gone.body.errors[0].message, 'tag with id 1 not found');

    await control(f.url, 'editScene', { id: '4', tags: ['5'], performers: ['2'], studio: '2' });
    const s4 = await get(4);
    await control(f.url, 'deleteTag', { id: '5' });
    await control(f.url, 'deletePerformer', { id: '2' });
    await control(f.url, 'deleteStudio', { id: '2' });
    const s4b = await get(4);
    assert.deepEqual(s4b.tags, []); assert.deepEqual(s4b.performers, []); assert.equal(s4b.studio, null);
    assert.equal(s4b.updated_at, s4.updated_at, 'deletes do not bump scenes');

    const add = await control(f.url, 'addScene', { title: 'Brand New' });
    assert.equal(add.id, '501');
    assert.equal((await get(501)).title, 'Brand New');
    await control(f.url, 'deleteScene', { id: '10' });
    const cnt = await gql(f.url, IDS, { filter: { per_page: 0 } }, { headers: H });
    assert.equal(cnt.body.data.findScenes.count, 500);
    const miss = await gql(f.url, IDS, { ids: ['10'] }, { headers: H });
    assert.equal(miss.body.errors[0].message, 'scene with id 10 not found');

    const clk = await control(f.url, 'setClock', { now: '2030-01-01T00:00:00Z' });
    assert.equal(clk.formatted, '2030-01-01T00:00:00Z');
    const e3 = await control(f.url, 'editScene', { id: '5', details: 'x' });
    assert.equal(e3.updated_at, '2030-01-01T00:00:00Z');
    const e4 = await control(f.url, 'editScene', { id: '6', details: 'y' });
    assert.equal(e4.updated_at, '2030-01-01T00:00:01Z', 'strictly later even with a fixed clock');

    const snap1 = await control(f.url, 'snapshot');
    assert.notEqual(snap1.hash, snap0.hash);
    assert.equal(snap1.counts.scenes, 500);
    assert.equal(snap1.counts.tags, 47);
    const again = await control(f.url, 'snapshot');
    assert.equal(again.hash, snap1.hash);

    const st = await control(f.url, 'stats');
    assert.ok(st.requests.SyncSceneIds > 5);
    const asked = st.gzipAsked;
    await gql(f.url, '{ version { version } }', {}, { headers: { ...H, 'Accept-Encoding': 'gzip, br' } });
    await gql(f.url, '{ version { version } }', {}, { headers: { ...H, 'Accept-Encoding': 'identity' } });
    assert.equal((await control(f.url, 'stats')).gzipAsked, asked + 1);

    const bad = await fetch(`${f.url}/__control`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ op: 'editScene', id: '99999' }) });
    assert.equal(bad.status, 404);
    const bad2 = await fetch(`${f.url}/__control`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ op: 'nope' }) });
    assert.equal(bad2.status, 400);
  });

  test('faults: status, slow, truncate, malformed, reset, errors, badgzip, clearFaults', async () => {
    const q = () => gql(f.url, IDS, { filter: { sort: 'id', per_page: 50 } }, { headers: H });
    await control(f.url, 'fault', { kind: 'status', code: 503, count: 2 });
    assert.equal((await q()).status, 503);
    assert.equal((await q()).status, 503);
    assert.equal((await q()).status, 200);

    await control(f.url, 'fault', { kind: 'slow', ms: 300, count: 1 });
    const t0 = Date.now();
    assert.equal((await q()).status, 200);
    assert.ok(Date.now() - t0 >= 290, 'slow fault delays the response');

    await control(f.url, 'fault', { kind: 'truncate', count: 1 });
    const raw = await rawPost(f.url, H, JSON.stringify({ query: IDS, variables: { filter: { sort: 'id', per_page: 50 } } }));
    assert.ok(raw.received < raw.contentLength, `truncated: ${raw.received} of ${raw.contentLength}`);
    assert.doesNotMatch(raw.head, /content-encoding/i);
    // asked for gzip: the cut lands in the gzip stream
    await control(f.url, 'fault', { kind: 'truncate', count: 1 });
    const rawGz = await rawPost(f.url, { ...H, 'Accept-Encoding': 'gzip' }, JSON.stringify({ query: IDS, variables: { filter: { sort: 'id', per_page: 50 } } }));
    assert.match(rawGz.head, /content-encoding: gzip/i);
    assert.ok(rawGz.received < rawGz.contentLength, `truncated: ${rawGz.received} of ${rawGz.contentLength}`);
    assert.deepEqual([...rawGz.body.subarray(0, 2)], [0x1f, 0x8b]);

    // a whole HTTP message carrying half a gzip stream
    await control(f.url, 'fault', { kind: 'badgzip', count: 1 });
    const bg = await rawPost(f.url, H, JSON.stringify({ query: IDS, variables: { filter: { sort: 'id', per_page: 50 } } }));
    assert.match(bg.head, /content-encoding: gzip/i);
    assert.equal(bg.received, bg.contentLength, 'the HTTP message is whole');
    assert.ok(bg.received > 20);
    assert.throws(() => zlib.gunzipSync(bg.body), /unexpected end of file/);

    await control(f.url, 'fault', { kind: 'malformed', count: 1 });
    const m = await q();
    assert.equal(m.status, 200);
    assert.equal(typeof m.body, 'string', 'body is not valid JSON');

    await control(f.url, 'fault', { kind: 'reset', count: 1 });
    await assert.rejects(q());

    await control(f.url, 'fault', { kind: 'errors', message: 'Internal system error. Error boom', count: 1 });
    const er = await q();
    assert.equal(er.status, 200);
    assert.equal(er.body.data, null);
    assert.equal(er.body.errors[0].message, 'Internal system error. Error boom');

    await control(f.url, 'fault', { kind: 'status', code: 500, count: 5 });
    await control(f.url, 'clearFaults');
    assert.equal((await q()).status, 200);
    const ctl = await fetch(`${f.url}/healthz`);
    assert.equal(ctl.status, 200, 'faults only apply to /graphql');
  });

  test('media: screenshot cache headers, preview 404, images, HEAD 405, stream 404 without media', async () => {
    let r = await fetch(`${f.url}/scene/1/screenshot?t=123`, { headers: H });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'private, max-age=31536000, immutable');
    const png = Buffer.from(await r.arrayBuffer());
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    r = await fetch(`${f.url}/scene/1/screenshot`, { headers: H });
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.equal((await fetch(`${f.url}/scene/1/preview`, { headers: H })).status, 404);
    assert.equal((await fetch(`${f.url}/scene/1/webp`, { headers: H })).status, 404);
    assert.equal((await fetch(`${f.url}/scene/1/stream`, { headers: H })).status, 404);
    for (const p of ['/performer/3/image', '/studio/3/image', '/tag/3/image', '/group/1/frontimage', '/gallery/1/cover']) {
      const x = await fetch(`${f.url}${p}?t=1`, { headers: H });
      assert.equal(x.status, 200, p);
      assert.equal(x.headers.get('content-type'), 'image/png');
    }
    assert.equal((await fetch(`${f.url}/performer/999999/image`, { headers: H })).status, 404);
    assert.equal((await fetch(`${f.url}/scene/1/screenshot`, { method: 'HEAD', headers: H })).status, 405);
  });
});

describe('fake stash (-08:00, no key, media dir)', () => {
  let f, dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peekd-media-'));
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25:duration=2', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path.join(dir, 'a_clip.mp4')]);
    f = await startFake(['--scenes', '200', '--seed', '4', '--tz', '-08:00', '--media-dir', dir]);
  });
  after(async () => { if (f) await f.stop(); if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  test('timestamps carry the server offset; wall-time watermark + prefix quirk', async () => {
    const all = (await gql(f.url, '{ findScenes(filter:{per_page:-1, sort:"updated_at"}) { scenes { id updated_at } } }')).body.data.findScenes.scenes;
    assert.ok(all.every((s) => s.updated_at.endsWith('-08:00')));
    const row = all[100];
    const wall = row.updated_at.slice(0, 19); // Stash-local wall time, no offset
    let r = await gql(f.url, IDS, { filter: { sort: 'updated_at', per_page: -1 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: wall } } });
    assert.ok(ids(r).includes(row.id), 'row at exactly that second matches (prefix quirk)');
    r = await gql(f.url, IDS, { filter: { sort: 'updated_at', per_page: -1 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: wall + '.999' } } });
    assert.ok(!ids(r).includes(row.id), "'.999' works for ±hh:mm servers ('-' sorts below '.')");
    // a UTC watermark against a -08:00 server is off by the offset
    const utc = new Date(Date.parse(row.updated_at)).toISOString().slice(0, 19) + 'Z';
    r = await gql(f.url, IDS, { filter: { sort: 'updated_at', per_page: -1 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: utc } } });
    assert.equal(r.body.data.findScenes.count, all.filter((s) => s.updated_at > utc).length);
    assert.ok(r.body.data.findScenes.count < all.length - 100 || all.filter((s) => s.updated_at > wall).length !== r.body.data.findScenes.count);
  });

  test('media dir: ffprobe metadata and Range/206 streaming', async () => {
    const q = `{ findScenes(ids:["1"]) { scenes { files { path basename size duration video_codec audio_codec width height frame_rate bit_rate format } } } }`;
    const file = (await gql(f.url, q)).body.data.findScenes.scenes[0].files[0];
    const size = fs.statSync(path.join(dir, 'a_clip.mp4')).size;
    assert.equal(file.path, '/data/media/a_clip.mp4');
    assert.equal(file.basename, 'a_clip.mp4');
    assert.equal(file.size, size);
    assert.equal(file.video_codec, 'h264'); assert.equal(file.audio_codec, 'aac');
    assert.equal(file.width, 320); assert.equal(file.height, 240); assert.equal(file.frame_rate, 25); assert.equal(file.format, 'mp4');
    assert.ok(Math.abs(file.duration - 2) < 0.2);
    let r = await fetch(`${f.url}/scene/1/stream`, { headers: { Range: 'bytes=0-99' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), `bytes 0-99/${size}`);
    assert.equal((await r.arrayBuffer()).byteLength, 100);
    r = await fetch(`${f.url}/scene/1/stream`, { headers: { Range: 'bytes=-10' } });
    assert.equal(r.status, 206);
    assert.equal((await r.arrayBuffer()).byteLength, 10);
    r = await fetch(`${f.url}/scene/1/stream`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.equal((await r.arrayBuffer()).byteLength, size);
    r = await fetch(`${f.url}/scene/1/stream`, { headers: { Range: `bytes=${size + 10}-` } });
    assert.equal(r.status, 416);
    assert.equal((await fetch(`${f.url}/scene/1/stream`, { method: 'HEAD' })).status, 405);
    assert.equal((await fetch(`${f.url}/scene/2/stream`)).status, 404);
  });

  test('without a configured key, a supplied key is rejected (Stash behaviour)', async () => {
    const r = await gql(f.url, IDS, {}, { headers: { ApiKey: 'whatever' } });
    assert.equal(r.status, 401);
    assert.equal((await gql(f.url, IDS, {})).status, 200);
  });
});

// ---- small raw-HTTP helpers
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
function require_http() { return require('node:http'); }
function rawPost(url, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(`${url}/graphql`);
    const sock = net.connect(Number(u.port), u.hostname, () => {
      const hdr = Object.entries({ ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' }).map(([k, v]) => `${k}: ${v}`).join('\r\n');
      sock.write(`POST /graphql HTTP/1.1\r\nHost: ${u.host}\r\n${hdr}\r\n\r\n${body}`);
    });
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    sock.on('error', () => {});
    sock.on('close', () => {
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return reject(new Error('no headers'));
      const head = buf.subarray(0, i).toString();
      const m = /content-length: (\d+)/i.exec(head);
      resolve({ head, contentLength: m ? Number(m[1]) : -1, received: buf.length - i - 4, body: buf.subarray(i + 4) });
    });
  });
}
