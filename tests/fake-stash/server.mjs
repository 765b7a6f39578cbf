// Fake Stash v0.30.1 for peekd's tests and benchmarks.
//
//   node --max-old-space-size=6144 tests/fake-stash/server.mjs --port P --scenes N --seed S \
//        [--api-key K] [--tz Z|-08:00] [--media-dir DIR]
//
// Prints "fake-stash listening on http://127.0.0.1:P" when ready. See docs/FAKE_STASH.md.

import http from 'node:http';
import zlib from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import {
  generateLibrary, scenePaths, imagePath, groupImagePath, galleryCoverPath, sceneHash, formatTs, tsUnix, parseTz, LIBRARY_NOW,
} from '../gen/generate.mjs';
import { parseRandomSeed, randomSortKey, naturalCompare, binaryCompare } from './order.mjs';
import { UpdatedIndex, descending } from './updated_index.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'package.json'));
const { buildSchema, parse, validate, execute, GraphQLError } = require('graphql');

// ------------------------------------------------------------------------------------------ args
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

// ------------------------------------------------------------------------------------------ store
const cmpNullFirst = (cmp) => (a, b) => (a === b ? 0 : a === null || a === undefined ? -1 : b === null || b === undefined ? 1 : cmp(a, b));
const numCmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const NUM = cmpNullFirst(numCmp);
const TEXT = cmpNullFirst(binaryCompare);
const NAT = cmpNullFirst(naturalCompare);

class Collection {
  constructor(name, single, items) {
    this.name = name; this.single = single;
    this.arr = items; // sorted by numeric id
    this.byId = new Map(items.map((x) => [x.id, x]));
    this.version = 0;
    this.orders = new Map();
    this.uidx = null; // UpdatedIndex, built by the first query that reads it, then kept up to date
  }
  touch() { this.version++; this.orders.clear(); }
  /** The updated_at index (tie: TIE_NAME of the collection's kind). */
  updatedIndex(tie) { return (this.uidx ??= new UpdatedIndex(this.arr, tie)); }
  /** Call after changing x's updated_at or its tie-break name (title / name). */
  reindex(x) { this.uidx?.update(x); this.touch(); }
  maxId() { return this.arr.length ? Number(this.arr[this.arr.length - 1].id) : 0; }
  add(x) { this.arr.push(x); this.byId.set(x.id, x); this.uidx?.insert(x); this.touch(); }
  remove(id) {
    const x = this.byId.get(id);
    if (!x) return false;
    const n = Number(id);
    let lo = 0, hi = this.arr.length - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (Number(this.arr[m].id) < n) lo = m + 1; else hi = m; }
    this.arr.splice(lo, 1);
    this.byId.delete(id);
    this.uidx?.delete(id);
    this.touch();
    return true;
  }
}

export class FakeStash {
  constructor({ scenes = 1000, seed = 1, tz = 'Z', apiKey = null, mediaDir = null } = {}) {
    this.opts = { scenes, seed, tz, apiKey, mediaDir };
    this.tz = parseTz(tz);
    const lib = generateLibrary({ seed, scenes, tzOffset: tz, scenePathsToo: false });
    this.makeScene = lib.makeScene;
    this.c = {
      scene: new Collection('scenes', 'scene', lib.scenes),
      tag: new Collection('tags', 'tag', lib.tags),
      performer: new Collection('performers', 'performer', lib.performers),
      studio: new Collection('studios', 'studio', lib.studios),
      group: new Collection('groups', 'group', lib.groups),
      gallery: new Collection('galleries', 'gallery', lib.galleries),
    };
    this.initialSceneCount = scenes;
    this.clock = LIBRARY_NOW;
    this.maxStamp = 0;
    for (const col of Object.values(this.c)) for (const x of col.arr) { const u = tsUnix(x.updated_at); if (u > this.maxStamp) this.maxStamp = u; }
    this.media = new Map(); // scene id → {file, size}
    if (mediaDir) this.loadMedia(mediaDir);
    this.faults = [];
    this.opStats = {};
    this.gzipAsked = 0; // GraphQL requests whose Accept-Encoding named gzip
    this.docCache = new Map();
    this.derivedVersion = -1;
    this.useUpdatedIndex = true; // false: updated_at sorts are built and cached as other sorts (control op updatedIndex)
  }

  // ---------------------------------------------------------------- derived indexes
  derived() {
    const v = Object.values(this.c).map((c) => c.version).join(':');
    if (this.derivedVersion === v) return this.d;
    const d = {
      markers: [], markerScene: new Map(), tagChildren: new Map(), studioChildren: new Map(), subGroups: new Map(),
      agg: { tag: new Map(), performer: new Map(), studio: new Map(), group: new Map() }, galleriesPerStudio: new Map(), markersPerTag: new Map(),
    };
    const bump = (m, id, dur, s) => {
      let a = m.get(id);
      if (!a) m.set(id, (a = { scenes: 0, duration: 0, o: 0, plays: 0, last: null }));
      a.scenes++; a.duration += dur; a.o += s.o_counter || 0; a.plays += s.play_count || 0;
      if (s.last_played_at !== null && (a.last === null || binaryCompare(s.last_played_at, a.last) > 0)) a.last = s.last_played_at;
    };
    for (const s of this.c.scene.arr) {
      const dur = s.files[0] ? s.files[0].duration : 0;
      for (const t of s.tags) bump(d.agg.tag, t.id, dur, s);
      for (const p of s.performers) bump(d.agg.performer, p.id, dur, s);
      if (s.studio) bump(d.agg.studio, s.studio.id, dur, s);
      for (const g of s.groups) bump(d.agg.group, g.group.id, dur, s);
      for (const m of s.scene_markers) {
        d.markers.push(m); d.markerScene.set(m.id, s);
        d.markersPerTag.set(m.primary_tag.id, (d.markersPerTag.get(m.primary_tag.id) || 0) + 1);
      }
    }
    d.markers.sort((a, b) => Number(a.id) - Number(b.id));
    const push = (m, k, v) => { let l = m.get(k); if (!l) m.set(k, (l = [])); l.push(v); };
    for (const t of this.c.tag.arr) for (const p of t.parents) push(d.tagChildren, p.id, t.id);
    for (const s of this.c.studio.arr) if (s.parent_studio) push(d.studioChildren, s.parent_studio.id, s.id);
    for (const g of this.c.group.arr) for (const cg of g.containing_groups) push(d.subGroups, cg.group.id, g.id);
    for (const g of this.c.gallery.arr) if (g.studio) d.galleriesPerStudio.set(g.studio.id, (d.galleriesPerStudio.get(g.studio.id) || 0) + 1);
    this.d = d; this.derivedVersion = v;
    return d;
  }
  markersCollection() {
    const d = this.derived();
    if (!this.markerCol || this.markerCol.derived !== d) {
      this.markerCol = new Collection('scene_markers', 'scene marker', d.markers);
      this.markerCol.derived = d;
    }
    return this.markerCol;
  }

