// Times the fake Stash answering an incremental scene walk the way peekd's walk_incremental asks
// it (sync/sync_run.c): updated_at GREATER_THAN (max updated_at − 1 h, wall time, no offset),
// sort updated_at ASC, a per_page 0 count, then pages of 1000 with keyset on the last row's wall
// time. Runs against a fake that is already listening; it edits scenes through the control API,
// so point it at a fake of your own, never a shared one.
//
//   node tests/fake-stash/bench_incremental.mjs --url http://127.0.0.1:P [--edits 1000] [--rounds 3]
//
// First the probe a full sync sends (updated_at DESC, per_page 1). Per round: --edits editScene
// calls spread over the ids (as tools/bench.sh does), then the walk twice: "after edits" (the first
// queries after a mutation) and "again" (nothing changed since). Prints one line per walk:
// requests, rows, total ms, and the count request's and the pages' ms. The control op
// {"op":"updatedIndex","on":false} switches the fake back to sorting, to compare.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DOC = readFileSync(path.join(here, '..', '..', 'sync', 'queries', 'SyncScenes.graphql'), 'utf8');

function args(argv) {
  const a = { url: null, edits: 1000, rounds: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a) || argv[i + 1] === undefined) throw new Error(`usage: --url URL [--edits N] [--rounds N] (bad ${argv[i]})`);
    a[k] = k === 'url' ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!a.url) throw new Error('--url is required');
  if (!(a.edits >= 1) || !(a.rounds >= 1)) throw new Error('--edits and --rounds must be at least 1');
  return a;
}

async function post(url, path_, body) {
  const r = await fetch(url + path_, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (r.status !== 200 || j.errors) throw new Error(`${path_} → ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
  return j;
}

const wallMinusHour = (ts) => new Date(Date.parse(ts.slice(0, 19) + 'Z') - 3600e3).toISOString().slice(0, 19);

async function walk(url, thr) {
  const q = (page, perPage, after) => post(url, '/graphql', {
    query: DOC, operationName: 'SyncScenes',
    variables: { filter: { page, per_page: perPage, sort: 'updated_at', direction: 'ASC' }, scene_filter: { updated_at: { modifier: 'GREATER_THAN', value: after } } },
  });
  let t = performance.now();
  const total = (await q(1, 0, thr)).data.findScenes.count;
  const countMs = performance.now() - t;
  const pageMs = [];
  let rows = 0, page = 1;
  while (total > 0) {
    t = performance.now();
    const list = (await q(page, 1000, thr)).data.findScenes.scenes;
    pageMs.push(performance.now() - t);
    rows += list.length;
    if (list.length < 1000) break;
    const last = list[list.length - 1].updated_at.slice(0, 19);
    if (last > thr) { thr = last; page = 1; } else page++;
  }
  return { requests: 1 + pageMs.length, rows, total, countMs, pageMs };
}

const a = args(process.argv.slice(2));
const n = (await post(a.url, '/graphql', { query: '{ findScenes(filter: {per_page: 0}) { count } }' })).data.findScenes.count;
{ // what a full sync asks first (its watermark probe); builds the updated_at index if not built yet
  const t = performance.now();
  await post(a.url, '/graphql', { query: DOC, operationName: 'SyncScenes', variables: { filter: { page: 1, per_page: 1, sort: 'updated_at', direction: 'DESC' } } });
  console.log(`probe (updated_at DESC, per_page 1): ${(performance.now() - t).toFixed(0)} ms`);
}
const fmt = (w) => `${w.requests} requests, ${w.rows} rows (count ${w.total}): ${(w.countMs + w.pageMs.reduce((s, x) => s + x, 0)).toFixed(0)} ms` +
  ` [count ${w.countMs.toFixed(0)} ms, pages ${w.pageMs.map((x) => x.toFixed(0)).join(' ')} ms]`;
for (let round = 1; round <= a.rounds; round++) {
  // the first edit's updated_at is one second after the library's newest: the watermark peekd
  // would hold before the edits (give or take that second)
  let before = null;
  const te = performance.now();
  for (let i = 0; i < a.edits; i++) {
    const id = 1 + Math.floor((i * n) / a.edits);
    const e = await post(a.url, '/__control', { op: 'editScene', id: String(id), title: `Bench ${round}.${i}` });
    before ??= e.updated_at;
  }
  const editMs = performance.now() - te;
  const thr = wallMinusHour(before);
  console.log(`round ${round}: ${n} scenes, ${a.edits} edits in ${editMs.toFixed(0)} ms, updated_at > ${thr}`);
  console.log(`  after edits: ${fmt(await walk(a.url, thr))}`);
  console.log(`  again:       ${fmt(await walk(a.url, thr))}`);
}
