/**
 * Issue 20.1, must-show: the npm tarball (`npm pack`) installs into a scratch prefix as an
 * operator's `npm install -g` would, with no engine warning on Node 20, holds compiled
 * JavaScript only, and the installed `haven` protects a real guest (a full run and an
 * incremental one, byte-checked) with no tsx anywhere it could load it from.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { installPath } from '../../src/core/package-root.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, runHaven } from '../helpers/haven.ts';
import { builtPackage } from '../helpers/package.ts';
import { replicationRounds } from '../helpers/rounds.ts';
import { freePort, waitFor } from './jobs-helpers.ts';

const PREFIX = 'haven-t-pkgnpm';
const version = (JSON.parse(await readFile(installPath('package.json'), 'utf8')) as { version: string })
  .version;

test('the tarball holds the compiled tree, the pages and the dashboard, and no source or tests', async () => {
  const { tarball } = await builtPackage();
  const files = (await exec('tar', ['tzf', tarball])).stdout.split('\n').filter(Boolean);
  for (const f of [
    'package/package.json',
    'package/bin/haven.mjs',
    'package/dist/cli/main.js',
    'package/dist/cli/commands/protect.js',
    'package/dist/cli/commands/receive.js',
    'package/dist/cli/start.cjs',
    'package/dist/cli/run/protect.cjs',
    'package/dist/cli/run/receive.cjs',
    'package/dist/man/man1/haven-protect.1',
    'package/dist/completion/haven.bash',
    'package/src/daemon/ui/index.html',
    'package/src/daemon/ui/charts.js',
    'package/src/daemon/ui/panels.js',
    'package/deploy/prometheus/haven-rules.yml',
    'package/deploy/haven.service',
    'package/docs/install.md',
  ]) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  const unwanted = files.filter((f) => /\.ts$|\.map$|^package\/(test|bench|scripts|\.ci)\//.test(f));
  assert.deepEqual(unwanted, [], 'no TypeScript, source maps, tests, benchmarks or CI files');
  assert.ok(files.length < 200, `${files.length} files`);
});

test('npm install -g into a scratch prefix: no engine warning, no tsx or esbuild, haven --version', async () => {
  const { prefix, installOutput } = await builtPackage();
  assert.doesNotMatch(installOutput, /EBADENGINE/, 'every dependency accepts Node 20');
  const pkg = join(prefix, 'lib', 'node_modules', 'haven');
  for (const dev of ['tsx', 'esbuild', 'typescript', '@biomejs/biome']) {
    assert.equal(existsSync(join(pkg, 'node_modules', dev)), false, `${dev} is not installed`);
  }
  assert.equal(existsSync(join(pkg, 'src', 'cli')), false, 'no TypeScript source');
  const v = await exec(join(prefix, 'bin', 'haven'), ['--version']);
  assert.equal(v.stdout.trim(), version);
  // npm links the pages into <prefix>/share/man.
  const man = await exec('man', ['-M', join(prefix, 'share', 'man'), 'haven-protect'], {
    env: { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat' },
  });
  assert.match(man.stdout.replace(/.\x08/g, ''), /haven protect \[options\] <server>/);
});

test('the installed haven protects a real guest: full, then incremental, byte for byte', async (t) => {
  const { prefix } = await builtPackage();
  const pkg = join(prefix, 'lib', 'node_modules', 'haven');
  // Nowhere node would resolve `tsx` from the installed package has it.
  for (let dir = pkg; dirname(dir) !== dir; dir = dirname(dir)) {
    assert.equal(existsSync(join(dir, 'node_modules', 'tsx')), false, `tsx under ${dir}`);
  }
  const dir = await testDir(t, `${PREFIX}-protect`);
  const store = join(dir, 'store');
  const base = await havenEnv(dir);
  const { NODE_OPTIONS: _none, ...env } = base.env;
  // The command an operator runs: <prefix>/bin/haven (its local receiver is the installed one too).
  const h = { ...base, env, bin: join(prefix, 'bin', 'haven') };
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  await replicationRounds({
    h,
    guest,
    store,
    dir,
    protectArgs: ['--to', store],
    copies: 2,
    rounds: [[['vda', 11, 40]], [['vda', 12, 8]]],
  });
  const verify = await runHaven(h, ['verify', guest.name, '--store', store, '--json']);
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
});

test('the installed daemon serves the dashboard and its charting library from the install', async (t) => {
  const { prefix } = await builtPackage();
  const pkg = join(prefix, 'lib', 'node_modules', 'haven');
  const dir = await testDir(t, `${PREFIX}-serve`);
  const base = await havenEnv(dir);
  const { NODE_OPTIONS: _none, HAVEN_CONFIG: _config, ...env } = base.env;
  const port = await freePort();
  const daemon = spawn(join(prefix, 'bin', 'haven'), ['serve', '--listen', `127.0.0.1:${port}`], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  daemon.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', resolve));
  t.after(async () => {
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
    await exited;
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    'the installed daemon to listen',
    async () => (await fetch(`${url}/healthz`)).ok || undefined,
    60_000,
  );
  assert.match(await (await fetch(`${url}/`)).text(), /<script src="\/ui\/uPlot\.iife\.min\.js"/);
  // The library is the one npm installed with the package (a production dependency), not a copy.
  const uplot = await fetch(`${url}/ui/uPlot.iife.min.js`);
  assert.equal(uplot.status, 200);
  assert.deepEqual(
    Buffer.from(await uplot.arrayBuffer()),
    await readFile(join(pkg, 'node_modules', 'uplot', 'dist', 'uPlot.iife.min.js')),
  );
  for (const file of ['charts.js', 'panels.js', 'app.js', 'uPlot.min.css']) {
    assert.equal((await fetch(`${url}/ui/${file}`)).status, 200, file);
  }
  daemon.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
});