  // ---------------------------------------------------------------- media
  loadMedia(dir) {
    const exts = new Set(['.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v', '.wmv', '.ts', '.flv', '.mpg', '.mpeg']);
    const files = fs.readdirSync(dir).filter((f) => exts.has(path.extname(f).toLowerCase()) && fs.statSync(path.join(dir, f)).isFile()).sort();
    files.forEach((name, i) => {
      const scene = this.c.scene.arr[i];
      if (!scene) return;
      const full = path.join(dir, name);
      const probe = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', full], { encoding: 'utf8' }));
      const v = probe.streams.find((s) => s.codec_type === 'video') || {};
      const a = probe.streams.find((s) => s.codec_type === 'audio');
      const ext = path.extname(name).toLowerCase();
      const fmtName = probe.format.format_name || '';
      let format = fmtName.split(',')[0];
      if (fmtName.includes('mp4')) format = ext === '.mov' ? 'mov' : 'mp4';
      else if (fmtName.includes('matroska')) format = ext === '.webm' ? 'webm' : 'matroska';
      const fr = (v.avg_frame_rate && v.avg_frame_rate !== '0/0' ? v.avg_frame_rate : v.r_frame_rate) || '0/1';
      const [fn, fd] = fr.split('/').map(Number);
      const st = fs.statSync(full);
      const f = scene.files[0];
      Object.assign(f, {
        path: `/data/media/${name}`, basename: name, size: st.size,
        duration: Number(probe.format.duration) || Number(v.duration) || 0,
        video_codec: v.codec_name || '', audio_codec: a ? a.codec_name : '', width: v.width || 0, height: v.height || 0,
        frame_rate: fd ? Math.round((fn / fd) * 100) / 100 : 0, bit_rate: Number(probe.format.bit_rate) || 0, format,
        mod_time: formatTs(Math.floor(st.mtimeMs / 1000), this.tz),
      });
      this.media.set(scene.id, { file: full, size: st.size, name });
    });
  }

  // ---------------------------------------------------------------- mutations
  bump() {
    const t = Math.max(this.clock, this.maxStamp + 1);
    this.maxStamp = t;
    return formatTs(t, this.tz);
  }
  need(kind, id) {
    const x = this.c[kind].byId.get(String(id));
    if (!x) throw new ControlError(404, `${kind} with id ${id} not found`);
    return x;
  }
  applySceneFields(s, fields) {
    const refs = (v) => (v || []).map((x) => ({ id: String(typeof x === 'object' ? x.id : x) }));
    for (const [k, v] of Object.entries(fields)) {
      switch (k) {
        case 'title': case 'code': case 'details': case 'director': case 'date':
          s[k] = v === null ? null : String(v); break;
        case 'rating100': case 'interactive_speed': case 'o_counter': case 'play_count':
          s[k] = v === null ? null : Number(v); break;
        case 'resume_time': case 'play_duration': s[k] = Number(v); break;
        case 'last_played_at': s[k] = v; break;
        case 'organized': case 'interactive': s[k] = Boolean(v); break;
        case 'urls': s.urls = (v || []).map(String); break;
        case 'captions': s.captions = v; break;
        case 'stash_ids': s.stash_ids = (v || []).map((x) => ({ endpoint: x.endpoint, stash_id: x.stash_id })); break;
        case 'studio': s.studio = v === null ? null : { id: String(typeof v === 'object' ? v.id : v) }; if (s.studio) this.need('studio', s.studio.id); break;
        case 'tags': s.tags = refs(v); s.tags.forEach((r) => this.need('tag', r.id)); break;
        case 'performers': s.performers = refs(v); s.performers.forEach((r) => this.need('performer', r.id)); break;
        case 'galleries': s.galleries = refs(v); s.galleries.forEach((r) => this.need('gallery', r.id)); break;
        case 'groups':
          s.groups = (v || []).map((x) => ({ group: { id: String(x.group?.id ?? x.id ?? x) }, scene_index: x.scene_index ?? null }));
          s.groups.forEach((g) => this.need('group', g.group.id)); break;
        default: throw new ControlError(400, `editScene: unsupported field ${k}`);
      }
    }
  }
  control(body) {
    const { op, ...a } = body || {};
    const C = this.c;
    switch (op) {
      case 'editScene': {
        const s = this.need('scene', a.id);
        const { id, ...fields } = a;
        this.applySceneFields(s, fields);
        s.updated_at = this.bump();
        C.scene.reindex(s);
        return { id: s.id, updated_at: s.updated_at };
      }
      case 'setActivity': {
        const s = this.need('scene', a.id);
        const allowed = ['play_count', 'o_counter', 'resume_time', 'play_duration', 'last_played_at'];
        const fields = {};
        for (const [k, v] of Object.entries(a)) {
          if (k === 'id') continue;
          if (!allowed.includes(k)) throw new ControlError(400, `setActivity: unsupported field ${k}`);
          fields[k] = v;
        }
        this.applySceneFields(s, fields);
        C.scene.touch();
        return { id: s.id, updated_at: s.updated_at };
      }
      case 'renameTag': case 'renamePerformer': case 'renameStudio': {
        const kind = op.slice(6).toLowerCase();
        const x = this.need(kind, a.id);
        if (typeof a.name !== 'string' || !a.name) throw new ControlError(400, `${op}: name required`);
        x.name = a.name; x.updated_at = this.bump();
        C[kind].reindex(x);
        return { id: x.id, updated_at: x.updated_at };
      }
      case 'newImage': { // an uploaded image: Stash bumps updated_at, the URL's ?t=
        const kind = a.kind;
        if (!['tag', 'performer', 'studio'].includes(kind)) throw new ControlError(400, 'newImage: kind must be tag, performer or studio');
        const x = this.need(kind, a.id);
        x.updated_at = this.bump();
        C[kind].reindex(x);
        return { id: x.id, updated_at: x.updated_at };
      }
      case 'mergeTags': {
        const dest = this.need('tag', a.destination);
        const sources = [...new Set((a.source || []).map(String))].filter((id) => id !== dest.id); // a repeated id merges once
        sources.forEach((id) => this.need('tag', id));
        const src = new Set(sources);
        const rewrite = (list) => {
          if (!list.some((r) => src.has(r.id))) return list;
          const out = [];
          for (const r of list) { const id = src.has(r.id) ? dest.id : r.id; if (!out.some((o) => o.id === id)) out.push({ id }); }
          return out;
        };
        for (const s of C.scene.arr) {
          s.tags = rewrite(s.tags);
          for (const m of s.scene_markers) { if (src.has(m.primary_tag.id)) m.primary_tag = { id: dest.id }; m.tags = rewrite(m.tags); }
        }
        for (const p of C.performer.arr) p.tags = rewrite(p.tags);
        for (const t of C.tag.arr) t.parents = rewrite(t.parents).filter((r) => r.id !== t.id);
        for (const id of sources) { dest.aliases.push(C.tag.byId.get(id).name); C.tag.remove(id); }
        dest.updated_at = this.bump();
        C.tag.reindex(dest);
        for (const k of ['scene', 'performer']) C[k].touch();
        return { destination: dest.id, merged: sources };
      }
      case 'deleteTag': {
        const t = this.need('tag', a.id);
        const drop = (list) => (list.some((r) => r.id === t.id) ? list.filter((r) => r.id !== t.id) : list);
        for (const s of C.scene.arr) {
          s.tags = drop(s.tags);
          if (s.scene_markers.length) s.scene_markers = s.scene_markers.filter((m) => m.primary_tag.id !== t.id).map((m) => { m.tags = drop(m.tags); return m; });
        }
        for (const p of C.performer.arr) p.tags = drop(p.tags);
        for (const x of C.tag.arr) x.parents = drop(x.parents);
        C.tag.remove(t.id);
        for (const k of ['scene', 'performer']) C[k].touch();
        return { deleted: t.id };
      }
      case 'deletePerformer': {
        const p = this.need('performer', a.id);
        for (const s of C.scene.arr) if (s.performers.some((r) => r.id === p.id)) s.performers = s.performers.filter((r) => r.id !== p.id);
        C.performer.remove(p.id); C.scene.touch();
        return { deleted: p.id };
      }
      case 'deleteStudio': {
        const st = this.need('studio', a.id);
        for (const s of C.scene.arr) if (s.studio && s.studio.id === st.id) s.studio = null;
        for (const x of C.studio.arr) if (x.parent_studio && x.parent_studio.id === st.id) x.parent_studio = null;
        for (const g of C.group.arr) if (g.studio && g.studio.id === st.id) g.studio = null;
        for (const g of C.gallery.arr) if (g.studio && g.studio.id === st.id) g.studio = null;
        C.studio.remove(st.id);
        for (const k of ['scene', 'group', 'gallery']) C[k].touch();
        return { deleted: st.id };
      }
      case 'deleteScene': {
        const s = this.need('scene', a.id);
        C.scene.remove(s.id); this.media.delete(s.id);
        return { deleted: s.id };
      }
      case 'addScene': {
        const id = C.scene.maxId() + 1;
        const s = this.makeScene(id);
        s.files.forEach((f, i) => { f.id = String(this.initialSceneCount * 3 + id * 2 + i); });
        s.created_at = s.updated_at = this.bump();
        const { id: _ignored, ...fields } = a;
        this.applySceneFields(s, fields);
        C.scene.add(s);
        return { id: s.id, updated_at: s.updated_at };
      }
      case 'setClock': {
        const now = typeof a.now === 'number' ? a.now : tsUnix(String(a.now));
        if (!Number.isFinite(now)) throw new ControlError(400, 'setClock: now must be unix seconds or an RFC3339 string');
        this.clock = Math.floor(now);
        return { now: this.clock, formatted: formatTs(this.clock, this.tz) };
      }
      case 'fault': {
        const kinds = ['status', 'slow', 'truncate', 'malformed', 'reset', 'errors', 'badgzip', 'encoding'];
        if (!kinds.includes(a.kind)) throw new ControlError(400, `fault: kind must be one of ${kinds.join(', ')}`);
        if (a.kind === 'status' && ![500, 502, 503].includes(a.code)) throw new ControlError(400, 'fault status: code must be 500, 502 or 503');
        if (a.kind === 'slow' && !(a.ms >= 0)) throw new ControlError(400, 'fault slow: ms required');
        if (a.kind === 'encoding' && typeof a.encoding !== 'string') throw new ControlError(400, 'fault encoding: encoding (a string) required');
        if (a.kind === 'encoding' && a.code !== undefined && ![500, 502, 503].includes(a.code)) throw new ControlError(400, 'fault encoding: code must be 500, 502 or 503');
        this.faults.push({ ...a, count: a.count === undefined ? 1 : Number(a.count) });
        return { faults: this.faults };
      }
      case 'clearFaults': this.faults = []; return { faults: [] };
      case 'updatedIndex':
        if (typeof a.on !== 'boolean') throw new ControlError(400, 'updatedIndex: on must be true or false');
        this.useUpdatedIndex = a.on;
        return { on: a.on };
      case 'snapshot': return this.snapshot();
      case 'stats': return { requests: this.opStats, gzipAsked: this.gzipAsked };
      default: throw new ControlError(400, `unknown op ${op}`);
    }
  }
  snapshot() {
    const h = crypto.createHash('sha256');
    const counts = {};
    let maxUpdated = null;
    for (const [k, col] of Object.entries(this.c)) {
      counts[col.name] = col.arr.length;
      h.update(`#${k}\n`);
      for (const x of col.arr) {
        h.update(JSON.stringify(x)); h.update('\n');
        if (maxUpdated === null || binaryCompare(x.updated_at, maxUpdated) > 0) maxUpdated = x.updated_at;
      }
    }
    return { counts, hash: h.digest('hex'), max_updated_at: maxUpdated, clock: formatTs(this.clock, this.tz) };
  }

