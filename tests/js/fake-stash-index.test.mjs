// The fake Stash's updated_at index (tests/fake-stash/updated_index.mjs) against the plain answer:
// after random control-API edits, every updated_at-sorted query (ASC and DESC, every modifier, no
// criterion, any page) must return the same objects in the same order with the same count as
// sorting the collection afresh and testing every object. In process, on small libraries with
// many equal updated_at values and NATURAL_CI-equal names, so the tie-break is exercised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeStash, findMany } from '../fake-stash/server.mjs';

const KINDS = ['scene', 'tag', 'performer', 'studio', 'group', 'gallery'];
const MODIFIERS = ['GREATER_THAN', 'LESS_THAN', 'EQUALS', 'NOT_EQUALS', 'BETWEEN', 'NOT_BETWEEN', 'IS_NULL', 'NOT_NULL'];
const FILTER_ARG = { scene: 'scene_filter', tag: 'tag_filter', performer: 'performer_filter', studio: 'studio_filter', group: 'group_filter', gallery: 'gallery_filter' };
// NATURAL_CI-equal or -adjacent names, so objects filed at the same second tie on the name too
const NAMES = ['Scene 7', 'scene 7', 'Scene 007', 'Scene 07', 'SCENE 7', 'Scene 8', 'alpha', 'Alpha', 'ALPHA', 'İstanbul', 'straße', 'Zeta'];

function prng(seed) { // mulberry32
  let a = seed >>> 0;
  const next = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  return { next, int, pick: (arr) => arr[int(0, arr.length - 1)], chance: (p) => next() < p };
}

/** A library whose updated_at values collide a lot (before any index exists). */
function tiedLibrary(tz, seed) {
  const fake = new FakeStash({ scenes: 1200, seed: 11, tz });
  const r = prng(seed);
  for (const kind of KINDS) {
    const arr = fake.c[kind].arr;
    assert.equal(fake.c[kind].uidx, null, 'the index is built by the first query, not before');
    const stamps = arr.slice(0, 6).map((x) => x.updated_at);
    for (const x of arr) {
      if (r.chance(0.35)) x.updated_at = r.pick(stamps);
      if (kind === 'scene' && r.chance(0.2)) x.title = r.chance(0.2) ? null : r.pick(NAMES);
      else if (kind === 'gallery' && r.chance(0.2)) x.title = r.chance(0.2) ? null : r.pick(NAMES);
      else if (kind !== 'scene' && kind !== 'gallery' && r.chance(0.2)) x.name = r.pick(NAMES);
    }
  }
  return fake;
}

function randomOp(fake, r) {
  const C = fake.c;
  const some = (kind) => r.pick(C[kind].arr).id;
  switch (r.int(0, 12)) {
    case 0: case 1: case 2: case 3: {
      const f = { id: some('scene') };
      if (r.chance(0.6)) f.title = r.chance(0.15) ? null : r.pick(NAMES);
      if (r.chance(0.3)) f.details = `d${r.int(0, 9)}`;
      return { op: 'editScene', ...f };
    }
    case 4: return { op: 'setActivity', id: some('scene'), play_count: r.int(0, 5) };
    case 5: {
      const kind = r.pick(['tag', 'performer', 'studio']);
      return { op: `rename${kind[0].toUpperCase()}${kind.slice(1)}`, id: some(kind), name: r.pick(NAMES) };
    }
    case 6: {
      if (C.tag.arr.length <= 10) return null;
      const a = some('tag'), b = some('tag');
      return { op: 'mergeTags', source: a === b ? [a] : [a, b], destination: some('tag') };
    }
    case 7: return C.tag.arr.length > 10 ? { op: 'deleteTag', id: some('tag') } : null;
    case 8: return C.performer.arr.length > 10 ? { op: 'deletePerformer', id: some('performer') } : null;
    case 9: return C.studio.arr.length > 5 ? { op: 'deleteStudio', id: some('studio') } : null;
    case 10: return { op: 'deleteScene', id: some('scene') };
    case 11: return { op: 'addScene', ...(r.chance(0.5) ? { title: r.pick(NAMES) } : {}) };
    default: // the clock moves either way; bumps stay strictly later than any stored value
      return { op: 'setClock', now: r.chance(0.5) ? '2020-01-01T00:00:00Z' : `2026-0${r.int(1, 9)}-01T00:00:00Z` };
  }
}

/** A value to compare updated_at with: a stored one, its wall time (the prefix quirk), or odd text. */
function value(fake, kind, r) {
  const u = r.pick(fake.c[kind].arr).updated_at;
  switch (r.int(0, 6)) {
    case 0: return u;
    case 1: return u.slice(0, 19);
    case 2: return u.slice(0, 19) + '.999';
    case 3: return u.slice(0, r.int(1, 18));
    case 4: return r.pick(['', '0', '2', '9999', 'Z', '2025-12-18T12:00:00Z']);
    default: return u;
  }
}

