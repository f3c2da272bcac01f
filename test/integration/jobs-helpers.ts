/**
 * Helpers for the jobs and daemon tests: configuration files, reading the catalog from outside,
 * waiting for a condition, loop-device cache drives, and a Prometheus text parser.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type Catalog, catalogPath, openCatalog } from '../../src/catalog/catalog.ts';
import { exec } from '../../src/core/exec.ts';
import { parseMountinfo } from '../../src/jobs/cache/parse.ts';
import type { JobRunResult } from '../../src/jobs/index.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { type AfterHook, TEST_ROOT, type TestGuest } from '../fixtures/guest/index.ts';
import type { DiskModel } from '../helpers/disk-model.ts';
import { type HavenEnv, havenEnv, runHaven } from '../helpers/haven.ts';

export async function writeConfig(dir: string, text: string): Promise<string> {
  const path = join(dir, 'haven.yaml');
  await writeFile(path, text);
  return path;
}

/** Opens the test's catalog read-only for a look, closing it again. */
export function withCatalog<T>(stateDir: string, fn: (c: Catalog) => T): T {
  const c = openCatalog(catalogPath(stateDir), { readOnly: true });
  try {
    return fn(c);
  } finally {
    c.close();
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined;
    try {
      v = await fn();
    } catch {
      v = undefined;
    }
    if (v !== undefined && v !== null && (v as unknown) !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * `haven serve` in a child process with `env`, stopped after the test (SIGTERM, then SIGKILL
 * after 30 s). `stderr()` is what it wrote there so far; `stop()` sends SIGTERM and waits for the
 * exit (at most `waitMs`).
 */
export function startDaemon(
  t: AfterHook,
  env: NodeJS.ProcessEnv,
): { stderr: () => string; stop: (waitMs: number) => Promise<void> } {
  const daemon = spawn(process.execPath, [HAVEN_BIN, 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  daemon.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  t.after(async () => {
    if (daemon.exitCode === null) daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  return {
    stderr: () => err,
    stop: async (waitMs) => {
      daemon.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, waitMs))]);
    },
  };
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A scratch directory (QEMU-writable, like testDir) whose cleanups run last-registered first and
 * before the directory is removed, so mounts inside it are gone by then, even when a test failed.
 */
export interface Scratch {
  dir: string;
  onCleanup(fn: () => unknown): void;
}

export async function scratchDir(t: AfterHook, name: string): Promise<Scratch> {
  await mkdir(TEST_ROOT, { recursive: true });
  const dir = await mkdtemp(join(TEST_ROOT, `${name}-`));
  await chmod(dir, 0o1777);
  const cleanups: Array<() => unknown> = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    // Anything still mounted below the directory (a failed run's cache mount) goes first.
    const info = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
    for (const m of info.filter((x) => x.mountpoint.startsWith(`${dir}/`)).reverse()) {
      await exec('umount', ['-l', m.mountpoint]).catch(() => {});
    }
    await rm(dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  });
  return { dir, onCleanup: (fn) => cleanups.push(fn) };
}

export interface LoopDrive {
  device: string;
  file: string;
  /** Where the test mounted it (only when asked to). */
  mountpoint: string | undefined;
}

async function mountpointsOf(device: string): Promise<string[]> {
  const info = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return info.filter((m) => m.source === device).map((m) => m.mountpoint);
}

/** Every place the device is mounted now (Haven's mounts included). */
export async function mountsOf(device: string): Promise<string[]> {
  return mountpointsOf(device);
}

/**
 * A file-backed ext4 loop device, with the signature file at its root (unless `signature` is
 * null), mounted by the test at `mountAt` or left unmounted. Detached after the test, whatever
 * is still mounted from it unmounted first.
 */
export async function loopDrive(
  scratch: Scratch,
  name: string,
  o: { sizeMiB: number; signature: string | null; mount?: boolean },
): Promise<LoopDrive> {
  const dir = scratch.dir;
  const file = join(dir, `${name}.img`);
  await exec('truncate', ['-s', `${o.sizeMiB}M`, file]);
  await exec('mkfs.ext4', ['-q', '-F', '-L', name.slice(0, 16), file]);
  const device = (await exec('losetup', ['--find', '--show', file])).stdout.trim();
  const drive: LoopDrive = { device, file, mountpoint: undefined };
  scratch.onCleanup(async () => {
    for (const mp of await mountpointsOf(device)) await exec('umount', ['-l', mp]).catch(() => {});
    await exec('losetup', ['-d', device]).catch(() => {});
    await rm(file, { force: true });
  });
  const mp = join(dir, `${name}.mnt`);
  await mkdir(mp, { recursive: true });
  await exec('mount', [device, mp]);
  if (o.signature !== null) await writeFile(join(mp, o.signature), 'Haven cache drive\n');
  if (o.mount) {
    drive.mountpoint = mp;
  } else {
    await exec('umount', [mp]);
    await rm(mp, { recursive: true, force: true });
  }
  return drive;
}

export { parsePrometheus, type Sample } from '../../src/daemon/test-support/prometheus.ts';

export interface StagingJob {
  h: HavenEnv;
  /** The model's image after each round: what the generation of that run must equal. */
  snapshots: string[];
  /** One round: guest and model write a pattern, `haven job run j` succeeds, no drive stays mounted. */
  run(round: number, seed: number, count: number): Promise<JobRunResult>;
}

/**
 * A job `j` of `guest` to the target `dr` at `url` (`copies: 2`, `staging: auto` on the cache
 * drives signed `signature`), run round by round against `model` (the target-side cache tests).
 */
export async function stagingJob(o: {
  dir: string;
  url: string;
  guest: TestGuest;
  model: DiskModel;
  signature: string;
  drives: LoopDrive[];
}): Promise<StagingJob> {
  const config = await writeConfig(
    o.dir,
    `targets:
  dr:
    url: "${o.url}"
    copies: 2
    staging: auto
jobs:
  j:
    servers: [${o.guest.name}]
    target: dr
    retries: 0
cache:
  signature: ${o.signature}
`,
  );
  const h = await havenEnv(o.dir, { HAVEN_CONFIG: config });
  const snapshots: string[] = [];
  const run = async (round: number, seed: number, count: number): Promise<JobRunResult> => {
    await o.guest.writePattern('vda', seed, count);
    await o.model.writePattern(seed, count);
    snapshots.push(await o.model.snapshot(join(o.dir, `expect-${round}.raw`)));
    const r = await runHaven(h, ['job', 'run', 'j', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as JobRunResult;
    assert.equal(result.status, 'ok');
    // The session is over: Haven's mount of the drives is gone.
    for (const d of o.drives) {
      assert.deepEqual(await mountsOf(d.device), [], `run ${round}: ${d.device} unmounted after the session`);
    }
    return result;
  };
  return { h, snapshots, run };
}
