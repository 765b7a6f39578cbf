// Deterministic synthetic Stash library: the single source of peekd's test and benchmark data.
//
//   import { generateLibrary } from './generate.mjs'
//   node tests/gen/generate.mjs --seed S --scenes N --out DIR [--tz Z|-08:00]
//
// Every object has exactly the shape (keys, key order, JSON types) that the matching
// sync/queries/Sync*.graphql document returns from Stash. Relations are `{id: "…"}` objects,
// ids are strings. URLs use PLACEHOLDER_BASE as host; the fake Stash substitutes its own base.
// No npm dependencies.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export const PLACEHOLDER_BASE = 'http://stash.invalid';
/** The library's "now": every generated timestamp is <= this (unix seconds, 2025-12-18T12:00:00Z). */
export const LIBRARY_NOW = Date.UTC(2025, 11, 18, 12, 0, 0) / 1000;
const FIVE_YEARS = 5 * 365 * 86400;

// ---------------------------------------------------------------------------------------------
// PRNG: sfc32 seeded through murmur3's fmix32. One independent stream per (seed, kind, id), so
// any entity can be regenerated on its own (the fake's addScene uses this).
const HEXBUF = Buffer.alloc(64);
function fmix32(h) {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  constructor(seed, kind = 0, id = 0) {
    const s = seed >>> 0, hi = Math.floor(seed / 4294967296) >>> 0;
    this.a = fmix32(s ^ 0x9e3779b9);
    this.b = fmix32(hi ^ Math.imul(kind + 1, 0x85ebca6b) ^ 0x243f6a88);
    this.c = fmix32((id >>> 0) ^ 0xb7e15162);
    this.d = fmix32(Math.floor(id / 4294967296) ^ Math.imul(kind + 7, 0xc2b2ae35) ^ 0x1234567);
    for (let i = 0; i < 12; i++) this.next();
  }
  next() {
    let { a, b, c, d } = this;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    this.a = a; this.b = b; this.c = c; this.d = d;
    return t >>> 0;
  }
  float() { return this.next() / 4294967296; }
  int(lo, hi) { return lo + Math.floor(this.float() * (hi - lo + 1)); } // inclusive
  chance(p) { return this.float() < p; }
  pick(arr) { return arr[Math.floor(this.float() * arr.length)]; }
  weighted(table) { // table: [[value, weight], ...] with precomputed total in table.total
    let r = this.float() * table.total;
    for (const [v, w] of table) { if ((r -= w) < 0) return v; }
    return table[table.length - 1][0];
  }
  hex(n) { // n hex digits, a flat string
    const b = HEXBUF;
    for (let i = 0; i < n; i += 8) b.writeUInt32BE(this.next(), i >> 1);
    return b.toString('hex', 0, n >> 1);
  }
}
const KIND = { scene: 1, tag: 2, studio: 3, performer: 4, group: 5, gallery: 6, layout: 7 };

function table(pairs) { pairs.total = pairs.reduce((s, p) => s + p[1], 0); return pairs; }