  // ---------------------------------------------------------------- queries
  takeFault() {
    const f = this.faults[0];
    if (!f) return null;
    if (--f.count <= 0) this.faults.shift();
    return f;
  }
}

class ControlError extends Error { constructor(status, msg) { super(msg); this.status = status; } }

// ---------------------------------------------------------------- sort specs
// Each key: obj → comparable value (null = SQL NULL) and a comparator.
function sceneSorts(fs_) {
  const f0 = (s) => s.files[0] || null;
  const studioName = (s) => (s.studio ? fs_.c.studio.byId.get(s.studio.id)?.name ?? null : null);
  const dayNum = (d) => (d && /^\d{4}-\d{2}-\d{2}$/.test(d) ? Date.parse(d + 'T00:00:00Z') / 86400000 : null);
  return {
    bitrate: [(s) => f0(s)?.bit_rate ?? null, NUM], created_at: [(s) => s.created_at, TEXT], code: [(s) => s.code, TEXT],
    date: [(s) => s.date, TEXT], file_count: [(s) => s.files.length, NUM], filesize: [(s) => f0(s)?.size ?? null, NUM],
    duration: [(s) => f0(s)?.duration ?? null, NUM], file_mod_time: [(s) => f0(s)?.mod_time ?? null, TEXT],
    framerate: [(s) => f0(s)?.frame_rate ?? null, NUM],
    group_scene_number: [(s) => (s.groups.length ? s.groups.reduce((m, g) => (g.scene_index !== null && (m === null || g.scene_index < m) ? g.scene_index : m), null) : null), NUM],
    movie_scene_number: [(s) => (s.groups.length ? s.groups.reduce((m, g) => (g.scene_index !== null && (m === null || g.scene_index < m) ? g.scene_index : m), null) : null), NUM],
    id: [(s) => Number(s.id), NUM], interactive: [(s) => (s.interactive ? 1 : 0), NUM], interactive_speed: [(s) => s.interactive_speed, NUM],
    last_o_at: [() => null, NUM], // the fake keeps no o-history: every scene ties, the tie-break decides
    last_played_at: [(s) => s.last_played_at, TEXT], o_counter: [(s) => s.o_counter ?? 0, NUM], organized: [(s) => (s.organized ? 1 : 0), NUM],
    performer_count: [(s) => s.performers.length, NUM], play_count: [(s) => s.play_count ?? 0, NUM], play_duration: [(s) => s.play_duration, NUM],
    resume_time: [(s) => s.resume_time, NUM], path: [(s) => f0(s)?.path ?? null, NAT],
    perceptual_similarity: [(s) => f0(s)?.fingerprints.find((x) => x.type === 'phash')?.value ?? null, TEXT],
    rating: [(s) => s.rating100, NUM], resolution: [(s) => (f0(s) ? Math.min(f0(s).width, f0(s).height) : null), NUM],
    studio: [studioName, NAT], tag_count: [(s) => s.tags.length, NUM],
    title: [(s) => [s.title ?? f0(s)?.basename ?? null, f0(s) ? f0(s).path.slice(0, f0(s).path.lastIndexOf('/')) : null],
      (a, b) => NAT(a[0], b[0]) || NAT(a[1], b[1])],
    updated_at: [(s) => s.updated_at, TEXT],
    performer_age: [(s) => {
      const sd = dayNum(s.date);
      if (sd === null) return null;
      let best = null;
      for (const r of s.performers) { const b = dayNum(fs_.c.performer.byId.get(r.id)?.birthdate); if (b !== null && (best === null || sd - b < best)) best = sd - b; }
      return best;
    }, NUM],
  };
}
function aggKey(fs_, kind, field) {
  return (x) => { const a = fs_.derived().agg[kind].get(x.id); return a ? a[field] : field === 'last' ? null : 0; };
}
function entitySorts(fs_, kind) {
  const common = { created_at: [(x) => x.created_at, TEXT], updated_at: [(x) => x.updated_at, TEXT], id: [(x) => Number(x.id), NUM] };
  const nullKey = [() => null, NUM]; // attribute not modelled by the fake: all rows tie, the tie-break decides
  const zero = [() => 0, NUM];
  switch (kind) {
    case 'performer': return {
      ...common, birthdate: [(x) => x.birthdate, TEXT], career_length: nullKey, galleries_count: zero, height: nullKey, images_count: zero,
      last_o_at: nullKey, last_played_at: [aggKey(fs_, kind, 'last'), TEXT], measurements: nullKey, name: [(x) => x.name, NAT],
      o_counter: [aggKey(fs_, kind, 'o'), NUM], penis_length: nullKey, play_count: [aggKey(fs_, kind, 'plays'), NUM], rating: [(x) => x.rating100, NUM],
      scenes_count: [aggKey(fs_, kind, 'scenes'), NUM], scenes_duration: [aggKey(fs_, kind, 'duration'), NUM], tag_count: [(x) => x.tags.length, NUM], weight: nullKey,
    };
    case 'studio': return {
      ...common, child_count: [(x) => (fs_.derived().studioChildren.get(x.id) || []).length, NUM],
      galleries_count: [(x) => fs_.derived().galleriesPerStudio.get(x.id) || 0, NUM], images_count: zero, name: [(x) => x.name, NAT],
      scenes_count: [aggKey(fs_, kind, 'scenes'), NUM], scenes_duration: [aggKey(fs_, kind, 'duration'), NUM], rating: [(x) => x.rating100, NUM], tag_count: zero,
    };
    case 'tag': return {
      ...common, galleries_count: zero, groups_count: zero, images_count: zero, movies_count: zero, studios_count: zero, name: [(x) => x.name, NAT],
      performers_count: [(x) => { let n = 0; for (const p of fs_.c.performer.arr) if (p.tags.some((r) => r.id === x.id)) n++; return n; }, NUM],
      scene_markers_count: [(x) => fs_.derived().markersPerTag.get(x.id) || 0, NUM],
      scenes_count: [aggKey(fs_, kind, 'scenes'), NUM], scenes_duration: [aggKey(fs_, kind, 'duration'), NUM],
    };
    case 'group': return {
      ...common, date: [(x) => x.date, TEXT], duration: [(x) => x.duration, NUM], name: [(x) => x.name, NAT], rating: [(x) => x.rating100, NUM],
      scenes_count: [aggKey(fs_, kind, 'scenes'), NUM], o_counter: [aggKey(fs_, kind, 'o'), NUM], sub_group_order: nullKey, tag_count: zero,
    };
    case 'gallery': return {
      ...common, date: [(x) => x.date, TEXT], file_count: zero, file_mod_time: nullKey, images_count: [(x) => x.image_count, NUM], path: nullKey,
      performer_count: zero, rating: [(x) => x.rating100, NUM], tag_count: zero, title: [(x) => x.title, NAT],
    };
    case 'marker': return {
      ...common, title: [(x) => x.title, NAT], seconds: [(x) => x.seconds, NUM],
      scene_id: [(x) => Number(fs_.derived().markerScene.get(x.id).id), NUM],
      scenes_updated_at: [(x) => fs_.derived().markerScene.get(x.id).updated_at, TEXT],
    };
    default: throw new Error(kind);
  }
}
const TIE_NAME = { scene: (x) => x.title ?? x.id, performer: (x) => x.name, studio: (x) => x.name, tag: (x) => x.name, group: (x) => x.name, gallery: (x) => x.title ?? x.id, marker: (x) => x.title };

