// Helpers shared by the operations tests (tests/js/ops_*.test.mjs): the
// peekd binary, its settings table, process spawning with captured output,
// and small parsers for the Dockerfile and docker-compose.yml.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const peekdBin = process.env.PEEKD_BIN || path.join(repoRoot, 'build', 'release', 'peekd');

/** Runs peekd synchronously. env entries replace (undefined = remove) the
 *  variables of a clean environment (no PEEKD_*, STASH_* from the caller). */
export function runPeekd(args, { env = {}, timeout = 30000, input } = {}) {
  const r = spawnSync(peekdBin, args, { env: cleanEnv(env), encoding: 'utf8', timeout, input });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** process.env without any peekd/Stash setting, plus extra. */
export function cleanEnv(extra = {}) {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(PEEKD_|STASH_)/.test(k)) e[k] = v;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete e[k]; else e[k] = String(v);
  }
  return e;
}

/** Parses `peekd config-table` (Markdown) into rows
 *  {flag, env|null, def|null, commands:[...], meaning}. */
export function parseConfigTable(md) {
  const lines = md.split('\n').filter((l) => l.startsWith('|'));
  const header = lines[0].split('|').slice(1, -1).map((s) => s.trim());
  if (header.join(',') !== 'flag,environment,default,commands,meaning') throw new Error(`unexpected header: ${lines[0]}`);
  const unquote = (s) => (s === '–' ? null : s.replace(/^`(.*)`$/, '$1'));
  return lines.slice(2).map((l) => {
    // The meaning is the last column and may itself hold '|' in theory:
    // split the first four cells only.
    const cells = [];
    let rest = l.slice(1);
    for (let i = 0; i < 4; i++) {
      const j = rest.indexOf(' | ');
      cells.push(rest.slice(0, j).trim());
      rest = rest.slice(j + 3);
    }
    cells.push(rest.replace(/\s*\|\s*$/, ''));
    return {
      flag: unquote(cells[0]).replace(/^--/, ''),
      env: unquote(cells[1]),
      def: unquote(cells[2]),
      commands: cells[3].split(/\s+/),
      meaning: cells[4],
    };
  });
}

export function configTable() {
  const r = runPeekd(['config-table']);
  if (r.code !== 0) throw new Error(`peekd config-table exited ${r.code}: ${r.stderr}`);
  return { text: r.stdout, rows: parseConfigTable(r.stdout) };
}

/** The subcommands listed by `peekd --help`. */
export function subcommands() {
  const r = runPeekd(['--help']);
  if (r.code !== 0) throw new Error(`peekd --help exited ${r.code}`);
  const out = [];
  let inCmds = false;
  for (const l of r.stdout.split('\n')) {
    if (/^commands:/.test(l)) { inCmds = true; continue; }
    if (inCmds) {
      const m = /^ {2}([a-z][a-z-]*)\s{2,}/.exec(l);
      if (m) out.push(m[1]); else if (l.trim() === '') inCmds = out.length === 0;
    }
  }
  return out;
}

/** Dockerfile: instructions with continuation lines joined, grouped by
 *  stage.  [{from, as, instrs:[{op, args}]}] */
export function parseDockerfile(text) {
  const logical = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && cur === '') continue;
    if (/^\s*#/.test(raw)) continue; // comment inside a continuation
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) { cur += line.slice(0, -1) + ' '; continue; }
    cur += line;
    if (cur.trim()) logical.push(cur.trim());
    cur = '';
  }
  const stages = [];
  for (const l of logical) {
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`bad Dockerfile line: ${l}`);
    const op = m[1].toUpperCase();
    const args = m[2];
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f[1], as: f[2] || null, instrs: [] });
      continue;
    }
    if (!stages.length) throw new Error(`${op} before FROM`);
    stages[stages.length - 1].instrs.push({ op, args });
  }
  return stages;
}

/** Splits a shell command into simple commands (on &&, ||, ;) and words. */
export function shellCommands(cmd) {
  return cmd.split(/&&|\|\||;/).map((c) => c.trim()).filter(Boolean).map((c) => c.split(/\s+/));
}