// Zipf sampler over n items, popularity rank permuted by a seeded shuffle.
class Zipf {
  constructor(n, s, rng) {
    this.n = n;
    this.cdf = new Float64Array(n);
    let acc = 0;
    for (let i = 0; i < n; i++) { acc += 1 / Math.pow(i + 1, s); this.cdf[i] = acc; }
    this.total = acc;
    this.perm = new Int32Array(n);
    for (let i = 0; i < n; i++) this.perm[i] = i;
    for (let i = n - 1; i > 0; i--) { const j = Math.floor(rng.float() * (i + 1)); const t = this.perm[i]; this.perm[i] = this.perm[j]; this.perm[j] = t; }
  }
  sample(rng) { // returns a 0-based index
    const r = rng.float() * this.total;
    let lo = 0, hi = this.n - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.cdf[mid] < r) lo = mid + 1; else hi = mid; }
    return this.perm[lo];
  }
  distinct(rng, k) {
    k = Math.min(k, this.n);
    const out = [];
    for (let tries = 0; out.length < k && tries < k * 8; tries++) {
      const v = this.sample(rng);
      if (!out.includes(v)) out.push(v);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Timestamps: RFC3339, second precision, in a fixed offset ("Z" or "±hh:mm").
export function parseTz(tz) {
  if (tz === undefined || tz === null || tz === '' || tz === 'Z' || tz === 'z') return { minutes: 0, suffix: 'Z' };
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(tz);
  if (!m) throw new Error(`bad --tz ${tz} (want Z or ±hh:mm)`);
  const minutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  return { minutes, suffix: `${m[1]}${m[2]}:${m[3]}` };
}
const p2 = (n) => (n < 10 ? '0' + n : '' + n);
export function formatTs(unix, tz) {
  const d = new Date((unix + tz.minutes * 60) * 1000);
  const iso = d.toISOString(); // flat string "YYYY-MM-DDTHH:MM:SS.sssZ" (years 0000-9999)
  return [iso.slice(0, 19), tz.suffix].join(''); // join → a flat string (no cons/sliced string retained)
}
/** unix seconds of an RFC3339 string as stored (any offset). */
export function tsUnix(s) { return Math.floor(Date.parse(s) / 1000); }

function fuzzyDate(rng, fromYear, toYear, pNull) {
  if (rng.chance(pNull)) return null;
  const y = rng.int(fromYear, toYear);
  const r = rng.float();
  if (r < 0.06) return String(y);
  const m = rng.int(1, 12);
  if (r < 0.12) return `${y}-${p2(m)}`;
  const dim = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return `${y}-${p2(m)}-${p2(rng.int(1, dim))}`;
}

// ---------------------------------------------------------------------------------------------
// URL builders shared with the fake (which passes its own base URL).
export function scenePaths(base, id, updatedAt, hash) {
  return {
    screenshot: `${base}/scene/${id}/screenshot?t=${tsUnix(updatedAt)}`,
    preview: `${base}/scene/${id}/preview`,
    webp: `${base}/scene/${id}/webp`,
    vtt: `${base}/scene/${hash}_thumbs.vtt`,
    sprite: `${base}/scene/${hash}_sprite.jpg`,
    funscript: `${base}/scene/${id}/funscript`,
    caption: `${base}/scene/${id}/caption`,
  };
}
export function imagePath(base, kind, id, updatedAt) { // kind: performer|studio|tag
  return `${base}/${kind}/${id}/image?t=${tsUnix(updatedAt)}`;
}
export function groupImagePath(base, id, updatedAt, which) { // which: frontimage|backimage
  return `${base}/group/${id}/${which}?t=${tsUnix(updatedAt)}`;
}
export function galleryCoverPath(base, id, updatedAt) {
  return `${base}/gallery/${id}/cover?t=${tsUnix(updatedAt)}`;
}
/** The hash used for vtt/sprite URLs (Stash's default naming algorithm: oshash). */
export function sceneHash(scene) {
  const f = scene.files[0];
  if (!f) return String(scene.id);
  const fp = f.fingerprints.find((x) => x.type === 'oshash') || f.fingerprints.find((x) => x.type === 'md5');
  return fp ? fp.value : String(scene.id);
}

// ---------------------------------------------------------------------------------------------
// Vocabulary.
const WORDS = ('amber azure blue bright calm candid city classic coastal cozy crimson dawn deep desert dream dusk echo electric emerald '
  + 'evening falling fast fire forest frozen garden gentle glass golden grand green harbor hidden highland holiday honey '
  + 'island ivory jade late lazy light lunar meadow midnight misty modern morning mountain neon night north ocean open '
  + 'orchard pale paper quiet rain red river rose rustic salt sapphire secret shadow silent silver sky slow snow solar '
  + 'spring stone storm summer sunset sweet tender thunder tide timber twilight urban velvet violet warm wild willow '
  + 'winter wonder').split(' ');
const NOUNS = ('affair afternoon album archive balcony beach cabin canyon chapter city coast concert corner dance diary '
  + 'drive escape evening festival film garden getaway harbor hotel island journey kitchen lake letter lounge market '
  + 'memory moment morning night office party picnic pool portrait road rooftop session story studio suite summer '
  + 'sunrise tale terrace tour train trip vacation valley villa voyage weekend window workshop').split(' ');
const UNICODE_TITLES = ['東京の夜', '夏の思い出 2', 'ソウル 스토리', '北京之旅', 'Café Crème', 'Crème brûlée à Paris', 'Ñandú en la montaña',
  'Straße der Träume', 'Große Füße', 'Istanbul’da bir gün ı', 'Kış Işığı', 'DİYARBAKIR ılık', 'Ζεστό καλοκαίρι', 'Москва ночью',
  'Smile 😀 Day', '🔥 Hot Summer 🔥', 'Ångström Ørsted', 'Łódź Żółć', 'naïve résumé', 'ﬁnal ﬂight', 'São Paulo ação'];
const FIRST = ['Alice', 'Bella', 'Chloe', 'Dana', 'Eva', 'Fiona', 'Gina', 'Hana', 'Iris', 'Jade', 'Kira', 'Lena', 'Mia', 'Nora', 'Olga',
  'Paula', 'Quinn', 'Rosa', 'Sara', 'Tara', 'Uma', 'Vera', 'Wren', 'Xena', 'Yuki', 'Zoe', 'Adam', 'Ben', 'Carl', 'Dan', 'Eric', 'Finn',
  'Hugo', 'Ivan', 'Jon', 'Karl', 'Leo', 'Max', 'Nils', 'Omar', 'Zoë', 'Chloé', 'José', 'Ümit', 'Işıl', 'Jürgen', 'Ågot', '美咲', '유나'];
const LAST = ['Adams', 'Brown', 'Clark', 'Davis', 'Evans', 'Fox', 'Gray', 'Hill', 'Ivers', 'Jones', 'King', 'Lee', 'Moore', 'Nash',
  'Owens', 'Price', 'Quill', 'Reed', 'Stone', 'Taylor', 'Underwood', 'Vance', 'White', 'Young', 'Zimmer', 'Müller', 'Straßer',
  'Öztürk', 'Yılmaz', 'García', 'Núñez', 'Łukasik', '山田', '김'];
const COUNTRIES = ['US', 'GB', 'DE', 'FR', 'JP', 'KR', 'CZ', 'HU', 'RU', 'UA', 'BR', 'ES', 'IT', 'NL', 'SE', 'TR', 'CA', 'AU'];
const GENDERS = table([['FEMALE', 60], ['MALE', 25], ['TRANSGENDER_FEMALE', 3], ['TRANSGENDER_MALE', 1], ['INTERSEX', 0.5], ['NON_BINARY', 1.5], [null, 9]]);
const STUDIO_WORDS = ['Pictures', 'Studios', 'Media', 'Films', 'Productions', 'Works', 'Digital', 'Entertainment', 'Network', 'Labs'];
const RESOLUTIONS = table([[[1920, 1080], 34], [[1280, 720], 18], [[3840, 2160], 10], [[854, 480], 7], [[640, 360], 5], [[2560, 1440], 4],
  [[1080, 1920], 6], [[720, 1280], 3], [[5760, 2880], 3], [[4096, 2048], 2], [[320, 240], 2], [[176, 144], 1], [[1440, 1080], 2], [[1920, 800], 3]]);
const VCODECS = table([['h264', 55], ['hevc', 20], ['vp9', 8], ['av1', 5], ['mpeg4', 7], ['wmv2', 5]]);
const FORMATS_FOR = {
  h264: table([['mp4', 70], ['matroska', 25], ['avi', 5]]), hevc: table([['mp4', 60], ['matroska', 40]]),
  vp9: table([['webm', 70], ['matroska', 30]]), av1: table([['mp4', 40], ['webm', 30], ['matroska', 30]]),
  mpeg4: table([['avi', 70], ['mp4', 30]]), wmv2: table([['avi', 100]]),
};
const ACODECS_FOR = {
  mp4: table([['aac', 85], ['ac3', 5], ['mp3', 3], ['', 7]]), matroska: table([['aac', 40], ['ac3', 25], ['opus', 20], ['mp3', 5], ['', 10]]),
  webm: table([['opus', 85], ['', 15]]), avi: table([['mp3', 70], ['ac3', 20], ['', 10]]),
};
const EXT = { mp4: 'mp4', matroska: 'mkv', webm: 'webm', avi: 'avi' };
const FPS = table([[29.97, 30], [30, 20], [25, 15], [23.976, 15], [59.94, 10], [60, 10]]);
const STASH_BOXES = ['https://stashdb.org/graphql', 'https://fansdb.cc/graphql'];

function words(rng, n) { const out = []; for (let i = 0; i < n; i++) out.push(rng.chance(0.5) ? rng.pick(WORDS) : rng.pick(NOUNS)); return out.join(' '); }
function cap(s) { return s.charAt(0).toUpperCase() + s.slice(1); }
function sentence(rng) { return cap(words(rng, rng.int(6, 16))) + '.'; }
function paragraph(rng, minChars) {
  const parts = [sentence(rng)];
  let len = parts[0].length;
  while (len < minChars) { const x = sentence(rng); parts.push(x); len += x.length + 1; }
  return parts.join(' ');
}
/** Long-lived strings built by concatenation are V8 cons-string trees; a flat copy keeps the fake's
 *  1M-scene heap small. normalize() returns a flat copy; content is kept as is. */
function flat(s) {
  if (s === null || s.length < 13) return s;
  const n = s.normalize();
  return n === s ? n : s;
}
function personName(rng) { return `${rng.pick(FIRST)} ${rng.pick(LAST)}`; }
function uuid(rng) { const h = rng.hex(32); return [h.slice(0, 8), h.slice(8, 12), '4' + h.slice(13, 16), 'a' + h.slice(17, 20), h.slice(20, 32)].join('-'); }
function slug(s) { return s.normalize('NFKD').replace(/[^\w\s.-]/g, '').trim().replace(/\s+/g, '_') || 'untitled'; }
function ratingOrNull(rng, pNull) { return rng.chance(pNull) ? null : rng.int(1, 100); }
function round(x, d) { const f = 10 ** d; return Math.round(x * f) / f; }
/** created_at / updated_at pair, updated >= created, both <= LIBRARY_NOW. */
function stamps(rng, tz, span = FIVE_YEARS) {
  const created = LIBRARY_NOW - rng.int(86400, span);
  const updated = rng.chance(0.55) ? created : created + rng.int(0, LIBRARY_NOW - created);
  return { created, updated, created_at: formatTs(created, tz), updated_at: formatTs(updated, tz) };
}

// ---------------------------------------------------------------------------------------------
export function entityCounts(n) {
  return {
    tags: Math.min(5000, Math.max(50, Math.floor(n / 100))),
    performers: Math.min(50000, Math.max(20, Math.floor(n / 20))),
    studios: Math.min(3000, Math.max(10, Math.floor(n / 200))),
    groups: Math.max(5, Math.floor(n / 100)),
    galleries: Math.max(5, Math.floor(n / 20)),
  };
}

/**
 * Builds the small entity tables and returns a context able to produce any scene by id.
 * {seed, scenes, tzOffset, base, scenePathsToo} → {tags, studios, performers, groups, galleries, sceneCount, makeScene(id)}
 * scenePathsToo=false leaves scene.paths null (saves ~700 B per scene in the fake, which builds them per request).
 */
export function createLibrary({ seed = 1, scenes = 1000, tzOffset = 'Z', base = PLACEHOLDER_BASE, scenePathsToo = true } = {}) {
  const tz = parseTz(tzOffset);
  const counts = entityCounts(scenes);
  const layout = new Rng(seed, KIND.layout, 0);

  // Tags: unique names, DAG in levels 0..4 (parents only from the previous level ⇒ acyclic, depth ≤ 4).
  const nT = counts.tags;
  const tagLevelStart = [0, 0.1, 0.3, 0.6, 0.85].map((f) => Math.floor(nT * f));
  const levelOf = (i, starts) => { let l = 0; while (l + 1 < starts.length && i >= starts[l + 1]) l++; return l; };
  const tagNames = new Set();
  const tags = [];
  for (let i = 0; i < nT; i++) {
    const id = i + 1, rng = new Rng(seed, KIND.tag, id);
    let name = i % 97 === 13 ? rng.pick(UNICODE_TITLES).split(' ')[0] : (rng.chance(0.5) ? cap(rng.pick(WORDS)) + ' ' + rng.pick(NOUNS) : cap(rng.pick(NOUNS)));
    if (tagNames.has(name)) name = `${name} ${id}`;
    tagNames.add(name);
    const lvl = levelOf(i, tagLevelStart);
    const parents = [];
    if (lvl > 0 && !rng.chance(0.1)) {
      const lo = tagLevelStart[lvl - 1], hi = tagLevelStart[lvl] - 1;
      const k = rng.chance(0.75) ? 1 : rng.chance(0.7) ? 2 : 3;
      for (let j = 0; j < k && hi >= lo; j++) { const p = rng.int(lo, hi) + 1; if (!parents.includes(p)) parents.push(p); }
    }
    const st = stamps(rng, tz);
    tags.push({
      id: String(id), name,
      sort_name: rng.chance(0.08) ? name.replace(/^(The|A) /, '') + ' ' + p2(rng.int(0, 99)) : null,
      aliases: rng.chance(0.2) ? [`${name} alias`, ...(rng.chance(0.3) ? [`${name.toLowerCase()}s`] : [])] : [],
      favorite: rng.chance(0.05),
      description: rng.chance(0.3) ? sentence(rng) : null,
      image_path: imagePath(base, 'tag', id, st.updated_at),
      parents: parents.map((p) => ({ id: String(p) })),
      created_at: st.created_at, updated_at: st.updated_at,
    });
  }

  // Studios: tree, levels 0..2 (depth ≤ 3).
  const nS = counts.studios;
  const stuLevelStart = [0, 0.3, 0.7].map((f) => Math.floor(nS * f));
  const studioNames = new Set();
  const studios = [];
  for (let i = 0; i < nS; i++) {
    const id = i + 1, rng = new Rng(seed, KIND.studio, id);
    let name = `${cap(rng.pick(WORDS))} ${rng.pick(STUDIO_WORDS)}`;
    if (i % 53 === 7) name = `${rng.pick(UNICODE_TITLES).split(' ')[0]} ${rng.pick(STUDIO_WORDS)}`;
    if (studioNames.has(name)) name = `${name} ${id}`;
    studioNames.add(name);
    const lvl = levelOf(i, stuLevelStart);
    let parent = null;
    if (lvl > 0 && !rng.chance(0.2)) parent = { id: String(rng.int(stuLevelStart[lvl - 1], stuLevelStart[lvl] - 1) + 1) };
    const st = stamps(rng, tz);
    studios.push({
      id: String(id), name,
      aliases: rng.chance(0.15) ? [name.replace(/ /g, '')] : [],
      favorite: rng.chance(0.05),
      rating100: ratingOrNull(rng, 0.5),
      parent_studio: parent,
      image_path: imagePath(base, 'studio', id, st.updated_at),
      details: rng.chance(0.3) ? paragraph(rng, 80) : null,
      created_at: st.created_at, updated_at: st.updated_at,
    });
  }
  const studioSlug = studios.map((s) => slug(s.name));

  const tagZipf = new Zipf(nT, 1.0, layout);
  const perfTagZipf = tagZipf;

  // Performers.
  const nP = counts.performers;
  const performers = [];
  for (let i = 0; i < nP; i++) {
    const id = i + 1, rng = new Rng(seed, KIND.performer, id);
    const name = personName(rng);
    const st = stamps(rng, tz);
    performers.push({
      id: String(id), name,
      disambiguation: rng.chance(0.1) ? rng.pick(['US', 'EU', 'II', 'the first', 'Studio X', '(2010s)']) : null,
      alias_list: rng.chance(0.3) ? Array.from({ length: rng.int(1, 3) }, () => personName(rng)) : [],
      gender: rng.weighted(GENDERS),
      favorite: rng.chance(0.05),
      rating100: ratingOrNull(rng, 0.4),
      birthdate: fuzzyDate(rng, 1960, 2004, 0.2),
      country: rng.chance(0.7) ? rng.pick(COUNTRIES) : null,
      image_path: imagePath(base, 'performer', id, st.updated_at),
      tags: perfTagZipf.distinct(rng, rng.chance(0.5) ? 0 : rng.int(1, 4)).map((t) => ({ id: String(t + 1) })),
      created_at: st.created_at, updated_at: st.updated_at,
    });
  }
  const perfZipf = new Zipf(nP, 1.1, layout);
  const studioZipf = new Zipf(nS, 0.9, layout);

  // Groups.
  const nG = counts.groups;
  const groups = [];
  for (let i = 0; i < nG; i++) {
    const id = i + 1, rng = new Rng(seed, KIND.group, id);
    const st = stamps(rng, tz);
    const containing = id > 1 && rng.chance(0.1) ? [{ group: { id: String(rng.int(1, id - 1)) } }] : [];
    groups.push({
      id: String(id),
      name: `${cap(words(rng, rng.int(1, 3)))} ${rng.int(1, 12)}`,
      aliases: rng.chance(0.1) ? words(rng, 2) : null,
      date: fuzzyDate(rng, 2005, 2025, 0.15),
      duration: rng.chance(0.7) ? rng.int(600, 4 * 3600) : null,
      rating100: ratingOrNull(rng, 0.5),
      director: rng.chance(0.4) ? personName(rng) : null,
      synopsis: rng.chance(0.4) ? paragraph(rng, 100) : null,
      studio: rng.chance(0.7) ? { id: String(studioZipf.sample(rng) + 1) } : null,
      containing_groups: containing,
      front_image_path: groupImagePath(base, id, st.updated_at, 'frontimage'),
      back_image_path: rng.chance(0.3) ? groupImagePath(base, id, st.updated_at, 'backimage') : null,
      created_at: st.created_at, updated_at: st.updated_at,
    });
  }

  // Galleries.
  const nGa = counts.galleries;
  const galleries = [];
  for (let i = 0; i < nGa; i++) {
    const id = i + 1, rng = new Rng(seed, KIND.gallery, id);
    const st = stamps(rng, tz);
    galleries.push({
      id: String(id),
      title: rng.chance(0.1) ? null : cap(words(rng, rng.int(1, 4))),
      date: fuzzyDate(rng, 2005, 2025, 0.2),
      rating100: ratingOrNull(rng, 0.5),
      studio: rng.chance(0.6) ? { id: String(studioZipf.sample(rng) + 1) } : null,
      image_count: rng.int(0, 400),
      paths: { cover: galleryCoverPath(base, id, st.updated_at) },
      created_at: st.created_at, updated_at: st.updated_at,
    });
  }

  // Scenes (generated on demand, one independent PRNG stream per id).
  function makeScene(id) {
    const rng = new Rng(seed, KIND.scene, id);
    const st = stamps(rng, tz);
    // Title.
    let title, r = rng.float();
    if (r < 0.05) title = null;
    else if (r < 0.07) title = '';
    else if (r < 0.13) title = rng.pick(UNICODE_TITLES);
    else if (r < 0.2) { const k = rng.int(1, 120); title = rng.chance(0.25) ? `Scene ${String(k).padStart(3, '0')}` : `Scene ${k}`; }
    else if (r < 0.25) title = `${cap(rng.pick(NOUNS))} Part ${rng.int(1, 20)}`;
    else title = cap(words(rng, rng.int(2, 6)));
    // Video file.
    const [w, h] = rng.weighted(RESOLUTIONS);
    const vcodec = rng.weighted(VCODECS);
    const format = rng.weighted(FORMATS_FOR[vcodec]);
    const acodec = rng.weighted(ACODECS_FOR[format]);
    const fps = rng.weighted(FPS);
    const duration = round(Math.exp(Math.log(10) + rng.float() * (Math.log(10800) - Math.log(10))), 3);
    const bitRate = Math.max(50000, Math.round(w * h * fps * (vcodec === 'hevc' || vcodec === 'av1' ? 0.06 : 0.1) * (0.6 + rng.float() * 0.8)));
    const size = Math.max(1024, Math.round((bitRate * duration) / 8));
    const studioIdx = rng.chance(0.85) ? studioZipf.sample(rng) : -1;
    const baseName = `${slug(title || `scene ${id}`)}_${id}.${EXT[format]}`;
    const fps_ = [{ type: 'oshash', value: rng.hex(16) }];
    if (rng.chance(0.5)) fps_.push({ type: 'md5', value: rng.hex(32) });
    if (rng.chance(0.8)) fps_.push({ type: 'phash', value: rng.hex(16).replace(/^0+(?=.)/, '') }); // unpadded uint64 hex
    const modTime = formatTs(st.created - rng.int(0, 30 * 86400), tz);
    const files = [{
      id: String(id), path: `/data/media/${studioIdx >= 0 ? studioSlug[studioIdx] : 'unsorted'}/${baseName}`, basename: baseName,
      size, duration, video_codec: vcodec, audio_codec: acodec, width: w, height: h, frame_rate: fps, bit_rate: bitRate,
      format, mod_time: modTime, fingerprints: fps_,
    }];
    if (rng.chance(0.03)) { // a second (non-primary) file
      const b2 = baseName.replace(/\.(\w+)$/, '_alt.$1');
      files.push({ ...files[0], id: String(scenes + id * 2), path: files[0].path.replace(/[^/]+$/, b2), basename: b2, size: Math.round(size * 0.7), fingerprints: [{ type: 'oshash', value: rng.hex(16) }] });
    }
    // Activity.
    const played = rng.chance(0.3);
    const playCount = played ? 1 + Math.floor(-Math.log(1 - rng.float()) * 3) : 0;
    const lastPlayed = played ? st.created + rng.int(0, LIBRARY_NOW - st.created) : null;
    const playDuration = played ? round(Math.min(duration, duration * rng.float()) * playCount, 3) : 0;
    const resume = played && rng.chance(0.4) ? round(duration * rng.float(), 3) : 0;
    const oCounter = rng.chance(0.85) ? 0 : rng.int(1, 12);
    const interactive = rng.chance(0.03);
    // Relations.
    const nTags = rng.chance(0.1) ? 0 : Math.min(15, 1 + Math.floor(-Math.log(1 - rng.float()) * 4));
    const tagIds = tagZipf.distinct(rng, nTags);
    const nPerf = rng.chance(0.15) ? 0 : Math.min(6, 1 + Math.floor(-Math.log(1 - rng.float()) * 1.2));
    const perfIds = perfZipf.distinct(rng, nPerf);
    const sceneGroups = rng.chance(0.1) ? [{ group: { id: String(rng.int(1, nG)) }, scene_index: rng.chance(0.8) ? rng.int(1, 30) : null }] : [];
    const sceneGalleries = rng.chance(0.1) ? [{ id: String(rng.int(1, nGa)) }] : [];
    const stashIds = [];
    if (rng.chance(0.2)) { stashIds.push({ endpoint: STASH_BOXES[0], stash_id: uuid(rng) }); if (rng.chance(0.25)) stashIds.push({ endpoint: STASH_BOXES[1], stash_id: uuid(rng) }); }
    const markers = [];
    if (rng.chance(0.08)) {
      const k = rng.int(1, 5);
      for (let m = 0; m < k; m++) {
        const sec = round(duration * rng.float(), 3);
        markers.push({
          id: String(id * 8 + m), title: rng.chance(0.2) ? '' : cap(words(rng, rng.int(1, 3))), seconds: sec,
          end_seconds: rng.chance(0.4) ? round(Math.min(duration, sec + rng.int(5, 120)), 3) : null,
          primary_tag: { id: String(tagZipf.sample(rng) + 1) },
          tags: tagZipf.distinct(rng, rng.int(0, 2)).map((t) => ({ id: String(t + 1) })),
        });
      }
    }
    let details = null;
    const dr = rng.float();
    if (dr < 0.03) details = paragraph(rng, 2100);
    else if (dr < 0.4) details = paragraph(rng, rng.int(20, 300));
    const scene = {
      id: String(id), title,
      code: rng.chance(0.3) ? `${rng.pick(['ABC', 'XYZ', 'STU', 'PRD'])}-${String(rng.int(1, 9999)).padStart(4, '0')}` : null,
      details,
      director: rng.chance(0.2) ? personName(rng) : null,
      urls: Array.from({ length: rng.chance(0.6) ? rng.int(1, 2) : 0 }, (_, k) => `https://example.${k ? 'org' : 'com'}/scenes/${id}${k ? '-' + k : ''}`),
      date: fuzzyDate(rng, 2005, 2025, 0.1),
      rating100: ratingOrNull(rng, 0.4),
      organized: rng.chance(0.3),
      o_counter: oCounter,
      play_count: playCount,
      play_duration: playDuration,
      resume_time: resume,
      last_played_at: lastPlayed === null ? null : formatTs(lastPlayed, tz),
      created_at: st.created_at, updated_at: st.updated_at,
      interactive,
      interactive_speed: interactive ? rng.int(0, 100) : null,
      captions: rng.chance(0.05) ? [{ language_code: 'en', caption_type: 'srt' }, ...(rng.chance(0.3) ? [{ language_code: 'de', caption_type: 'vtt' }] : [])] : [],
      files,
      paths: null,
      studio: studioIdx >= 0 ? { id: String(studioIdx + 1) } : null,
      tags: tagIds.map((t) => ({ id: String(t + 1) })),
      performers: perfIds.map((p) => ({ id: String(p + 1) })),
      groups: sceneGroups,
      galleries: sceneGalleries,
      stash_ids: stashIds,
      scene_markers: markers,
    };
    scene.title = flat(scene.title); scene.director = flat(scene.director); scene.urls = scene.urls.map(flat);
    for (const f of files) { f.path = flat(f.path); f.basename = flat(f.basename); }
    for (const m of markers) m.title = flat(m.title);
    if (scenePathsToo) scene.paths = scenePaths(base, id, scene.updated_at, sceneHash(scene)); // else left null: the fake computes them per request
    return scene;
  }

  return { tz, counts, sceneCount: scenes, tags, studios, performers, groups, galleries, makeScene };
}

/** All entities in memory (the fake Stash uses this). */
export function generateLibrary({ seed = 1, scenes = 1000, tzOffset = 'Z', base = PLACEHOLDER_BASE, scenePathsToo = true } = {}) {
  const lib = createLibrary({ seed, scenes, tzOffset, base, scenePathsToo });
  const out = new Array(scenes);
  for (let i = 0; i < scenes; i++) out[i] = lib.makeScene(i + 1);
  return { tags: lib.tags, studios: lib.studios, performers: lib.performers, groups: lib.groups, galleries: lib.galleries, scenes: out, makeScene: lib.makeScene };
}

// ---------------------------------------------------------------------------------------------
// Hand-written scene serializer: byte-identical to JSON.stringify(scene) (tests check this), ~2×
// faster on Node 20, which matters at 1M scenes.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
function js(s) {
  if (s === null) return 'null';
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}
function jn(n) { return n === null ? 'null' : String(n); }
function jrefs(arr) {
  if (arr.length === 0) return '[]';
  let o = '[{"id":' + js(arr[0].id) + '}';
  for (let i = 1; i < arr.length; i++) o += ',{"id":' + js(arr[i].id) + '}';
  return o + ']';
}
function jstrs(arr) {
  if (arr.length === 0) return '[]';
  let o = '[' + js(arr[0]);
  for (let i = 1; i < arr.length; i++) o += ',' + js(arr[i]);
  return o + ']';
}
function jfile(f) {
  let fp = '';
  for (let i = 0; i < f.fingerprints.length; i++) fp += (i ? ',' : '') + '{"type":' + js(f.fingerprints[i].type) + ',"value":' + js(f.fingerprints[i].value) + '}';
  return `{"id":${js(f.id)},"path":${js(f.path)},"basename":${js(f.basename)},"size":${f.size},"duration":${f.duration},"video_codec":${js(f.video_codec)},`
    + `"audio_codec":${js(f.audio_codec)},"width":${f.width},"height":${f.height},"frame_rate":${f.frame_rate},"bit_rate":${f.bit_rate},`
    + `"format":${js(f.format)},"mod_time":${js(f.mod_time)},"fingerprints":[${fp}]}`;
}
export function sceneJson(s) {
  const p = s.paths;
  let files = '';
  for (let i = 0; i < s.files.length; i++) files += (i ? ',' : '') + jfile(s.files[i]);
  let caps = '';
  if (s.captions !== null) { caps = '['; for (let i = 0; i < s.captions.length; i++) caps += (i ? ',' : '') + `{"language_code":${js(s.captions[i].language_code)},"caption_type":${js(s.captions[i].caption_type)}}`; caps += ']'; } else caps = 'null';
  let groups = '';
  for (let i = 0; i < s.groups.length; i++) groups += (i ? ',' : '') + `{"group":{"id":${js(s.groups[i].group.id)}},"scene_index":${jn(s.groups[i].scene_index)}}`;
  let sids = '';
  for (let i = 0; i < s.stash_ids.length; i++) sids += (i ? ',' : '') + `{"endpoint":${js(s.stash_ids[i].endpoint)},"stash_id":${js(s.stash_ids[i].stash_id)}}`;
  let marks = '';
  for (let i = 0; i < s.scene_markers.length; i++) {
    const m = s.scene_markers[i];
    marks += (i ? ',' : '') + `{"id":${js(m.id)},"title":${js(m.title)},"seconds":${m.seconds},"end_seconds":${jn(m.end_seconds)},"primary_tag":{"id":${js(m.primary_tag.id)}},"tags":${jrefs(m.tags)}}`;
  }
  return `{"id":${js(s.id)},"title":${js(s.title)},"code":${js(s.code)},"details":${js(s.details)},"director":${js(s.director)},"urls":${jstrs(s.urls)},`
    + `"date":${js(s.date)},"rating100":${jn(s.rating100)},"organized":${s.organized},"o_counter":${jn(s.o_counter)},"play_count":${jn(s.play_count)},`
    + `"play_duration":${jn(s.play_duration)},"resume_time":${jn(s.resume_time)},"last_played_at":${js(s.last_played_at)},"created_at":${js(s.created_at)},`
    + `"updated_at":${js(s.updated_at)},"interactive":${s.interactive},"interactive_speed":${jn(s.interactive_speed)},"captions":${caps},"files":[${files}],`
    + `"paths":{"screenshot":${js(p.screenshot)},"preview":${js(p.preview)},"webp":${js(p.webp)},"vtt":${js(p.vtt)},"sprite":${js(p.sprite)},`
    + `"funscript":${js(p.funscript)},"caption":${js(p.caption)}},"studio":${s.studio === null ? 'null' : '{"id":' + js(s.studio.id) + '}'},`
    + `"tags":${jrefs(s.tags)},"performers":${jrefs(s.performers)},"groups":[${groups}],"galleries":${jrefs(s.galleries)},"stash_ids":[${sids}],"scene_markers":[${marks}]}`;
}

// ---------------------------------------------------------------------------------------------
// CLI: stream NDJSON.
function writeNdjson(file, items, toJson = JSON.stringify) {
  const fd = fs.openSync(file, 'w');
  const CAP = 8 << 20;
  let buf = Buffer.allocUnsafe(CAP), off = 0;
  const flush = () => { if (off) { fs.writeSync(fd, buf, 0, off); off = 0; } };
  for (const it of items) {
    const line = toJson(it);
    if (off + line.length * 3 + 1 > CAP) flush();
    if (line.length * 3 + 1 > CAP) { fs.writeSync(fd, line + '\n'); continue; }
    off += buf.utf8Write(line, off);
    buf[off++] = 10;
  }
  flush();
  fs.closeSync(fd);
}

const BLOCK = 10000;
function renderBlock(lib, first, last) { // scenes first..last inclusive → Buffer of NDJSON lines
  let buf = Buffer.allocUnsafeSlow((last - first + 1) * 2048 + (1 << 20)), off = 0;
  for (let id = first; id <= last; id++) {
    const line = sceneJson(lib.makeScene(id));
    if (off + line.length * 3 + 1 > buf.length) { const nb = Buffer.allocUnsafeSlow(buf.length * 2 + line.length * 3); buf.copy(nb, 0, 0, off); buf = nb; }
    off += buf.utf8Write(line, off);
    buf[off++] = 10;
  }
  return buf.subarray(0, off);
}

/** Writes DIR/{tags,studios,performers,groups,galleries,scenes}.ndjson. Scenes are rendered in
 *  blocks by worker threads (when there are enough of them) and written in id order. */
export async function writeLibrary({ seed, scenes, tzOffset, out, workers }) {
  fs.mkdirSync(out, { recursive: true });
  const lib = createLibrary({ seed, scenes, tzOffset });
  for (const k of ['tags', 'studios', 'performers', 'groups', 'galleries']) writeNdjson(path.join(out, `${k}.ndjson`), lib[k]);
  const file = path.join(out, 'scenes.ndjson');
  const nBlocks = Math.ceil(scenes / BLOCK);
  const W = Math.max(1, Math.min(workers ?? os.availableParallelism(), 8, nBlocks));
  if (W === 1 || scenes < 5 * BLOCK) {
    writeNdjson(file, (function* () { for (let i = 1; i <= scenes; i++) yield lib.makeScene(i); })(), sceneJson);
    return lib.counts;
  }
  const fd = fs.openSync(file, 'w');
  const pending = new Map();
  let nextBlock = 0;
  await new Promise((resolve, reject) => {
    let live = W;
    for (let w = 0; w < W; w++) {
      const worker = new Worker(new URL(import.meta.url), { workerData: { seed, scenes, tzOffset, w, W } });
      worker.on('message', ({ block, buf }) => {
        pending.set(block, Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
        while (pending.has(nextBlock)) { fs.writeSync(fd, pending.get(nextBlock)); pending.delete(nextBlock); nextBlock++; }
      });
      worker.on('error', reject);
      worker.on('exit', (code) => { if (code !== 0) reject(new Error(`worker exited ${code}`)); else if (--live === 0) resolve(); });
    }
  });
  fs.closeSync(fd);
  if (nextBlock !== nBlocks) throw new Error(`internal: wrote ${nextBlock} of ${nBlocks} blocks`);
  return lib.counts;
}

if (!isMainThread && workerData && workerData.W) {
  const { seed, scenes, tzOffset, w, W } = workerData;
  const lib = createLibrary({ seed, scenes, tzOffset });
  for (let b = w; b * BLOCK < scenes; b += W) {
    const buf = renderBlock(lib, b * BLOCK + 1, Math.min(scenes, (b + 1) * BLOCK));
    const u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    parentPort.postMessage({ block: b, buf: u8 }, [buf.buffer]);
  }
}

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith('--')) throw new Error(`unexpected argument ${k}`);
    const eq = k.indexOf('=');
    if (eq > 0) a[k.slice(2, eq)] = k.slice(eq + 1); else a[k.slice(2)] = argv[++i];
  }
  return a;
}

if (isMainThread && process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const a = parseArgs(process.argv.slice(2));
    if (!a.out) throw new Error('usage: generate.mjs --seed S --scenes N --out DIR [--tz Z|-08:00] [--workers W]');
    const t0 = Date.now();
    const seed = Number(a.seed ?? 1), scenes = Number(a.scenes ?? 1000);
    if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(scenes) || scenes < 0) throw new Error('--seed and --scenes must be non-negative integers');
    const counts = await writeLibrary({ seed, scenes, tzOffset: a.tz ?? 'Z', out: a.out, workers: a.workers === undefined ? undefined : Number(a.workers) });
    process.stderr.write(`generated ${scenes} scenes, ${JSON.stringify(counts)} into ${a.out} in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
  } catch (e) {
    process.stderr.write(`generate.mjs: ${e.message}\n`);
    process.exit(2);
  }
}
