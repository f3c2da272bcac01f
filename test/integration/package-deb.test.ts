/**
 * Issue 20.1–3, must-show: the Debian package scripts/build-deb makes installs on this machine
 * with dpkg, apt finds its dependencies satisfied, and what it installed works: `haven
 * --version`, `man haven-protect`, bash and zsh completion (server names from libvirt, job names
 * from the configuration), the systemd unit (systemd-analyze verify and security), the logrotate
 * file. The package is purged afterwards; a haven package installed before the test is refused
 * rather than replaced.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { installPath } from '../../src/core/package-root.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { bashComplete, zshComplete } from '../helpers/completion.ts';
import { havenEnv } from '../helpers/haven.ts';
import { builtPackage } from '../helpers/package.ts';

const PREFIX = 'haven-t-pkgdeb';
const UNIT = '/lib/systemd/system/haven.service';
/** dpkg-query's format: the package's status words. */
const STATUS = `-f=\${Status}`;
const version = (JSON.parse(await readFile(installPath('package.json'), 'utf8')) as { version: string })
  .version;

/** A command's exit code and output, whatever the code. */
async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const codes = Array.from({ length: 256 }, (_, i) => i);
  return exec(cmd, args, { okCodes: codes, timeoutMs: 120_000, env });
}

test('the .deb: fields, dependencies and files', async () => {
  const { deb } = await builtPackage();
  const field = async (f: string) => (await exec('dpkg-deb', ['-f', deb, f])).stdout.trim();
  assert.equal(await field('Package'), 'haven');
  assert.equal(await field('Version'), `${version}-1`);
  assert.equal(await field('Architecture'), (await exec('dpkg', ['--print-architecture'])).stdout.trim());
  assert.match(await field('Depends'), /^nodejs \(>= 20\)/);
  assert.match(await field('Recommends'), /libvirt-clients.*qemu-utils.*openssh-client/);
  const files = (await exec('dpkg-deb', ['-c', deb])).stdout;
  for (const f of [
    './usr/bin/haven -> ../lib/haven/bin/haven.mjs',
    './usr/lib/haven/dist/cli/main.js',
    './usr/lib/haven/dist/cli/start.cjs',
    './usr/lib/haven/dist/cli/run/receive.cjs',
    './usr/lib/haven/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
    './lib/systemd/system/haven.service',
    './usr/share/man/man1/haven.1.gz',
    './usr/share/man/man1/haven-protect.1.gz',
    './usr/share/bash-completion/completions/haven',
    './usr/share/zsh/vendor-completions/_haven',
    './etc/logrotate.d/haven',
    './usr/share/doc/haven/install.md',
    './usr/lib/haven/src/daemon/ui/charts.js',
    './usr/lib/haven/node_modules/uplot/dist/uPlot.iife.min.js',
    './usr/share/doc/haven/examples/prometheus/haven-rules.yml',
    './usr/share/doc/haven/examples/prometheus/haven-rules.test.yml',
  ]) {
    assert.ok(files.includes(f), `${f} in the package`);
  }
  // Haven's own tree is compiled JavaScript; the dependencies hold no development tools.
  assert.doesNotMatch(
    files,
    /\/usr\/lib\/haven\/(src\/cli\/|dist\/\S*\.ts\n)|node_modules\/(tsx|esbuild|typescript)\//,
  );
});

