/**
 * Mounting cache drives under Haven's run directory (`<runDir>/cache/<uuid>`), shared safely by
 * every Haven process on the host: a run, the daemon's runs and `haven receive` sessions may use
 * the same drive at once. Each user registers a file named by its pid under
 * `<runDir>/cache/<key>.users/`; the last one out unmounts. A short lock file serialises the
 * check-mount-register and unregister-unmount steps, so nobody ever writes into an empty
 * mountpoint directory while another process unmounts it. Users whose process is gone (a crash)
 * do not count.
 *
 * Mountpoints are stable per filesystem (by UUID), because a target's staged deltas record
 * absolute paths that a later session must find again.
 */

import { mkdir, open, readdir, readFile, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pidAlive } from '../../catalog/catalog.ts';
import { exec } from '../../core/exec.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { ensureRunDir } from '../../core/paths.ts';
import { JobError } from '../errors.ts';
import { sleep } from '../sync.ts';
import { type MountEntry, parseMountinfo } from './parse.ts';

export interface MountableDrive {
  device: string;
  uuid: string | undefined;
  fstype: string;
  /** Where the filesystem's root is mounted read-write now, if anywhere. */
  mountpoint: string | undefined;
}

export interface DriveMount {
  path: string;
  /** Whether this handle takes part in Haven's shared mount (and may unmount it). */
  managed: boolean;
  release(): Promise<void>;
}

/** The directory under which Haven mounts cache drives. */
export function cacheMountRoot(runDir: string): string {
  return ensureRunDir(runDir, 'cache');
}

export function mountKey(d: { device: string; uuid: string | undefined }): string {
  return (d.uuid ?? basename(d.device)).replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** Mount options that make the filesystem safe for staging only. */
export function mountOptions(fstype: string, readOnly: boolean): string {
  const base = ['nodev', 'nosuid', 'noexec'];
  if (!readOnly) return base.join(',');
  // A read-only probe must not replay a journal (it would write to the device).
  if (fstype === 'ext3' || fstype === 'ext4') base.push('noload');
  if (fstype === 'xfs') base.push('norecovery');
  return ['ro', ...base].join(',');
}

async function mountAt(path: string): Promise<MountEntry | undefined> {
  const info = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return info.findLast((m) => m.mountpoint === path);
}

async function mountedAt(path: string): Promise<boolean> {
  return (await mountAt(path)) !== undefined;
}

/**
 * Mounts read-write and checks it is: a filesystem someone else has mounted read-only at the
 * same moment (another host process looking at it) shares its superblock, and Linux then
 * mounts ours read-only too. That is undone and tried again for a little while.
 */
async function mountReadWrite(drive: MountableDrive, path: string, log: Logger): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    await exec('mount', ['-t', drive.fstype, '-o', mountOptions(drive.fstype, false), drive.device, path], {
      timeoutMs: 60_000,
    });
    if ((await mountAt(path))?.options.includes('rw')) return;
    await exec('umount', [path], { timeoutMs: 60_000 });
    if (Date.now() > deadline) {
      throw new Error(`${drive.device} mounts read-only (write-protected, or mounted read-only elsewhere)`);
    }
    log.verbose('cache drive came up read-only; trying again', { device: drive.device });
    await sleep(500);
  }
}

async function withLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && !pidAlive(holder)) {
        await unlink(lockPath).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) {
        throw new JobError('CACHE_LOCKED', `cache mount lock ${lockPath} is held by process ${holder}`, {
          kind: 'conflict',
          hint: 'Another Haven process is mounting or unmounting this cache drive; run again in a moment.',
          details: { lockPath, holder },
        });
      }
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => {});
  }
}

/** Users are `<pid>.<n>`: one process may use a drive more than once at a time. */
let userSeq = 0;

async function liveUsers(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(name.split('.')[0]);
    if (!Number.isInteger(pid)) continue;
    if (pidAlive(pid)) pids.push(pid);
    else await unlink(join(dir, name)).catch(() => {});
  }
  return pids;
}

/**
 * Uses a cache drive read-write: where it is already mounted (an operator's mount is used as it
 * is), else mounted under the run directory. Release unmounts what Haven mounted once no other
 * Haven process uses it.
 */
export async function useDrive(
  drive: MountableDrive,
  runDir: string,
  log: Logger = silentLogger,
): Promise<DriveMount> {
  const root = cacheMountRoot(runDir);
  const key = mountKey(drive);
  const path = join(root, key);
  if (drive.mountpoint && drive.mountpoint !== path) {
    return { path: drive.mountpoint, managed: false, release: async () => {} };
  }
  const users = join(root, `${key}.users`);
  const lock = join(root, `${key}.lock`);
  const me = join(users, `${process.pid}.${++userSeq}`);
  await withLock(lock, async () => {
    await mkdir(users, { recursive: true });
    if (!(await mountedAt(path))) {
      await mkdir(path, { recursive: true });
      try {
        await mountReadWrite(drive, path, log);
      } catch (e) {
        await rmdir(path).catch(() => {});
        throw new JobError('CACHE_MOUNT_FAILED', `cannot mount cache drive ${drive.device} at ${path}`, {
          kind: 'io',
          cause: e,
          hint: 'Check the drive (dmesg, fsck); Haven copies without it meanwhile.',
          details: { device: drive.device, path, reason: (e as Error).message },
        });
      }
      log.info('cache drive mounted', { device: drive.device, path });
    }
    await writeFile(me, '');
  });
  let released = false;
  return {
    path,
    managed: true,
    release: async () => {
      if (released) return;
      released = true;
      await withLock(lock, async () => {
        await unlink(me).catch(() => {});
        if ((await liveUsers(users)).length > 0) return;
        if (await mountedAt(path)) {
          try {
            await exec('umount', [path], { timeoutMs: 60_000 });
            log.info('cache drive unmounted', { device: drive.device, path });
          } catch (e) {
            log.warn('could not unmount the cache drive; it stays mounted', { path, err: e });
            return;
          }
        }
        await rmdir(path).catch(() => {});
        await rm(users, { recursive: true, force: true });
      });
    },
  };
}

/** Mounts read-only at a scratch path, runs `fn`, unmounts. For looking at an unmounted drive. */
export async function withProbeMount<T>(
  drive: { device: string; fstype: string },
  runDir: string,
  n: number,
  fn: (path: string) => Promise<T>,
): Promise<T> {
  const path = join(cacheMountRoot(runDir), `probe-${process.pid}-${n}`);
  await mkdir(path, { recursive: true });
  try {
    await exec('mount', ['-t', drive.fstype, '-o', mountOptions(drive.fstype, true), drive.device, path], {
      timeoutMs: 60_000,
    });
  } catch (e) {
    await rmdir(path).catch(() => {});
    throw e;
  }
  try {
    return await fn(path);
  } finally {
    await exec('umount', [path], { timeoutMs: 60_000 }).catch(() =>
      exec('umount', ['-l', path]).catch(() => {}),
    );
    await rmdir(path).catch(() => {});
  }
}

/** Probe mounts a crashed Haven process left behind: lazily unmounted and removed. */
export async function cleanStaleProbes(runDir: string, log: Logger = silentLogger): Promise<void> {
  const root = cacheMountRoot(runDir);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const m = /^probe-(\d+)-\d+$/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    const path = join(root, name);
    if (await mountedAt(path)) await exec('umount', ['-l', path]).catch(() => {});
    await rmdir(path).catch(() => {});
    log.verbose('removed a stale probe mount', { path });
  }
}