// Returns a view {length, at(i)} of the collection in the requested order. reference: sort the
// collection afresh, bypassing the updated_at index and the cache (what the index is tested against).
function orderedView(fs_, kind, col, sort, desc, reference = false) {
  const arr = col.arr;
  if (!sort || sort === 'id') {
    // no sort → no ORDER BY in Stash (undefined order); the fake uses id order
    return desc && sort ? { length: arr.length, at: (i) => arr[arr.length - 1 - i], key: (x) => Number(x.id), cmp: NUM, desc }
      : { length: arr.length, at: (i) => arr[i], key: (x) => Number(x.id), cmp: NUM, desc: false };
  }
  // updated_at sorts read the index; markers keep a sorted copy: their objects carry no updated_at
  // (the SceneMarker resolver answers the scene's created_at) and the collection is rebuilt anyway
  if (sort === 'updated_at' && kind !== 'marker' && fs_.useUpdatedIndex && !reference) {
    const ix = col.updatedIndex(TIE_NAME[kind]);
    return { length: ix.length, at: desc ? descending(ix) : (i) => ix.at(i), key: (x) => x.updated_at, cmp: TEXT, desc };
  }
  const ck = `${sort}:${desc ? 'D' : 'A'}`;
  let cached = reference ? null : col.orders.get(ck);
  if (!cached) {
    let keyFn, cmp;
    const seed = parseRandomSeed(sort);
    if (seed !== null) { keyFn = (x) => randomSortKey(Number(x.id), seed); cmp = NUM; }
    else if (sort === 'random') { const s = Math.floor(Math.random() * 1e8); keyFn = (x) => randomSortKey(Number(x.id), s); cmp = NUM; }
    else [keyFn, cmp] = (kind === 'scene' ? sceneSorts(fs_) : entitySorts(fs_, kind))[sort];
    const n = arr.length;
    const keys = new Array(n), ties = new Array(n), ids = new Float64Array(n), idx = new Uint32Array(n);
    const tie = TIE_NAME[kind];
    for (let i = 0; i < n; i++) { keys[i] = keyFn(arr[i]); ties[i] = tie(arr[i]); ids[i] = Number(arr[i].id); idx[i] = i; }
    const sign = desc ? -1 : 1;
    const order = Array.from(idx).sort((a, b) => sign * cmp(keys[a], keys[b]) || NAT(ties[a], ties[b]) || ids[a] - ids[b]);
    const sorted = order.map((i) => arr[i]);
    cached = { sorted, keyFn, cmp };
    if (col.orders.size > 24) col.orders.clear();
    if (sort !== 'random' && !reference) col.orders.set(ck, cached);
  }
  const { sorted } = cached;
  return { length: sorted.length, at: (i) => sorted[i], key: cached.keyFn, cmp: cached.cmp, desc };
}

