/**
 * The packages the package-*.test.ts files check, built once per test run and shared: the npm
 * tarball (`npm pack`, which runs scripts/build), its global install into a scratch prefix (what
 * an operator's `npm install -g` does; the native addons compile here), and the .deb that
 * scripts/build-deb makes from that install. Compiling the addons takes minutes on 2 cores, so
 * the first test file of a run builds and the others wait for it: a run is the node test runner
 * process, the parent of every test file's process. HAVEN_TEST_PACKAGES=<dir> reuses the build
 * an earlier run left in <dir> (its built.json), for working on these tests.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../../src/core/exec.ts';
import { TEST_ROOT } from '../fixtures/guest/index.ts';

const REPO = join(import.meta.dirname, '..', '..');
const PREFIX = 'haven-t-pkg-build';
/** npm 11 asks a global install to name the packages whose install scripts may run. */
export const ALLOW_SCRIPTS = '--allow-scripts=better-sqlite3,zstd-napi';

export interface BuiltPackage {
  /** The npm tarball. */
  tarball: string;
  /** The global prefix it was installed into (bin/haven, lib/node_modules/haven, share/man). */
  prefix: string;
  /** What `npm install -g` printed (stdout and stderr). */
  installOutput: string;
  deb: string;
}

/** Build directories of earlier runs whose runner is gone. */
async function removeStale(): Promise<void> {
  for (const name of await readdir(TEST_ROOT).catch(() => [] as string[])) {
    const pid = Number(/^haven-t-pkg-build-(\d+)$/.exec(name)?.[1]);
    if (pid && pid !== process.ppid && !existsSync(`/proc/${pid}`))
      await rm(join(TEST_ROOT, name), { recursive: true, force: true });
  }
}

async function build(dir: string): Promise<BuiltPackage> {
  const packed = await exec('npm', ['pack', '--silent', '--pack-destination', dir], {
    cwd: REPO,
    timeoutMs: 300_000,
  });
  const tarball = join(dir, packed.stdout.trim().split('\n').at(-1) ?? '');
  const prefix = join(dir, 'prefix');
  // From the npm cache where it can (scripts/setup's `npm ci` filled it), the registry otherwise.
  const install = await exec(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      ALLOW_SCRIPTS,
      tarball,
    ],
    // JOBS: node-gyp compiles the addons' C files on every core.
    { cwd: dir, timeoutMs: 900_000, env: { ...process.env, JOBS: 'max' } },
  );
  const deb = await exec(join(REPO, 'scripts', 'build-deb'), ['--out', dir, '--from-prefix', prefix], {
    timeoutMs: 300_000,
  });
  return {
    tarball,
    prefix,
    installOutput: `${install.stdout}\n${install.stderr}`,
    deb: deb.stdout.trim().split('\n').at(-1) ?? '',
  };
}

async function waitFor(file: string, failed: string): Promise<void> {
  const deadline = Date.now() + 1_200_000;
  while (!existsSync(file)) {
    if (existsSync(failed))
      throw new Error(`the package build of this run failed:\n${await readFile(failed, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`the package build of this run did not finish (${file})`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

let built: Promise<BuiltPackage> | undefined;

/** The packages of this test run, built by whichever test file asks first. */
export function builtPackage(): Promise<BuiltPackage> {
  built ??= (async () => {
    const reuse = process.env.HAVEN_TEST_PACKAGES;
    if (reuse) return JSON.parse(await readFile(join(reuse, 'built.json'), 'utf8')) as BuiltPackage;
    await mkdir(TEST_ROOT, { recursive: true });
    await removeStale();
    const dir = join(TEST_ROOT, `${PREFIX}-${process.ppid}`);
    const result = join(dir, 'built.json');
    const failed = join(dir, 'failed.txt');
    try {
      await mkdir(dir); // the one that creates it builds
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await waitFor(result, failed);
      return JSON.parse(await readFile(result, 'utf8')) as BuiltPackage;
    }
    try {
      const b = await build(dir);
      await writeFile(result, JSON.stringify(b));
      return b;
    } catch (e) {
      await writeFile(failed, String((e as Error).stack ?? e));
      throw e;
    }
  })();
  return built;
}