test('dpkg -i on this machine: haven, man, completion, the unit, logrotate; then purged', async (t) => {
  const { deb } = await builtPackage();
  const before = await run('dpkg-query', ['-W', STATUS, 'haven']);
  assert.ok(
    !before.stdout.includes('installed'),
    'a haven package is already installed on this machine; this test installs and purges its own',
  );
  // What apt would do with it: every dependency resolvable here.
  const sim = await run('apt-get', ['install', '--simulate', '--no-install-recommends', deb]);
  assert.equal(sim.code, 0, sim.stderr);
  t.after(() => exec('dpkg', ['--purge', 'haven']).catch(() => {}));
  const inst = await run('dpkg', ['-i', deb]);
  assert.equal(inst.code, 0, `${inst.stdout}\n${inst.stderr}`);
  const check = await run('apt-get', ['check']);
  assert.equal(check.code, 0, `apt-get check: ${check.stdout}${check.stderr}`);
  assert.match((await exec('dpkg-query', ['-W', STATUS, 'haven'])).stdout, /install ok installed/);

  // The command, from PATH, running the compiled tree of /usr/lib/haven.
  const path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  // A configuration of the installed haven's own (jobs for the completion to offer).
  const dir = await testDir(t, `${PREFIX}-cfg`);
  const config = join(dir, 'haven.yaml');
  await writeFile(
    config,
    `targets:\n  dr1: { url: ${join(dir, 'store')} }\njobs:\n  nightly: { servers: ["*"], target: dr1 }\n  weekly: { servers: [web01], target: dr1 }\n`,
  );
  // State, run and log directories of the test's own, the system's PATH.
  const { NODE_OPTIONS: _none, ...env } = (await havenEnv(dir, { HAVEN_CONFIG: config, PATH: path })).env;
  assert.equal((await exec('haven', ['--version'], { env })).stdout.trim(), version);
  assert.equal(readlinkSync('/usr/bin/haven'), '../lib/haven/bin/haven.mjs');
  assert.equal(realpathSync('/usr/bin/haven'), '/usr/lib/haven/bin/haven.mjs');
  assert.equal(existsSync('/usr/lib/haven/node_modules/tsx'), false);

  // man finds the page in the system's manual.
  assert.equal(
    (await exec('man', ['-w', 'haven-protect'])).stdout.trim(),
    '/usr/share/man/man1/haven-protect.1.gz',
  );
  const page = await exec('man', ['haven-protect'], { env: { ...env, MANWIDTH: '100', MANPAGER: 'cat' } });
  assert.match(page.stdout.replace(/.\x08/g, ''), /haven protect \[options\] <server>/);

  // Completion from the installed files, names from the installed haven.
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], start: false });
  const bash = '/usr/share/bash-completion/completions/haven';
  assert.deepEqual(bashComplete(bash, ['haven', 'pro'], env), ['protect']);
  assert.ok(
    bashComplete(bash, ['haven', 'protect', ''], env).includes(guest.name),
    'server names from libvirt',
  );
  assert.deepEqual(bashComplete(bash, ['haven', 'job', 'run', ''], env), ['nightly', 'weekly']);
  const zsh = zshComplete(null, `haven protect ${PREFIX}`, `*${guest.name}*`, env);
  assert.ok(zsh.includes(guest.name), `zsh offers ${guest.name}: ${zsh}`);

  // The unit's capabilities and NoNewPrivileges are enough for Haven's work: the installed
  // haven copies the (shut-off) guest through qemu-nbd with only those capabilities bounded in
  // (setpriv applies them as systemd would; its other settings need a running systemd).
  const unit = await readFile(UNIT, 'utf8');
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  assert.ok(caps.includes('CAP_SYS_ADMIN') && caps.length < 10, `the unit bounds capabilities: ${caps}`);
  assert.match(unit, /^NoNewPrivileges=yes$/m);
  const bounding = ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  const store = join(dir, 'store');
  const confined = await run(
    'setpriv',
    [
      `--bounding-set=${bounding}`,
      '--inh-caps=-all',
      '--no-new-privs',
      '/usr/bin/haven',
      'protect',
      guest.name,
      '--to',
      store,
      '--json',
    ],
    env,
  );
  assert.equal(confined.code, 0, confined.stderr);
  assert.equal((JSON.parse(confined.stdout) as { mode: string }).mode, 'full');
  const verified = await run('haven', ['verify', guest.name, '--store', store, '--json'], env);
  assert.equal((JSON.parse(verified.stdout) as { ok: boolean }).ok, true, verified.stderr);

  // The unit: valid where the package is installed, and hardened.
  const verify = await run('systemd-analyze', ['verify', UNIT]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.doesNotMatch(verify.stderr, /haven\.service/);
  const security = await run('systemd-analyze', ['security', '--offline=true', UNIT]);
  const level = Number(/Overall exposure level for haven\.service: ([\d.]+)/.exec(security.stdout)?.[1]);
  assert.ok(level <= 5, `exposure ${level} (was 9.1 before issue 20)`);
  const rotate = await run('logrotate', ['--debug', '/etc/logrotate.d/haven']);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.match(rotate.stderr + rotate.stdout, /rotating pattern: \/var\/log\/haven\/serve-\*\.log/);

  // The daemon's commands keep their compiled code where the unit says; purging removes it.
  const codeCache = /^Environment=HAVEN_CODE_CACHE=(.*)$/m.exec(unit)?.[1]?.trim();
  assert.equal(codeCache, '/var/cache/haven/code-cache');
  await rm('/var/cache/haven', { recursive: true, force: true });
  const listed = await run('haven', ['images', '--store', store, '--json'], {
    ...env,
    HAVEN_CODE_CACHE: codeCache,
  });
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(readdirSync(codeCache).join(' '), /^images\.cjs\.[0-9a-f]+\.v\d+.*\.v8$/);

  const purge = await run('dpkg', ['--purge', 'haven']);
  assert.equal(purge.code, 0, purge.stderr);
  assert.equal(existsSync('/var/cache/haven'), false, 'the code cache is purged');
  assert.equal(existsSync('/usr/bin/haven'), false);
  assert.equal(existsSync('/usr/lib/haven'), false);
  assert.equal(existsSync(UNIT), false);
});
