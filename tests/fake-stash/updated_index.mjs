// The fake Stash's updated_at index: one per collection, its objects in the order of the
// `updated_at` sort, ascending — the text of updated_at compared as SQLite BINARY (stash-api.md
// §6.1: Stash compares the stored RFC3339 text, it does not parse it), then the fake's tie-break
// (the NATURAL_CI name, then the numeric id). The control ops report every object whose
// updated_at or tie name they change (update), add or delete, so the order is never rebuilt: an
// `updated_at` criterion is a binary search and a page is a slice, as in a real Stash answering
// from an SQLite index. Without it the fake sorted the whole collection again after every edit,
// which made it, not peekd, the slow half of an incremental sync at 1M scenes
// (docs/FAKE_STASH.md has the numbers).
//
// Each entry keeps the key it was filed under, so an object changed behind the index's back is
// found by at() the first time a query returns it, instead of silently giving a wrong order.

import { binaryCompare, naturalCompare } from './order.mjs';

const nat = (a, b) => (a === b ? 0 : a === null || a === undefined ? -1 : b === null || b === undefined ? 1 : naturalCompare(a, b));
const entryCmp = (a, b) => binaryCompare(a.u, b.u) || nat(a.t, b.t) || a.n - b.n;

export class UpdatedIndex {
  /** items: the collection's objects (not modified); tie(x): x's tie-break name (null sorts first). */
  constructor(items, tie) {
    this.tie = tie;
    this.byN = []; // numeric id → its entry {u: updated_at, t: tie name, n: numeric id, x: object}
    // (ids are small dense integers: an array files 1M entries several times faster than a Map)
    const e = new Array(items.length);
    for (let i = 0; i < items.length; i++) e[i] = this.entry(items[i]);
    this.e = e.sort(entryCmp);
  }
  entry(x) {
    const en = { u: x.updated_at, t: this.tie(x), n: Number(x.id), x };
    this.byN[en.n] = en;
    return en;
  }
  get length() { return this.e.length; }

  /** The position of en, or where it belongs (entries are unique: the order is total). */
  seek(en) {
    const e = this.e;
    let lo = 0, hi = e.length;
    while (lo < hi) { const m = (lo + hi) >>> 1; if (entryCmp(e[m], en) < 0) lo = m + 1; else hi = m; }
    return lo;
  }
  /** The first position in [lo, hi) whose updated_at is above v (strict) or not below v. */
  bound(v, strict, lo = 0, hi = this.e.length) {
    const e = this.e;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      const c = binaryCompare(e[m].u, v);
      if (strict ? c <= 0 : c < 0) lo = m + 1; else hi = m;
    }
    return lo;
  }
  /** The positions [lo, hi) of the run of equal updated_at that holds position i. */
  run(i) {
    const u = this.e[i].u;
    return [this.bound(u, false, 0, i), this.bound(u, true, i + 1)];
  }

  insert(x) {
    if (this.byN[Number(x.id)]) throw new Error(`updated_at index: id ${x.id} is already filed`);
    const en = this.entry(x);
    this.e.splice(this.seek(en), 0, en);
  }
  delete(id) {
    const en = this.byN[Number(id)];
    if (!en) return;
    const i = this.seek(en);
    if (this.e[i] !== en) throw new Error(`updated_at index: id ${id} is not where its key says`);
    this.e.splice(i, 1);
    this.byN[en.n] = undefined;
  }
  /** Files x again after its updated_at or tie name changed (or might have). */
  update(x) {
    const en = this.byN[Number(x.id)];
    if (en && en.u === x.updated_at && en.t === this.tie(x)) return;
    this.delete(x.id);
    this.insert(x);
  }

  /** The object at position i; throws when it changed since it was filed without update(). */
  at(i) {
    const en = this.e[i];
    if (en.u !== en.x.updated_at || en.t !== this.tie(en.x)) {
      throw new Error(`updated_at index: object ${en.x.id} changed without an update() (filed as ${en.u})`);
    }
    return en.x;
  }
}

/**
 * The index read in the `updated_at` DESC order of the fake: the runs of equal updated_at from the
 * newest, and inside a run the same tie-break as ASC (name, then id), because only the sort key
 * is reversed. Returns at(i) for 0 ≤ i < length; reading i, i+1, … costs O(1) each (plus a
 * binary search per run), any other i a binary search.
 */
export function descending(ix) {
  const n = ix.length;
  let ci = -1, cp = -1, r0 = 0, r1 = 0; // DESC position ci is index position cp, in the run [r0, r1)
  return (i) => {
    if (ci >= 0 && i === ci + 1) {
      if (cp + 1 < r1) cp++;
      else { [r0, r1] = ix.run(r0 - 1); cp = r0; }
    } else {
      // DESC position i lies in the run of ASC position n-1-i; the run starts at DESC n-r1
      [r0, r1] = ix.run(n - 1 - i);
      cp = r0 + (i - (n - r1));
    }
    ci = i;
    return ix.at(cp);
  };
}