/** docker-compose.yml, the subset we write: services.<name>.{environment,
 *  volumes, ports, healthcheck.test} plus top-level volumes.  Commented
 *  environment entries ("# NAME: value") are returned with commented:true. */
export function parseCompose(text) {
  const lines = text.split('\n');
  const res = { services: {}, volumes: [] };
  let top = null, svc = null, key = null, keyIndent = 0, sub = null;
  for (const raw of lines) {
    if (!raw.trim()) continue;
    const indent = raw.length - raw.trimStart().length;
    const t = raw.trim();
    if (indent === 0 && !t.startsWith('#')) {
      top = t.replace(/:.*$/, ''); svc = null; key = null; continue;
    }
    if (top === 'volumes' && indent === 2 && !t.startsWith('#')) { res.volumes.push(t.replace(/:.*$/, '')); continue; }
    if (top !== 'services') continue;
    if (indent === 2 && !t.startsWith('#')) {
      svc = t.replace(/:.*$/, '');
      res.services[svc] = { environment: [], volumes: [], commentedVolumes: [], ports: [], healthcheck: {}, keys: {} };
      key = null; continue;
    }
    if (!svc) continue;
    const s = res.services[svc];
    if (indent === 4 && !t.startsWith('#')) {
      const m = /^([a-z_]+):\s*(.*)$/.exec(t);
      key = m[1]; keyIndent = indent; sub = null;
      s.keys[key] = m[2];
      continue;
    }
    if (indent <= keyIndent) continue;
    if (key === 'environment') {
      const m = /^(#\s*)?([A-Z][A-Z0-9_]*):\s*(.*)$/.exec(t);
      if (m) s.environment.push({ name: m[2], value: m[3].replace(/^"(.*)"$/, '$1'), commented: !!m[1] });
    } else if (key === 'volumes' || key === 'ports') {
      const m = /^(#\s*)?-\s*"?([^"]+)"?$/.exec(t);
      if (m && !m[1]) s[key].push(m[2]);
      else if (m && key === 'volumes' && /^[^\s]+:\/[^\s]*$/.test(m[2])) s.commentedVolumes.push(m[2]);
    } else if (key === 'healthcheck') {
      const m = /^([a-z_]+):\s*(.*)$/.exec(t);
      if (m && !t.startsWith('#')) s.healthcheck[m[1]] = m[2];
    }
  }
  return res;
}

export function tmpDir(prefix = 'peekd-ops-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A free TCP port on 127.0.0.1 (bind 0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

/** A child process whose output is collected; waitFor(re) resolves with the
 *  match once stdout+stderr match re (or rejects when the process exits
 *  first or after ms). */
export function startProc(bin, args, { env, cwd } = {}) {
  const child = spawn(bin, args, { env: env || process.env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { child, out: '', err: '', all: '', exited: null, waiters: [] };
  const feed = (which) => (d) => {
    p[which] += d; p.all += d;
    for (const w of [...p.waiters]) w.check();
  };
  child.stdout.setEncoding('utf8'); child.stderr.setEncoding('utf8');
  child.stdout.on('data', feed('out'));
  child.stderr.on('data', feed('err'));
  p.exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    p.exited = { code, signal };
    for (const w of [...p.waiters]) w.check();
    resolve(p.exited);
  }));
  p.waitFor = (re, ms = 60000, from = 0) => new Promise((resolve, reject) => {
    const w = {};
    const done = (fn, v) => { clearTimeout(w.timer); p.waiters = p.waiters.filter((x) => x !== w); fn(v); };
    w.check = () => {
      const m = re.exec(p.all.slice(from));
      if (m) return done(resolve, m);
      if (p.exited) done(reject, new Error(`${path.basename(bin)} ${args.join(' ')} exited (${JSON.stringify(p.exited)}) before printing ${re}:\n${p.all.slice(-4000)}`));
    };
    w.timer = setTimeout(() => done(reject, new Error(`timeout after ${ms} ms waiting for ${re}:\n${p.all.slice(-4000)}`)), ms);
    p.waiters.push(w);
    w.check();
  });
  p.stop = (sig = 'SIGTERM') => {
    if (p.exited) return Promise.resolve(p.exited);
    child.kill(sig);
    return p.exit;
  };
  return p;
}