// ---------------------------------------------------------------- filters
const FILTER_FIELDS = {
  scene: { id: ['int', (s) => Number(s.id)], play_count: ['int', (s) => s.play_count ?? 0], o_counter: ['int', (s) => s.o_counter ?? 0],
    last_played_at: ['ts', (s) => s.last_played_at], created_at: ['ts', (s) => s.created_at], updated_at: ['ts', (s) => s.updated_at] },
  gallery: { id: ['int', (x) => Number(x.id)] },
};
function filterFields(fs_, kind) {
  const base = { created_at: ['ts', (x) => x.created_at], updated_at: ['ts', (x) => x.updated_at] };
  if (kind === 'marker') {
    return { ...base, scene_created_at: ['ts', (x) => fs_.derived().markerScene.get(x.id).created_at],
      scene_updated_at: ['ts', (x) => fs_.derived().markerScene.get(x.id).updated_at] };
  }
  return { ...base, ...(FILTER_FIELDS[kind] || {}) };
}
function checkCriterion(kind, c) {
  if (kind === 'int' && ['INCLUDES', 'INCLUDES_ALL', 'EXCLUDES', 'MATCHES_REGEX', 'NOT_MATCHES_REGEX'].includes(c.modifier)) {
    throw new Error('Internal system error. Error unsupported modifier ' + c.modifier + ' for int criterion');
  }
  if (kind === 'ts' && ['INCLUDES', 'INCLUDES_ALL', 'EXCLUDES', 'MATCHES_REGEX', 'NOT_MATCHES_REGEX'].includes(c.modifier)) {
    throw new Error('Internal system error. Error unsupported modifier ' + c.modifier + ' for timestamp criterion');
  }
}
function matchCriterion(kind, v, c) {
  const cmp = kind === 'int' ? numCmp : binaryCompare;
  const val = c.value, val2 = c.value2 ?? (kind === 'int' ? 0 : null);
  switch (c.modifier) {
    case 'IS_NULL': return v === null;
    case 'NOT_NULL': return v !== null;
  }
  if (v === null) return false; // SQL NULL never compares true
  switch (c.modifier) {
    case 'EQUALS': return cmp(v, val) === 0;
    case 'NOT_EQUALS': return cmp(v, val) !== 0;
    case 'GREATER_THAN': return cmp(v, val) > 0;
    case 'LESS_THAN': return cmp(v, val) < 0;
    case 'BETWEEN': return val2 !== null && cmp(v, val) >= 0 && cmp(v, val2) <= 0;
    case 'NOT_BETWEEN': return val2 === null || cmp(v, val) < 0 || cmp(v, val2) > 0;
    default: return false;
  }
}
function compileFilter(fields, f) {
  if (!f) return null;
  const subs = ['AND', 'OR', 'NOT'].filter((k) => f[k] !== undefined && f[k] !== null);
  if (subs.length > 1) throw new Error('illegal filter combination');
  const own = [];
  for (const [k, c] of Object.entries(f)) {
    if (k === 'AND' || k === 'OR' || k === 'NOT' || c === null || c === undefined) continue;
    const [kind, get] = fields[k];
    checkCriterion(kind, c);
    own.push({ k, kind, get, c });
  }
  const ownFn = own.length ? (x) => own.every((o) => matchCriterion(o.kind, o.get(x), o.c)) : null;
  const sub = subs.length ? compileFilter(fields, f[subs[0]]) : null;
  const subFn = sub ? sub.fn : () => true;
  let fn;
  if (!subs.length) fn = ownFn || (() => true);
  else if (subs[0] === 'AND') fn = ownFn ? (x) => ownFn(x) && subFn(x) : subFn;
  else if (subs[0] === 'OR') fn = ownFn ? (x) => ownFn(x) || subFn(x) : subFn;
  else fn = ownFn ? (x) => ownFn(x) && !subFn(x) : (x) => !subFn(x);
  return { fn, own, subs };
}

// Binary-searchable range when the filter is a single criterion on the sort key itself.
function fastRange(view, sort, compiled) {
  if (!compiled || compiled.subs.length || compiled.own.length !== 1) return null;
  const o = compiled.own[0];
  if (o.k !== sort || !['GREATER_THAN', 'LESS_THAN', 'EQUALS', 'BETWEEN'].includes(o.c.modifier)) return null;
  if (!['updated_at', 'created_at', 'id'].includes(sort)) return null;
  const cmp = o.kind === 'int' ? numCmp : binaryCompare;
  const n = view.length;
  // first index i where pred(at(i)) is true; pred must be monotone false→true along the view
  const first = (pred) => { let lo = 0, hi = n; while (lo < hi) { const m = (lo + hi) >> 1; if (pred(o.get(view.at(m)))) hi = m; else lo = m + 1; } return lo; };
  const { value: v, value2: v2 } = o.c;
  const asc = !view.desc;
  const ge = (x) => (k) => (asc ? cmp(k, x) >= 0 : cmp(k, x) < 0);
  const gt = (x) => (k) => (asc ? cmp(k, x) > 0 : cmp(k, x) <= 0);
  let lo, hi;
  switch (o.c.modifier) {
    case 'GREATER_THAN': [lo, hi] = asc ? [first(gt(v)), n] : [0, first(gt(v))]; break;
    case 'LESS_THAN': [lo, hi] = asc ? [0, first(ge(v))] : [first(ge(v)), n]; break;
    case 'EQUALS': [lo, hi] = asc ? [first(ge(v)), first(gt(v))] : [first(gt(v)), first(ge(v))]; break;
    case 'BETWEEN': {
      const b = v2 ?? (o.kind === 'int' ? 0 : null);
      if (b === null) return { lo: 0, hi: 0 };
      [lo, hi] = asc ? [first(ge(v)), first(gt(b))] : [first(gt(b)), first(ge(v))]; break;
    }
    default: return null;
  }
  return { lo, hi: Math.max(lo, hi) };
}

// Answers a find* query: {rows (the page), count, all() (every match, in order)}. reference: answer
// by sorting afresh and testing every object (no index, no cached order, no binary search).
export function findMany(fs_, kind, col, args, idsArgName, { reference = false } = {}) {
  const label = { scene: 'scene', tag: 'tag', performer: 'performer', studio: 'studio', group: 'group', gallery: 'gallery', marker: 'scene marker' }[kind];
  let ids = args.ids && args.ids.length ? args.ids : null;
  if (!ids && idsArgName && args[idsArgName] && args[idsArgName].length) ids = args[idsArgName].map(String);
  if (ids) {
    const rows = ids.map((id) => {
      const x = col.byId.get(String(id));
      if (!x) throw new Error(`${label} with id ${id} not found`);
      return x;
    });
    return { rows, count: rows.length, all: () => rows };
  }
  const f = args.filter || {};
  const sort = f.sort || null;
  const whitelist = kind === 'scene' ? sceneSorts(fs_) : entitySorts(fs_, kind);
  if (sort && !Object.hasOwn(whitelist, sort) && sort !== 'random' && parseRandomSeed(sort) === null) throw new Error(`invalid sort: ${sort}`);
  const desc = f.direction === 'DESC';
  let page = f.page ?? 1; if (page < 1) page = 1;
  const perPage = f.per_page ?? 25;
  const filterArg = { scene: 'scene_filter', tag: 'tag_filter', performer: 'performer_filter', studio: 'studio_filter', group: 'group_filter', gallery: 'gallery_filter', marker: 'scene_marker_filter' }[kind];
  const compiled = compileFilter(filterFields(fs_, kind), args[filterArg]);
  const view = orderedView(fs_, kind, col, sort, desc, reference);
  const range = !compiled ? { lo: 0, hi: view.length } : reference ? null : fastRange(view, sort, compiled);
  let count, pageRows, all;
  if (range) {
    count = range.hi - range.lo;
    const start = perPage < 0 ? range.lo : range.lo + (page - 1) * perPage;
    const end = perPage < 0 ? range.hi : Math.min(range.hi, start + perPage);
    pageRows = [];
    for (let i = start; i < end; i++) pageRows.push(view.at(i));
    all = () => { const out = []; for (let i = range.lo; i < range.hi; i++) out.push(view.at(i)); return out; };
  } else {
    const matched = [];
    for (let i = 0; i < view.length; i++) { const x = view.at(i); if (compiled.fn(x)) matched.push(x); }
    count = matched.length;
    pageRows = perPage < 0 ? matched : matched.slice((page - 1) * perPage, (page - 1) * perPage + perPage);
    all = () => matched;
  }
  return { rows: pageRows, count, all };
}

