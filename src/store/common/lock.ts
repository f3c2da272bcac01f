/**
 * Lock files: one writer per server (`.haven/locks/<server>.lock`), short critical sections for
 * manifests and name checks. A lock file holds who took it (pid, host, the process's start time,
 * a random token); it is created complete with `link()`, so it never exists half-written.
 *
 * A lock whose process is dead on this host is stale: it is broken with a log line. The start
 * time (from /proc) guards against a reused pid. A lock from another host is never broken
 * automatically: this host cannot tell whether that process still runs.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { HavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { createFileOnce, io, isErrno } from './files.ts';

export interface LockInfo {
  pid: number;
  host: string;
  startedAt: string;
  /** /proc/<pid>/stat start time (clock ticks since boot), when known. */
  procStart?: string;
  token: string;
  purpose?: string;
}

export interface HeldLock {
  readonly path: string;
  readonly info: LockInfo;
  release(): Promise<void>;
}

function procStartOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces and parentheses; the rest follows the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

const ownStart = procStartOf(process.pid);

async function readLock(path: string): Promise<LockInfo | 'unreadable' | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return null;
    throw e;
  }
  try {
    const v = JSON.parse(text) as LockInfo;
    if (typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.token === 'string') return v;
  } catch {}
  return 'unreadable';
}

/** True unless the holder is certainly gone (same host, and its pid is dead or reused). */
function isLockLive(info: LockInfo): boolean {
  if (info.host !== hostname()) return true;
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if (isErrno(e, 'ESRCH')) return false;
  }
  if (info.procStart !== undefined) {
    const now = procStartOf(info.pid);
    if (now !== undefined && now !== info.procStart) return false;
  }
  return true;
}

export interface AcquireOptions {
  purpose: string;
  log: Logger;
  /** Wait this long for a live holder to release (short critical sections); 0 fails at once. */
  waitMs?: number;
  /** The error to throw when a live holder keeps the lock. */
  locked: (holder: LockInfo) => HavenError;
}

export async function acquireLock(path: string, options: AcquireOptions): Promise<HeldLock> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  const info: LockInfo = {
    pid: process.pid,
    host: hostname(),
    startedAt: new Date().toISOString(),
    ...(ownStart !== undefined ? { procStart: ownStart } : {}),
    token: randomBytes(8).toString('hex'),
    purpose: options.purpose,
  };
  for (;;) {
    // Lock files need no fsync: after a power cut every holder is gone and the lock is stale.
    if (await createFileOnce(path, `${JSON.stringify(info)}\n`, false)) {
      return { path, info, release: () => releaseLock(path, info.token) };
    }
    const holder = await io(path, () => readLock(path));
    if (holder === null) continue;
    if (holder !== 'unreadable' && isLockLive(holder)) {
      if (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      throw options.locked(holder);
    }
    await breakStaleLock(path, holder, options.log);
  }
}

async function breakStaleLock(path: string, holder: LockInfo | 'unreadable', log: Logger): Promise<void> {
  // Move it aside first and check that what moved is the stale lock we inspected: if another
  // process broke it and took the lock in between, put theirs back.
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  const moved = await readLock(aside);
  const same =
    holder === 'unreadable'
      ? moved === 'unreadable'
      : moved !== null && moved !== 'unreadable' && moved.token === holder.token;
  if (!same) {
    await link(aside, path).catch(() => {});
  } else {
    log.warn('broke a stale lock left by a process that no longer runs', {
      lock: path,
      ...(holder === 'unreadable' ? { holder: 'unreadable' } : { pid: holder.pid, since: holder.startedAt }),
    });
  }
  await unlink(aside).catch(() => {});
}

async function releaseLock(path: string, token: string): Promise<void> {
  const holder = await readLock(path).catch(() => null);
  if (holder && holder !== 'unreadable' && holder.token === token) {
    await unlink(path).catch((e) => {
      if (!isErrno(e, 'ENOENT')) throw e;
    });
  }
}

/** The holder of a lock if it is held by a live process (this one included), else null. */
export async function liveHolder(path: string): Promise<LockInfo | null> {
  const h = await io(path, () => readLock(path));
  if (h === null || h === 'unreadable') return null;
  return isLockLive(h) ? h : null;
}
