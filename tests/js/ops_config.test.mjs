// docs/CONFIG.md against the binary, and strict configuration: every bad
// value stops every command that reads it with exit 2 and a message naming
// the setting; every command's --help lists exactly its options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot, runPeekd, configTable, subcommands, tmpDir } from './ops_lib.mjs';

const { text: tableText, rows } = configTable();
const byEnv = new Map(rows.filter((r) => r.env).map((r) => [r.env, r]));
const cmds = subcommands();
const STORE_CMDS = ['serve', 'sync', 'reindex', 'check', 'backup'];

/** Options listed by `peekd CMD --help`: [{flag, env, def, bool}]. */
function helpOptions(cmd) {
  const r = runPeekd([cmd, '--help']);
  assert.equal(r.code, 0, `peekd ${cmd} --help: ${r.stderr}`);
  const opts = [];
  for (const m of r.stdout.matchAll(/^ {2}--([a-z][a-z-]*)( VALUE)?(?: {2}\$([A-Z_0-9]+))?(?: {2}\[([^\]]*)\])?$/gm)) {
    opts.push({ flag: m[1], bool: !m[2], env: m[3] || null, def: m[4] ?? null });
  }
  return { opts, stdout: r.stdout };
}

/** The commands that read a setting, from their --help (authoritative). */
const helps = Object.fromEntries(cmds.filter((c) => c !== 'config-table').map((c) => [c, helpOptions(c)]));
const readers = (flag) => Object.keys(helps).filter((c) => helps[c].opts.some((o) => o.flag === flag));

test('docs/CONFIG.md holds exactly the table `peekd config-table` prints', () => {
  const doc = fs.readFileSync(path.join(repoRoot, 'docs', 'CONFIG.md'), 'utf8');
  const m = /<!-- config-table:begin -->\n([\s\S]*?)<!-- config-table:end -->/.exec(doc);
  assert.ok(m, 'markers present');
  assert.equal(m[1], tableText,
    'docs/CONFIG.md is stale: replace the table between the markers with the output of `build/peekd config-table`');
  assert.ok(rows.length >= 20);
  // Every variable the doc or README mentions is a real one.
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  for (const src of [doc, readme, fs.readFileSync(path.join(repoRoot, 'docs', 'OPERATIONS.md'), 'utf8')]) {
    for (const [v] of src.matchAll(/\b(?:PEEKD|STASH)_[A-Z_]+\b/g)) {
      if (v === 'PEEKD_BIN' || v === 'PEEKD_BUILD') continue; // test-runner variables
      assert.ok(byEnv.has(v), `${v} (mentioned in the docs) is a setting`);
    }
  }
});

test('every subcommand --help exits 0 and lists its options as the table says', () => {
  for (const want of ['serve', 'sync', 'reindex', 'check', 'backup', 'version', 'health', 'config-table']) {
    assert.ok(cmds.includes(want), `peekd --help lists ${want}`);
  }
  assert.equal(runPeekd(['config-table', '--help']).code, 0);
  for (const [cmd, { opts, stdout }] of Object.entries(helps)) {
    assert.match(stdout, new RegExp(`^usage: peekd ${cmd} `));
    for (const o of opts) {
      const row = rows.find((r) => r.flag === o.flag);
      assert.ok(row, `${cmd} --${o.flag} is in the table`);
      assert.equal(o.env, row.env, `${cmd} --${o.flag}: variable`);
      assert.equal(o.def, row.def, `${cmd} --${o.flag}: default`);
    }
    for (const r of rows) {
      const inCmd = r.commands.includes(cmd) || (r.commands.includes('all') && STORE_CMDS.includes(cmd));
      if (inCmd) assert.ok(opts.some((o) => o.flag === r.flag), `${cmd} --help lists --${r.flag}`);
    }
  }
  // Every setting is read by some command.
  for (const r of rows) assert.ok(readers(r.flag).length >= 1, `--${r.flag} is read by a command`);
});