// ---------------------------------------------------------------- GraphQL
function makeSchema(fs_) {
  const schema = buildSchema(fs.readFileSync(path.join(here, 'schema.graphql'), 'utf8'));
  const set = (type, field, fn) => { schema.getType(type).getFields()[field].resolve = fn; };
  const get = (kind) => (id) => fs_.c[kind].byId.get(id);
  const refs = (kind, list) => { const out = []; for (const r of list) { const x = fs_.c[kind].byId.get(r.id); if (x) out.push(x); } return out; };
  set('Scene', 'paths', (s, _a, ctx) => ({
    ...scenePaths(ctx.base, s.id, s.updated_at, sceneHash(s)),
    stream: `${ctx.base}/scene/${s.id}/stream${fs_.opts.apiKey ? `?apikey=${fs_.opts.apiKey}` : ''}`,
    interactive_heatmap: `${ctx.base}/scene/${s.id}/interactive_heatmap`,
  }));
  set('Scene', 'studio', (s) => (s.studio ? get('studio')(s.studio.id) ?? null : null));
  set('Scene', 'tags', (s) => refs('tag', s.tags));
  set('Scene', 'performers', (s) => refs('performer', s.performers));
  set('Scene', 'galleries', (s) => refs('gallery', s.galleries));
  set('Scene', 'groups', (s) => s.groups.map((g) => ({ group: get('group')(g.group.id), scene_index: g.scene_index })).filter((g) => g.group));
  set('Scene', 'stash_ids', (s) => s.stash_ids.map((x) => ({ ...x, updated_at: s.updated_at })));
  set('VideoFile', 'fingerprint', (f, a) => f.fingerprints.find((x) => x.type === a.type)?.value ?? null);
  set('SceneMarker', 'scene', (m) => fs_.derived().markerScene.get(m.id));
  set('SceneMarker', 'primary_tag', (m) => get('tag')(m.primary_tag.id));
  set('SceneMarker', 'tags', (m) => refs('tag', m.tags));
  set('SceneMarker', 'created_at', (m) => fs_.derived().markerScene.get(m.id).created_at);
  set('SceneMarker', 'updated_at', (m) => fs_.derived().markerScene.get(m.id).created_at);
  for (const f of ['stream', 'preview', 'screenshot']) {
    const suffix = { stream: 'stream', preview: 'preview', screenshot: 'screenshot' }[f];
    set('SceneMarker', f, (m, _a, ctx) => `${ctx.base}/scene/${fs_.derived().markerScene.get(m.id).id}/scene_marker/${m.id}/${suffix}`);
  }
  set('Performer', 'tags', (p) => refs('tag', p.tags));
  set('Performer', 'image_path', (p, _a, ctx) => imagePath(ctx.base, 'performer', p.id, p.updated_at));
  set('Studio', 'image_path', (s, _a, ctx) => imagePath(ctx.base, 'studio', s.id, s.updated_at));
  set('Studio', 'parent_studio', (s) => (s.parent_studio ? get('studio')(s.parent_studio.id) ?? null : null));
  set('Studio', 'child_studios', (s) => (fs_.derived().studioChildren.get(s.id) || []).map(get('studio')));
  set('Tag', 'image_path', (t, _a, ctx) => imagePath(ctx.base, 'tag', t.id, t.updated_at));
  set('Tag', 'parents', (t) => refs('tag', t.parents));
  set('Tag', 'children', (t) => (fs_.derived().tagChildren.get(t.id) || []).map(get('tag')).filter(Boolean));
  set('Tag', 'parent_count', (t) => t.parents.length);
  set('Tag', 'child_count', (t) => (fs_.derived().tagChildren.get(t.id) || []).length);
  set('Group', 'studio', (g) => (g.studio ? get('studio')(g.studio.id) ?? null : null));
  set('Group', 'containing_groups', (g) => g.containing_groups.map((c) => ({ group: get('group')(c.group.id), description: null })).filter((c) => c.group));
  set('Group', 'sub_groups', (g) => (fs_.derived().subGroups.get(g.id) || []).map((id) => ({ group: get('group')(id), description: null })));
  set('Group', 'front_image_path', (g, _a, ctx) => groupImagePath(ctx.base, g.id, g.updated_at, 'frontimage'));
  set('Group', 'back_image_path', (g, _a, ctx) => (g.back_image_path === null ? null : groupImagePath(ctx.base, g.id, g.updated_at, 'backimage')));
  set('Gallery', 'studio', (g) => (g.studio ? get('studio')(g.studio.id) ?? null : null));
  set('Gallery', 'paths', (g, _a, ctx) => ({ cover: galleryCoverPath(ctx.base, g.id, g.updated_at), preview: `${ctx.base}/gallery/${g.id}/preview` }));

  const finder = (kind, plural, idsArg) => (args) => {
    const col = kind === 'marker' ? fs_.markersCollection() : fs_.c[kind];
    const r = findMany(fs_, kind, col, args, idsArg);
    const out = { count: r.count, [plural]: r.rows };
    if (kind === 'scene') {
      out.duration = () => r.all().reduce((s, x) => s + (x.files[0]?.duration || 0), 0);
      out.filesize = () => r.all().reduce((s, x) => s + (x.files[0]?.size || 0), 0);
    }
    return out;
  };
  const one = (kind) => (args) => fs_.c[kind].byId.get(String(args.id)) ?? null;
  const root = {
    findScenes: finder('scene', 'scenes', 'scene_ids'),
    findPerformers: finder('performer', 'performers', 'performer_ids'),
    findStudios: finder('studio', 'studios'),
    findTags: finder('tag', 'tags'),
    findGroups: finder('group', 'groups'),
    findGalleries: finder('gallery', 'galleries'),
    findSceneMarkers: finder('marker', 'scene_markers'),
    findScene: (a) => {
      if (a.id !== undefined && a.id !== null) return fs_.c.scene.byId.get(String(a.id)) ?? null;
      if (a.checksum) return fs_.c.scene.arr.find((s) => s.files.some((f) => f.fingerprints.some((x) => (x.type === 'md5' || x.type === 'oshash') && x.value === a.checksum))) ?? null;
      return null;
    },
    findPerformer: one('performer'), findStudio: one('studio'), findTag: one('tag'), findGroup: one('group'), findGallery: one('gallery'),
    version: () => ({ version: 'v0.30.1', hash: 'a1b2c3d4', build_time: '2025-12-18 09:00:00' }),
    systemStatus: () => ({
      databaseSchema: 75, databasePath: '/root/.stash/stash-go.sqlite', configPath: '/root/.stash/config.yml', appSchema: 75, status: 'OK',
      os: process.platform, workingDir: '/', homeDir: '/root', ffmpegPath: '/usr/bin/ffmpeg', ffprobePath: '/usr/bin/ffprobe',
    }),
    stats: () => {
      const S = fs_.c.scene.arr;
      let size = 0, dur = 0, o = 0, plays = 0, pdur = 0, played = 0;
      for (const s of S) {
        if (s.files[0]) { size += s.files[0].size; dur += s.files[0].duration; }
        o += s.o_counter || 0; plays += s.play_count || 0; pdur += s.play_duration || 0; if (s.play_count) played++;
      }
      return {
        scene_count: S.length, scenes_size: size, scenes_duration: dur, image_count: fs_.c.gallery.arr.reduce((n, g) => n + g.image_count, 0), images_size: 0,
        gallery_count: fs_.c.gallery.arr.length, performer_count: fs_.c.performer.arr.length, studio_count: fs_.c.studio.arr.length,
        group_count: fs_.c.group.arr.length, tag_count: fs_.c.tag.arr.length, total_o_count: o, total_play_duration: pdur,
        total_play_count: plays, scenes_played: played,
      };
    },
  };
  return { schema, root };
}

