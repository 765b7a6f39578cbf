// The container files, checked without a Docker engine: the Dockerfile
// builds with the project's own make targets from a context that holds
// everything the build needs, the runtime stage has every shared library
// peekd links and runs peekd itself as entry point and health check, and
// docker-compose.yml sets exactly the settings peekd reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  repoRoot, peekdBin, runPeekd, cleanEnv, configTable, parseDockerfile, shellCommands, parseCompose, tmpDir, startProc,
} from './ops_lib.mjs';

const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const buildStage = stages[0];
const runStage = stages[stages.length - 1];
const composeText = fs.readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8');
const compose = parseCompose(composeText);
const svc = compose.services.peekd;
const table = configTable().rows;
const tableEnv = new Map(table.filter((r) => r.env).map((r) => [r.env, r]));

const instrs = (stage, op) => stage.instrs.filter((i) => i.op === op);
const runCmds = (stage) => instrs(stage, 'RUN').flatMap((i) => shellCommands(i.args));
const jsonArgs = (s) => JSON.parse(s.trim());
function envOf(stage) {
  const env = {};
  for (const i of instrs(stage, 'ENV')) for (const m of i.args.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[m[1]] = m[2];
  return env;
}
function aptPackages(stage) {
  const pkgs = [];
  for (const words of runCmds(stage)) {
    const k = words.indexOf('install');
    if (k < 0 || !words.some((w) => w === 'apt-get')) continue;
    pkgs.push(...words.slice(k + 1).filter((w) => !w.startsWith('-')));
  }
  return pkgs;
}

test('two stages, both debian:12-slim; the runtime stage copies from the build stage', () => {
  assert.equal(stages.length, 2);
  for (const s of stages) assert.equal(s.from, 'debian:12-slim');
  assert.ok(buildStage.as, 'the build stage is named');
  const copies = instrs(runStage, 'COPY').filter((c) => c.args.includes(`--from=${buildStage.as}`));
  assert.equal(copies.length, 1, 'one COPY --from the build stage');
});

test('the build stage builds with make targets that exist in the Makefile, no compiler flags of its own', () => {
  const makes = runCmds(buildStage).filter((w) => w[0] === 'make');
  assert.ok(makes.length >= 1, 'a RUN make step');
  const makefile = fs.readFileSync(path.join(repoRoot, 'Makefile'), 'utf8');
  for (const words of makes) {
    const targets = words.slice(1).filter((w) => !w.startsWith('-') && !w.includes('='));
    assert.ok(targets.length >= 1, `explicit target in: ${words.join(' ')}`);
    for (const t of targets) {
      assert.match(makefile, new RegExp(`^${t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:`, 'm'), `Makefile has a rule for ${t}`);
      // make itself agrees that it can build the target.
      const r = spawnSync('make', ['-n', t], { cwd: repoRoot, encoding: 'utf8' });
      assert.equal(r.status, 0, `make -n ${t}: ${r.stderr}`);
    }
    assert.ok(!words.some((w) => /^(C|CPP|LD)FLAGS=|^CC=/.test(w)), 'no flags passed to make');
  }
  assert.doesNotMatch(instrs(buildStage, 'RUN').map((i) => i.args).join('\n'), /(^|\s)(gcc|cc|clang)\s/, 'no direct compiler call');
  // The file copied into the runtime stage is what that target produces.
  const copy = instrs(runStage, 'COPY').find((c) => c.args.includes('--from='));
  const [src, dst] = copy.args.replace(/--from=\S+\s+/, '').split(/\s+/);
  const workdir = instrs(buildStage, 'WORKDIR').pop().args.trim();
  const target = makes.flatMap((w) => w.slice(1)).find((t) => !t.startsWith('-') && !t.includes('='));
  assert.equal(path.posix.relative(workdir, src), target, 'COPY takes the make target');
  assert.equal(dst, '/usr/local/bin/peekd');
});

test('the build context (.dockerignore) holds everything `make build/peekd` compiles', () => {
  // Copy the tree as Docker would send it and let make plan the same build
  // there; the compile and link commands must be identical.
  const patterns = fs.readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8').split('\n')
    .map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const toRe = (p) => new RegExp('^' + p.replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*\*\//g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '(.*/)?') + '(/.*)?$');
  const rules = patterns.map((p) => (p.startsWith('!') ? { re: toRe(p.slice(1)), inc: true } : { re: toRe(p), inc: false }));
  const excluded = (rel) => {
    let ex = false;
    for (const r of rules) if (r.re.test(rel)) ex = !r.inc;
    return ex;
  };
  const ctx = tmpDir('peekd-ctx-');
  let copied = 0;
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(repoRoot, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && !excluded(r)) {
        fs.mkdirSync(path.join(ctx, path.dirname(r)), { recursive: true });
        fs.copyFileSync(path.join(repoRoot, r), path.join(ctx, r));
        copied++;
      }
    }
  };
  walk('');
  assert.ok(copied > 10);
  assert.ok(!fs.existsSync(path.join(ctx, 'build')), 'build/ is not sent');
  assert.ok(!fs.existsSync(path.join(ctx, '.git')), '.git is not sent');
  assert.ok(!fs.existsSync(path.join(ctx, 'tests')), 'tests/ is not sent');
  const plan = (dir) => {
    const r = spawnSync('make', ['-n', '-B', 'VARIANT=release', 'build/peekd'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, `make -n in ${dir}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => /(^|\s)-c\s|\s-o\s\S*peekd(\s|$)|embed_queries|ar rcs/.test(l)).sort();
  };
  const full = plan(repoRoot);
  assert.ok(full.some((l) => l.includes('cmd/cmd_health.c')));
  assert.deepEqual(plan(ctx), full);
  fs.rmSync(ctx, { recursive: true, force: true });
});

test('runtime stage: named data volume, non-root user 10001, environment, port', () => {
  const vols = instrs(runStage, 'VOLUME').map((i) => i.args.trim());
  assert.deepEqual(vols, ['/data']);
  const user = instrs(runStage, 'USER').pop().args.trim().split(':')[0];
  assert.ok(!['root', '0', ''].includes(user), `non-root USER (${user})`);
  const runs = instrs(runStage, 'RUN').map((i) => i.args).join('\n');
  assert.match(runs, new RegExp(`useradd[^\\n]*--uid 10001[^\\n]*\\s${user}(\\s|$)`), 'the user has uid 10001');
  assert.match(runs, new RegExp(`chown ${user}:\\S+ /data`), '/data belongs to the user (a new named volume copies it)');
  const env = envOf(runStage);
  assert.equal(env.PEEKD_DATA, '/data');
  assert.equal(env.PEEKD_LISTEN, '0.0.0.0:8080');
  for (const k of Object.keys(env)) assert.ok(tableEnv.has(k), `ENV ${k} is a peekd setting`);
  const port = env.PEEKD_LISTEN.split(':').pop();
  assert.deepEqual(instrs(runStage, 'EXPOSE').map((i) => i.args.trim()), [port]);
});

test('ENTRYPOINT, CMD and HEALTHCHECK run commands the built peekd has', () => {
  assert.deepEqual(jsonArgs(instrs(runStage, 'ENTRYPOINT').pop().args), ['peekd']);
  const cmd = jsonArgs(instrs(runStage, 'CMD').pop().args);
  assert.deepEqual(cmd, ['serve']);
  const hc = instrs(runStage, 'HEALTHCHECK').pop().args;
  const m = /CMD\s+(\[.*\])\s*$/.exec(hc);
  assert.ok(m, 'exec-form HEALTHCHECK');
  const probe = jsonArgs(m[1]);
  assert.equal(probe[0], 'peekd', 'the health check is peekd itself (no curl in the image)');
  assert.ok(fs.statSync(peekdBin).mode & 0o111, `${peekdBin} is executable`);
  for (const args of [cmd, probe.slice(1)]) {
    const r = runPeekd([...args, '--help']);
    assert.equal(r.code, 0, `peekd ${args.join(' ')} --help: ${r.stderr}`);
    assert.match(r.stdout, /^usage: peekd /);
  }
  const h = runPeekd(['health', '--help']);
  assert.match(h.stdout, /--listen VALUE\s+\$PEEKD_LISTEN/);
  // The health check reads the same PEEKD_LISTEN the server binds.
  assert.match(composeText, /test:\s*\["CMD",\s*"peekd",\s*"health"\]/);
});

function tinyServer(status) {
  return new Promise((resolve) => {
    const hits = [];
    const s = http.createServer((req, res) => {
      hits.push(req.url);
      res.writeHead(req.url === '/api/health' ? status : 404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ status: status === 200 ? 'ok' : 'initializing' }));
    });
    s.listen(0, '127.0.0.1', () => resolve({ port: s.address().port, hits, close: () => new Promise((r) => s.close(r)) }));
  });
}

// Async: the tiny servers live in this process's event loop.
async function health(args, env = {}) {
  const p = startProc(peekdBin, ['health', ...args], { env: cleanEnv(env) });
  const { code } = await p.exit;
  return { code, stdout: p.out, stderr: p.err };
}

test('peekd health: 200 -> exit 0, other status -> 1, nothing listening -> 1, wildcard host -> loopback', async () => {
  const ok = await tinyServer(200);
  const bad = await tinyServer(503);
  try {
    let r = await health([], { PEEKD_LISTEN: `0.0.0.0:${ok.port}`, http_proxy: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /healthy/);
    assert.deepEqual(ok.hits, ['/api/health']);
    r = await health(['--listen', `127.0.0.1:${ok.port}`], { PEEKD_LISTEN: '127.0.0.1:1' });
    assert.equal(r.code, 0, `the flag overrides the environment: ${r.stderr}`);
    r = await health([], { PEEKD_LISTEN: `127.0.0.1:${bad.port}` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unhealthy: HTTP 503/);
  } finally {
    await ok.close();
    await bad.close();
  }
  const r = await health(['--listen', `127.0.0.1:${ok.port}`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unhealthy/);
  assert.equal((await health(['--listen', '127.0.0.1:0'])).code, 2);
  assert.equal((await health(['--listen', 'nope'])).code, 2);
});

test('the runtime packages exist in Debian 12 and provide every library peekd links', () => {
  assert.match(fs.readFileSync('/etc/debian_version', 'utf8'), /^12\./, 'this check runs on Debian 12');
  const runtime = aptPackages(runStage);
  const build = aptPackages(buildStage);
  for (const want of ['liblmdb0', 'libmicrohttpd12', 'libcjson1', 'libcurl4', 'libroaring0', 'libxxhash0', 'libdeflate0', 'ffmpeg', 'ca-certificates']) {
    assert.ok(runtime.includes(want), `runtime installs ${want}`);
  }
  const all = [...new Set([...runtime, ...build])];
  const r = spawnSync('apt-cache', ['show', '--no-all-versions', ...all], { encoding: 'utf8' });
  assert.equal(r.status, 0, `apt-cache show: ${r.stderr}`);
  const shown = new Set(r.stdout.split('\n\n').map((para) => /^Package: (\S+)/m.exec(para)?.[1]).filter(Boolean));
  for (const p of all) assert.ok(shown.has(p), `apt-cache show ${p}: Debian 12 has it`);
  // Every shared library the binary needs comes from a runtime package
  // (or from the base image: libc, libgcc; sanitizer runtimes for asan).
  const base = new Set(['libc6', 'libgcc-s1', 'libstdc++6', 'libasan8', 'libubsan1']);
  const needed = execFileSync('readelf', ['-d', peekdBin], { encoding: 'utf8' })
    .split('\n').map((l) => /\(NEEDED\).*\[(.+)\]/.exec(l)).filter(Boolean).map((m) => m[1]);
  assert.ok(needed.length >= 2);
  for (const so of needed) {
    const r = spawnSync('dpkg', ['-S', `*/${so}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, `a package owns ${so}`);
    const pkgs = r.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[0]);
    const hit = pkgs.find((p) => runtime.includes(p) || base.has(p));
    assert.ok(hit, `${so} (from ${pkgs.join(', ')}) is installed by the runtime stage`);
  }
  // The Makefile's link libraries (-lX in SYSLIBS): each resolves, through
  // the -dev symlink libX.so, to a runtime package of the image; and no
  // library package is installed for nothing.
  const mk = fs.readFileSync(path.join(repoRoot, 'Makefile'), 'utf8').replace(/\\\n/g, ' ');
  const syslibs = [...(/^SYSLIBS\s*:?=(.*)$/m.exec(mk)[1].matchAll(/-l(\S+)/g))].map((m) => m[1])
    .filter((l) => !['pthread', 'm', 'c', 'dl', 'rt'].includes(l));
  assert.ok(syslibs.length >= 5, `SYSLIBS: ${syslibs}`);
  const providers = new Set();
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  for (const l of syslibs) {
    const real = fs.realpathSync(`/usr/lib/${multiarch}/lib${l}.so`);
    const r = spawnSync('dpkg', ['-S', `*/${path.basename(real)}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, `a package owns ${real}`);
    const pkg = r.stdout.split('\n').filter(Boolean).map((x) => x.split(':')[0]).find((p) => runtime.includes(p));
    assert.ok(pkg, `-l${l} (${real}, from ${r.stdout.trim()}) has its runtime package in the image`);
    providers.add(pkg);
  }
  for (const p of runtime.filter((x) => x.startsWith('lib'))) assert.ok(providers.has(p), `${p} provides a library the Makefile links`);
});

test('docker-compose.yml sets exactly the settings peekd reads, all of them', () => {
  assert.ok(svc, 'a peekd service');
  const names = svc.environment.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, 'no variable twice');
  for (const n of names) assert.ok(tableEnv.has(n), `${n} is a setting of peekd config-table`);
  for (const n of tableEnv.keys()) assert.ok(names.includes(n), `compose lists ${n} (commented is fine)`);
  // A commented entry shows the default where there is one.
  for (const e of svc.environment.filter((x) => x.commented)) {
    const def = tableEnv.get(e.name).def;
    if (def !== null) assert.equal(e.value, def, `${e.name}: commented value is the default`);
  }
  // The uncommented ones agree with the image.
  const live = Object.fromEntries(svc.environment.filter((e) => !e.commented).map((e) => [e.name, e.value]));
  const img = envOf(runStage);
  assert.equal(live.PEEKD_DATA, img.PEEKD_DATA);
  assert.equal(live.PEEKD_LISTEN, img.PEEKD_LISTEN);
  assert.ok(live.STASH_URL, 'STASH_URL is set (sync needs it)');
  const cport = live.PEEKD_LISTEN.split(':').pop();
  assert.ok(svc.ports.some((p) => p.split(':').pop() === cport), 'the published port is the listen port');
});

test('docker-compose.yml keeps /data on a named volume and probes with peekd health', () => {
  const data = svc.volumes.filter((v) => v.split(':')[1] === '/data');
  assert.deepEqual(data, ['peekd-data:/data']);
  assert.ok(compose.volumes.includes('peekd-data'), 'peekd-data is a declared named volume');
  for (const v of [...svc.volumes, ...svc.commentedVolumes]) {
    const [src, dst, mode] = v.split(':');
    if (dst !== '/data') assert.equal(mode, 'ro', `the optional media mount ${src} is read-only`);
  }
  assert.ok(svc.commentedVolumes.length >= 1, 'an optional (commented) media mount is shown');
  assert.match(composeText, /PEEKD_PATH_MAP/);
  assert.match(composeText, /never bind-mount/i);
  assert.ok(svc.keys.restart, 'a restart policy');
  assert.ok(svc.healthcheck.test);
});

test('every value written in docker-compose.yml passes peekd serve\'s configuration check', async () => {
  // Uncommented and commented entries alike (someone will uncomment them).
  // The store, address and Stash are redirected by flags (flags override
  // the environment); the first line peekd prints tells whether the
  // configuration was accepted.
  const env = Object.fromEntries(svc.environment.map((e) => [e.name, e.value]));
  const dir = tmpDir();
  const p = startProc(peekdBin, ['serve', '--data', dir, '--listen', '127.0.0.1:0', '--stash-url', 'http://127.0.0.1:9',
    '--cache-dir', path.join(dir, 'cache')], { env: cleanEnv({ ...env, PEEKD_ALLOW_NETWORK_FS: '1' }) });
  try {
    await p.waitFor(/\S/, 30000).catch(() => {});
  } finally {
    await p.stop('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.doesNotMatch(p.all, /environment variable [A-Z_]+:|unknown option|unexpected argument|--[a-z-]+: /, p.all);
});
