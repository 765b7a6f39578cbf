// Shared helpers for peekd's JS tests (node --test tests/js/).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = process.env.PEEKD_SHARED_DIR || path.resolve(repoRoot, '..', 'shared');
export const queriesDir = path.join(repoRoot, 'sync', 'queries');
export const fakeDir = path.join(repoRoot, 'tests', 'fake-stash');
export const serverPath = path.join(fakeDir, 'server.mjs');

const require = createRequire(path.join(repoRoot, 'tests', 'package.json'));
export const graphql = require('graphql');

export function realSchemaSDL() {
  const dir = path.join(sharedDir, 'stash-schema');
  let sdl = fs.readFileSync(path.join(dir, 'schema.graphql'), 'utf8');
  for (const f of fs.readdirSync(path.join(dir, 'types')).filter((f) => f.endsWith('.graphql')).sort()) {
    sdl += '\n' + fs.readFileSync(path.join(dir, 'types', f), 'utf8');
  }
  return sdl;
}
export function realSchema() { return graphql.buildSchema(realSchemaSDL()); }
export function fakeSchema() { return graphql.buildSchema(fs.readFileSync(path.join(fakeDir, 'schema.graphql'), 'utf8')); }
export function queryFiles() { return fs.readdirSync(queriesDir).filter((f) => f.endsWith('.graphql')).sort(); }
export function readQuery(name) { return fs.readFileSync(path.join(queriesDir, name.endsWith('.graphql') ? name : `${name}.graphql`), 'utf8'); }

/** Start the fake as a child process; resolves once it prints its ready line. */
export function startFake(args = [], { env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [serverPath, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env });
    let out = '', err = '';
    const onData = (d) => {
      out += d;
      const m = /fake-stash listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out);
      if (m) { child.stdout.off('data', onData); resolve({ child, url: m[1], port: Number(m[2]), stop: () => stopChild(child) }); }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => reject(new Error(`fake-stash exited early (${code}): ${err}`)));
    child.on('error', reject);
  });
}
export function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** POST a GraphQL request; returns {status, headers, body (parsed JSON or raw text)}. */
export async function gql(url, query, variables, { headers = {}, operationName } = {}) {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables, operationName }),
  });
  const text = await res.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* raw */ }
  return { status: res.status, headers: res.headers, body };
}
export async function control(url, op, args = {}) {
  const res = await fetch(`${url}/__control`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ op, ...args }) });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`control ${op} → ${res.status} ${JSON.stringify(body)}`);
  return body;
}