// ---------------------------------------------------------------- images
const CRC_TABLE = (() => { const t = new Uint32Array(256); for (let n = 0; n < 256; n++) { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; t[n] = c >>> 0; } return t; })();
function crc32(buf) { let c = 0xffffffff; for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }
function pngChunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** A real PNG (RGB, 8 bit): a w×h gradient. */
export function makePng(w, h, [r0, g0, b0]) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      raw[o] = (r0 + x * 4) & 255; raw[o + 1] = (g0 + y * 4) & 255; raw[o + 2] = b0;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

// ---------------------------------------------------------------- HTTP
export function createServer(fs_) {
  const { schema, root } = makeSchema(fs_);
  const images = { screenshot: makePng(64, 36, [20, 40, 200]), performer: makePng(40, 60, [200, 40, 80]), studio: makePng(60, 30, [40, 160, 60]),
    tag: makePng(32, 32, [120, 120, 20]), group: makePng(40, 60, [90, 20, 160]), gallery: makePng(48, 48, [10, 140, 140]) };
  const apiKey = fs_.opts.apiKey;

  const send = (res, status, headers, body) => { res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers }); res.end(body); };
  const sendJson = (req, res, status, obj, extra = {}) => {
    const body = Buffer.from(JSON.stringify(obj));
    const headers = { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', Vary: 'Accept-Encoding', ...extra };
    if (/\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
      zlib.gzip(body, { level: 4 }, (err, gz) => {
        if (err) return send(res, 500, {}, 'gzip failed');
        send(res, status, { ...headers, 'Content-Encoding': 'gzip' }, gz);
      });
    } else send(res, status, headers, body);
  };
  const readBody = (req) => new Promise((resolve, reject) => {
    const chunks = []; req.on('data', (c) => chunks.push(c)); req.on('end', () => resolve(Buffer.concat(chunks))); req.on('error', reject);
  });

  function authorized(req, url) {
    const given = req.headers.apikey ?? url.searchParams.get('apikey');
    if (given !== undefined && given !== null && given !== '') return given === apiKey;
    return !apiKey;
  }

  function prepare(query) {
    let entry = fs_.docCache.get(query);
    if (!entry) {
      try {
        const doc = parse(query);
        const errors = validate(schema, doc);
        entry = errors.length ? { errors } : { doc };
      } catch (e) {
        entry = { errors: [e instanceof GraphQLError ? e : new GraphQLError(e.message)] };
      }
      if (fs_.docCache.size > 500) fs_.docCache.clear();
      fs_.docCache.set(query, entry);
    }
    return entry;
  }

  async function handleGraphql(req, res, url) {
    let payload;
    if (req.method === 'GET') {
      payload = { query: url.searchParams.get('query'), operationName: url.searchParams.get('operationName') || undefined };
      const v = url.searchParams.get('variables');
      try { payload.variables = v ? JSON.parse(v) : undefined; } catch { return sendJson(req, res, 400, { errors: [{ message: 'variables could not be decoded' }], data: null }); }
    } else if (req.method === 'POST') {
      const ct = (req.headers['content-type'] || '').toLowerCase();
      const raw = await readBody(req);
      if (!ct.startsWith('application/json')) return sendJson(req, res, 400, { errors: [{ message: 'transport not supported' }], data: null });
      try { payload = JSON.parse(raw.toString('utf8')); } catch (e) {
        return sendJson(req, res, 400, { errors: [{ message: `json request body could not be decoded: ${e.message}` }], data: null });
      }
      if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return sendJson(req, res, 400, { errors: [{ message: 'json request body could not be decoded' }], data: null });
    } else {
      return send(res, 405, { Allow: 'GET, POST' }, 'method not allowed');
    }
    const entry = typeof payload.query === 'string' ? prepare(payload.query) : { errors: [new GraphQLError('no operation provided')] };
    let opName = payload.operationName;
    if (!opName && entry.doc) opName = entry.doc.definitions.find((d) => d.kind === 'OperationDefinition')?.name?.value;
    opName = opName || '(anonymous)';
    fs_.opStats[opName] = (fs_.opStats[opName] || 0) + 1;
    if (/\bgzip\b/.test(req.headers['accept-encoding'] || '')) fs_.gzipAsked++;

    const fault = fs_.takeFault();
    if (fault) {
      switch (fault.kind) {
        case 'status': return send(res, fault.code, { 'Content-Type': 'text/plain' }, `fault: HTTP ${fault.code}\n`);
        case 'slow': await new Promise((r) => setTimeout(r, fault.ms)); break;
        case 'malformed': return send(res, 200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, '{"data":{"findScenes":{"count":1,"scenes":[{"id":"1",');
        case 'errors': {
          const first = entry.doc?.definitions.find((d) => d.kind === 'OperationDefinition')?.selectionSet.selections[0];
          const field = first?.alias?.value || first?.name?.value || 'findScenes';
          return sendJson(req, res, 200, { errors: [{ message: fault.message || 'Internal system error. Error fault injected', path: [field] }], data: null });
        }
        case 'truncate': case 'reset': case 'badgzip': case 'encoding': break; // handled after executing
      }
    }
    if (entry.errors) return sendJson(req, res, 422, { errors: entry.errors.map((e) => e.toJSON()) });
    const result = await execute({
      schema, document: entry.doc, rootValue: root, variableValues: payload.variables || undefined,
      operationName: payload.operationName || undefined, contextValue: { base: `http://${req.headers.host || '127.0.0.1'}` },
    });
    let status = 200, obj;
    if (result.errors && !('data' in result && result.data !== undefined)) { status = 422; obj = { errors: result.errors.map((e) => e.toJSON()) }; }
    else if (result.errors) obj = { errors: result.errors.map((e) => ({ message: e.message, path: e.path })), data: result.data };
    else obj = { data: result.data };
    if (fault && fault.kind === 'encoding') {
      // the normal answer labelled Content-Encoding: <encoding>, gzipped
      // when the label says gzip (any case), else as is
      const json = Buffer.from(JSON.stringify(obj));
      const body = /gzip/i.test(fault.encoding) ? zlib.gzipSync(json, { level: 4 }) : json;
      return send(res, fault.code || status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Encoding': fault.encoding }, body);
    }
    if (fault && fault.kind === 'badgzip') {
      // a whole HTTP message whose gzip body stops halfway (the trailer and
      // the end of the deflate stream are missing): only a gzip decoder
      // can tell, whatever the client's Accept-Encoding
      const gz = zlib.gzipSync(Buffer.from(JSON.stringify(obj)), { level: 4 });
      return send(res, 200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Encoding': 'gzip' }, gz.subarray(0, gz.length >> 1));
    }
    if (fault && (fault.kind === 'truncate' || fault.kind === 'reset')) {
      // gzip when asked, as a real Stash would: the cut lands in the gzip
      // stream, and the Content-Length is not met either way
      const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] || '');
      const json = Buffer.from(JSON.stringify(obj));
      const body = gzip ? zlib.gzipSync(json, { level: 4 }) : json;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': body.length,
        ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
      const part = fault.kind === 'truncate' ? body.subarray(0, body.length >> 1) : body.subarray(0, Math.min(16, body.length >> 2));
      res.write(part, () => {
        if (fault.kind === 'reset' && typeof res.socket?.resetAndDestroy === 'function') res.socket.resetAndDestroy();
        else res.socket?.destroy();
      });
      return;
    }
    return sendJson(req, res, status, obj);
  }

  function serveImage(req, res, url, buf) {
    const cc = url.searchParams.has('t') ? 'private, max-age=31536000, immutable' : 'no-cache';
    send(res, 200, { 'Content-Type': 'image/png', 'Cache-Control': cc }, buf);
  }

  function serveFile(req, res, file, size, name) {
    const range = req.headers.range;
    const base = { 'Accept-Ranges': 'bytes', 'Content-Type': mimeOf(name), 'Content-Disposition': `inline; filename="${name}"`, 'Last-Modified': fs.statSync(file).mtime.toUTCString() };
    if (!range) {
      res.writeHead(200, { ...base, 'Content-Length': size });
      return fs.createReadStream(file).pipe(res);
    }
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start, end;
    if (m && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') { const n = Number(m[2]); start = Math.max(0, size - n); end = size - 1; if (n === 0) start = size; }
      else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
    }
    if (start === undefined || start >= size || start > end) {
      res.writeHead(416, { ...base, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
      return res.end();
    }
    res.writeHead(206, { ...base, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1 });
    fs.createReadStream(file, { start, end }).pipe(res);
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    if (p === '/healthz') return send(res, 200, { 'Content-Type': 'text/plain' }, '.');
    if (p === '/__control') {
      if (req.method !== 'POST') return send(res, 405, { Allow: 'POST' }, 'method not allowed');
      let body;
      try { body = JSON.parse((await readBody(req)).toString('utf8') || '{}'); } catch { return sendJson(req, res, 400, { error: 'bad JSON' }); }
      try { return sendJson(req, res, 200, { ok: true, ...fs_.control(body) }); } catch (e) {
        return sendJson(req, res, e.status || 500, { ok: false, error: e.message });
      }
    }
    if (!authorized(req, url)) return send(res, 401, { 'WWW-Authenticate': 'FormBased', 'Content-Type': 'text/plain' }, 'Unauthorized');
    if (p === '/graphql') return handleGraphql(req, res, url);

    let m;
    const media = (m = /^\/scene\/([^/]+)\/(screenshot|preview|webp|stream|funscript|caption|interactive_heatmap)$/.exec(p)) ? ['scene', m[1], m[2]]
      : (m = /^\/scene\/([^/]+)_(thumbs\.vtt|sprite\.jpg)$/.exec(p)) ? ['scenehash', m[1], m[2]]
        : (m = /^\/(performer|studio|tag)\/([^/]+)\/image$/.exec(p)) ? [m[1], m[2], 'image']
          : (m = /^\/group\/([^/]+)\/(frontimage|backimage)$/.exec(p)) ? ['group', m[1], m[2]]
            : (m = /^\/gallery\/([^/]+)\/cover$/.exec(p)) ? ['gallery', m[1], 'cover'] : null;
    if (!media) return send(res, 404, { 'Content-Type': 'text/plain' }, '404 page not found\n');
    if (req.method !== 'GET') return send(res, 405, { Allow: 'GET' }, '');
    const [kind, id, what] = media;
    if (kind === 'scenehash') return send(res, 404, { 'Content-Type': 'text/plain' }, 'not generated\n');
    const x = fs_.c[kind].byId.get(id);
    if (!x) return send(res, 404, { 'Content-Type': 'text/plain' }, `${kind} not found\n`);
    if (kind === 'scene') {
      if (what === 'screenshot') return serveImage(req, res, url, images.screenshot);
      if (what === 'stream') {
        const mf = fs_.media.get(id);
        if (!mf) return send(res, 404, { 'Content-Type': 'text/plain' }, 'no file\n');
        return serveFile(req, res, mf.file, mf.size, mf.name);
      }
      return send(res, 404, { 'Content-Type': 'text/plain' }, 'not generated\n');
    }
    if (kind === 'group' && what === 'backimage' && x.back_image_path === null) return send(res, 404, { 'Content-Type': 'text/plain' }, 'no image\n');
    return serveImage(req, res, url, images[kind]);
  }

  return http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      process.stderr.write(`fake-stash: ${e.stack}\n`);
      if (!res.headersSent) send(res, 500, { 'Content-Type': 'text/plain' }, 'internal error\n'); else res.destroy();
    });
  });
}

