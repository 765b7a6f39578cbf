// Ordering primitives of the fake Stash: Stash's random_<seed> key (stash-api.md §5.2) and the
// NATURAL_CI collation (BRIEF §4). Pure functions, imported by server.mjs and the tests.

const P = 2147483647;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/** Parses "random_<seed>" → seed % 1e8 (a Number), or null when `sort` is not a seeded random sort. */
export function parseRandomSeed(sort) {
  const m = /^random_(\d+)$/.exec(sort || '');
  if (!m) return null;
  const s = BigInt(m[1]);
  if (s > 18446744073709551615n) return null; // not a uint64 → Stash rejects
  return Number(s % 100000000n);
}

/**
 * Stash's ORDER BY key for random_<seed>, reproducing SQLite's arithmetic exactly:
 *   mod((id+seed)*(id+seed)*52959209 + (id+seed)*1047483763, 2147483647)
 * Integer multiply/add in int64; on overflow SQLite redoes that operation in double; mod() is
 * fmod on doubles. JS `%` on Numbers is the exact IEEE fmod.
 */
export function randomSortKey(id, seed) {
  const s = BigInt(id) + BigInt(seed);
  const sq = s * s; // s ≤ ~1e8 + ids ⇒ exact in int64
  let pDouble = null, pInt = sq * 52959209n;
  if (pInt > I64_MAX || pInt < I64_MIN) { pDouble = Number(sq) * 52959209; pInt = null; }
  const q = s * 1047483763n;
  let sum;
  if (pDouble !== null) sum = pDouble + Number(q);
  else {
    const t = pInt + q;
    sum = t > I64_MAX || t < I64_MIN ? Number(pInt) + Number(q) : Number(t);
  }
  return sum % P;
}

const isDigit = (c) => c >= 48 && c <= 57;
function foldCp(cp) {
  if (cp < 128) return cp >= 97 && cp <= 122 ? cp - 32 : cp; // ASCII: upper case
  const ch = String.fromCodePoint(cp);
  const lo = ch.toLowerCase(), up = ch.toUpperCase();
  let best = cp;
  if ([...lo].length === 1) best = Math.min(best, lo.codePointAt(0));
  if ([...up].length === 1) best = Math.min(best, up.codePointAt(0));
  return best; // lowest case-fold equivalent
}

/** NATURAL_CI: natural-order, case-insensitive comparison (Go sortorder/casefolded semantics). */
export function naturalCompare(a, b) {
  if (a === b) return 0;
  let i = 0, j = 0;
  const la = a.length, lb = b.length;
  while (i < la && j < lb) {
    const ca = a.codePointAt(i), cb = b.codePointAt(j);
    const da = isDigit(ca), db = isDigit(cb);
    if (da && db) {
      // digit runs: skip leading zeros, longer run larger, then lexicographic, then fewer zeros first
      let zi = i; while (zi < la && a.charCodeAt(zi) === 48) zi++;
      let zj = j; while (zj < lb && b.charCodeAt(zj) === 48) zj++;
      let ei = zi; while (ei < la && isDigit(a.charCodeAt(ei))) ei++;
      let ej = zj; while (ej < lb && isDigit(b.charCodeAt(ej))) ej++;
      const na = ei - zi, nb = ej - zj;
      if (na !== nb) return na < nb ? -1 : 1;
      for (let k = 0; k < na; k++) {
        const x = a.charCodeAt(zi + k), y = b.charCodeAt(zj + k);
        if (x !== y) return x < y ? -1 : 1;
      }
      const za = zi - i, zb = zj - j;
      if (za !== zb) return za < zb ? -1 : 1;
      i = ei; j = ej;
      continue;
    }
    if (da !== db) return da ? -1 : 1; // the digit side sorts first
    const fa = foldCp(ca), fb = foldCp(cb);
    if (fa !== fb) return fa < fb ? -1 : 1;
    i += ca > 0xffff ? 2 : 1;
    j += cb > 0xffff ? 2 : 1;
  }
  if (i < la) return 1;
  if (j < lb) return -1;
  return 0;
}

/** SQLite BINARY text order (UTF-8 bytes). For BMP-only text this equals UTF-16 order except
 *  for surrogates vs U+E000..U+FFFF, handled here. */
export function binaryCompare(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let k = 0; k < n; k++) {
    let x = a.charCodeAt(k), y = b.charCodeAt(k);
    if (x === y) continue;
    if (x >= 0xd800 && x <= 0xdfff && y >= 0xe000) return 1;
    if (y >= 0xd800 && y <= 0xdfff && x >= 0xe000) return -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length < 0 ? -1 : a.length === b.length ? 0 : 1;
}