function randomQuery(fake, kind, r) {
  const filter = { sort: 'updated_at', per_page: r.pick([-1, 0, 1, 2, 3, 7, 25, 1000]), page: r.pick([undefined, 0, 1, 1, 2, 3, 9]) };
  if (r.chance(0.5)) filter.direction = 'DESC';
  else if (r.chance(0.5)) filter.direction = 'ASC';
  const args = { filter };
  if (r.chance(0.85)) {
    const c = { modifier: r.pick(MODIFIERS), value: value(fake, kind, r) };
    if (r.chance(0.7)) c.value2 = value(fake, kind, r);
    else if (r.chance(0.5)) c.value2 = null;
    args[FILTER_ARG[kind]] = { updated_at: c };
  }
  return args;
}

function answer(fake, kind, args, reference) {
  const res = findMany(fake, kind, fake.c[kind], args, null, { reference });
  return { count: res.count, rows: res.rows.map((x) => x.id), all: res.all().map((x) => x.id) };
}

for (const tz of ['Z', '-08:00']) {
  test(`updated_at index equals sort-and-scan after random edits (${tz})`, () => {
    const seed = tz === 'Z' ? 20251218 : 4242;
    const fake = tiedLibrary(tz, seed);
    const r = prng(seed + 1);
    let queries = 0, nonEmpty = 0;
    for (let round = 0; round < 60; round++) {
      for (let k = r.int(1, 6); k > 0; k--) {
        const op = randomOp(fake, r);
        if (op) fake.control(op);
      }
      for (let q = 0; q < 30; q++) {
        const kind = r.pick(KINDS);
        const args = randomQuery(fake, kind, r);
        const got = answer(fake, kind, args, false);
        const want = answer(fake, kind, args, true);
        assert.deepEqual(got, want, `round ${round} (seed ${seed}): ${kind} ${JSON.stringify(args)}`);
        queries++;
        if (want.rows.length) nonEmpty++;
      }
      // the index itself is in the ASC order of a fresh sort
      for (const kind of KINDS) {
        const ix = fake.c[kind].uidx;
        if (!ix) continue;
        const want = answer(fake, kind, { filter: { sort: 'updated_at', per_page: -1 } }, true).all;
        assert.deepEqual(ix.e.map((en) => en.x.id), want, `round ${round}: ${kind} index order`);
      }
    }
    for (const kind of KINDS) assert.ok(fake.c[kind].uidx, `${kind}: the queries went through the index`);
    assert.ok(nonEmpty > queries / 3, `enough queries return rows (${nonEmpty}/${queries})`);
  });
}

test('updated_at index: the incremental walk peekd sends, after 200 edits, is served by binary search', () => {
  const fake = new FakeStash({ scenes: 3000, seed: 3 });
  const args = (thr, page) => ({ filter: { sort: 'updated_at', direction: 'ASC', page, per_page: 100 }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: thr } } });
  findMany(fake, 'scene', fake.c.scene, args('2000', 1), null); // builds the index
  const first = fake.control({ op: 'editScene', id: '1', title: 'x' }).updated_at;
  for (let i = 2; i <= 200; i++) fake.control({ op: 'editScene', id: String(i * 15), title: `e${i}` });
  // count how many objects the answer reads: a scan would read all 3000
  const ix = fake.c.scene.uidx;
  let reads = 0;
  const at = ix.at.bind(ix);
  ix.at = (i) => { reads++; return at(i); };
  const thr = first.slice(0, 19);
  const got = findMany(fake, 'scene', fake.c.scene, args(thr, 2), null);
  assert.equal(got.count, 200);
  assert.deepEqual(got.rows.map((x) => x.id), Array.from({ length: 100 }, (_, k) => String((k + 101) * 15)));
  assert.ok(reads < 100 + 2 * 13, `${reads} reads for a 100-row page`);
  assert.deepEqual(answer(fake, 'scene', args(thr, 2), false), answer(fake, 'scene', args(thr, 2), true));
});

test('updated_at index: a change behind its back fails the query instead of answering wrongly', () => {
  const fake = new FakeStash({ scenes: 200, seed: 3 });
  const q = { filter: { sort: 'updated_at', per_page: -1 } };
  findMany(fake, 'scene', fake.c.scene, q, null);
  fake.c.scene.byId.get('7').updated_at = '2030-01-01T00:00:00Z'; // no reindex()
  assert.throws(() => findMany(fake, 'scene', fake.c.scene, q, null), /object 7 changed without an update\(\)/);
});

test('control op updatedIndex: off sorts as before (same answers), bad argument → 400', () => {
  const fake = new FakeStash({ scenes: 300, seed: 3 });
  fake.control({ op: 'editScene', id: '5', title: 'x' });
  const q = { filter: { sort: 'updated_at', direction: 'DESC', per_page: 10, page: 2 }, scene_filter: { updated_at: { modifier: 'LESS_THAN', value: '2024' } } };
  const on = answer(fake, 'scene', q, false);
  assert.deepEqual(fake.control({ op: 'updatedIndex', on: false }), { on: false });
  assert.deepEqual(answer(fake, 'scene', q, false), on);
  assert.ok(fake.c.scene.orders.has('updated_at:D'), 'off: the sorted copy was built and cached');
  fake.control({ op: 'editScene', id: '6', title: 'y' }); // maintained while off
  fake.control({ op: 'updatedIndex', on: true });
  assert.deepEqual(answer(fake, 'scene', q, false), answer(fake, 'scene', q, true));
  assert.throws(() => fake.control({ op: 'updatedIndex', on: 'no' }), (e) => e.status === 400);
});