function mimeOf(name) {
  const ext = path.extname(name).toLowerCase();
  return { '.mp4': 'video/mp4', '.m4v': 'video/mp4', '.mkv': 'video/x-matroska', '.webm': 'video/webm', '.avi': 'video/x-msvideo', '.mov': 'video/quicktime', '.wmv': 'video/x-ms-wmv', '.ts': 'video/mp2t' }[ext] || 'application/octet-stream';
}

// ---------------------------------------------------------------- main
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let a;
  try {
    a = parseArgs(process.argv.slice(2));
    for (const k of Object.keys(a)) if (!['port', 'scenes', 'seed', 'api-key', 'tz', 'media-dir', 'host'].includes(k)) throw new Error(`unknown flag --${k}`);
  } catch (e) { process.stderr.write(`fake-stash: ${e.message}\n`); process.exit(2); }
  const t0 = Date.now();
  const fake = new FakeStash({ scenes: Number(a.scenes ?? 1000), seed: Number(a.seed ?? 1), tz: a.tz ?? 'Z', apiKey: a['api-key'] || null, mediaDir: a['media-dir'] || null });
  // The updated_at indexes are built before listening, not by the first
  // incremental query (seconds at 1M scenes, which a timed sync would pay).
  for (const [kind, col] of Object.entries(fake.c)) col.updatedIndex(TIE_NAME[kind]);
  const server = createServer(fake);
  server.keepAliveTimeout = 30000;
  server.listen(Number(a.port ?? 9999), a.host || '127.0.0.1', () => {
    process.stderr.write(`fake-stash: ${fake.c.scene.arr.length} scenes ready in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
    process.stdout.write(`fake-stash listening on http://127.0.0.1:${server.address().port}\n`);
  });
  const stop = () => { server.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