// [variable, bad value, what the message must also say]
const BAD = [
  ['PEEKD_THREADS', 'abc', /integer/],
  ['PEEKD_THREADS', '0', /from 1 to/],
  ['PEEKD_THREADS', '65', /to 64/],
  ['PEEKD_LISTEN', 'nope', /HOST:PORT/],
  ['PEEKD_LISTEN', '127.0.0.1:70000', /HOST:PORT/],
  ['STASH_URL', 'ftp://x', /http/],
  ['STASH_URL', '', /URL/],
  ['PEEKD_MAP_SIZE', '12Q', /size/],
  ['PEEKD_MAP_SIZE', '1K', /size/],
  ['PEEKD_SYNC_INTERVAL', '-5', /duration/],
  ['PEEKD_SYNC_INTERVAL', '5x', /duration/],
  ['PEEKD_SYNC_TIMEOUT', '0', /duration/],
  ['PEEKD_SYNC_TIMEOUT', 'off', /duration from 1s/],
  ['PEEKD_SWEEP_INTERVAL', '1.5h', /duration/],
  ['PEEKD_RECONCILE_INTERVAL', 'never', /duration/],
  ['PEEKD_LOG_LEVEL', 'loud', /debug, info, warn, error/],
  ['PEEKD_LOG_FORMAT', 'xml', /text or json/],
  ['PEEKD_ALLOW_NETWORK_FS', 'maybe', /boolean/],
  ['PEEKD_PATH_MAP', '/data/media', /FROM=TO/],
  ['PEEKD_TOKEN', '', /empty/],
  ['PEEKD_SYNC_PAGE_SIZE', '999999999999999999999', /integer/],
  ['PEEKD_HLS_CACHE_MAX', '1', /size/],
];

for (const [env, value, says] of BAD) {
  test(`${env}=${JSON.stringify(value)} stops every command that reads it (exit 2, names it)`, () => {
    const row = byEnv.get(env);
    assert.ok(row, `${env} is a setting`);
    const users = readers(row.flag);
    assert.ok(users.length >= 1);
    const dir = tmpDir();
    try {
      for (const cmd of users) {
        // The environment variable ...
        let r = runPeekd([cmd, ...(cmd === 'backup' ? [path.join(dir, 'b')] : [])], { env: { [env]: value, PEEKD_DATA: path.join(dir, 'd') } });
        assert.equal(r.code, 2, `${env}=${value} peekd ${cmd}: exit ${r.code}, stderr: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^peekd ${cmd}: environment variable ${env}: `), `${cmd}: names ${env}`);
        assert.match(r.stderr, says);
        assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, 'one line, nothing else happens');
        // ... and the flag, which names itself.
        r = runPeekd([cmd, `--${row.flag}=${value}`], { env: { PEEKD_DATA: path.join(dir, 'd') } });
        assert.equal(r.code, 2, `peekd ${cmd} --${row.flag}=${value}: exit ${r.code}`);
        assert.match(r.stderr, new RegExp(`--${row.flag}: `));
      }
      assert.ok(!fs.existsSync(path.join(dir, 'd')), 'a configuration error creates no store');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('an unknown or misplaced flag, a missing value, a stray argument: exit 2 naming it', () => {
  for (const cmd of Object.keys(helps)) {
    let r = runPeekd([cmd, '--no-such-flag']);
    assert.equal(r.code, 2, `${cmd} --no-such-flag`);
    assert.match(r.stderr, /unknown option '--no-such-flag'/);
    r = runPeekd([cmd, '--no-such-flag=1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /'--no-such-flag'/);
  }
  // A flag of another command.
  let r = runPeekd(['check', '--threads', '4']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--threads'/);
  r = runPeekd(['serve', '--threads']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--threads needs a value/);
  r = runPeekd(['version', 'extra']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unexpected argument 'extra'/);
  r = runPeekd(['no-such-command']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command 'no-such-command'/);
  assert.equal(runPeekd([]).code, 2);
});

test('a bad value of a setting the command does not read is not an error; good values pass', () => {
  // version reads only the log settings.
  let r = runPeekd(['version'], { env: { PEEKD_THREADS: 'abc', STASH_URL: 'ftp://x', PEEKD_LOG_LEVEL: 'warn' } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^peekd \S+ \(store schema \d+, index \d+\)/);
  r = runPeekd(['check'], { env: { PEEKD_THREADS: 'abc', PEEKD_LISTEN: 'nope', PEEKD_DATA: '/nonexistent/peekd-ops-test' } });
  assert.doesNotMatch(r.stderr, /PEEKD_THREADS|PEEKD_LISTEN/);
  // health reads --listen: a valid one gives a probe failure (1), not 2.
  r = runPeekd(['health'], { env: { PEEKD_LISTEN: '127.0.0.1:1', PEEKD_LOG_LEVEL: 'debug', PEEKD_LOG_FORMAT: 'json', PEEKD_THREADS: 'x' } });
  assert.equal(r.code, 1, r.stderr);
  r = runPeekd(['health', '--listen', '[::1]:1']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /\[::1\]:1/);
});
