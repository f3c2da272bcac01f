/**
 * Retention of Haven's own records (`retention` in the configuration, docs/configuration.md):
 * run logs in the log directory by age, total size and count, and finished runs and events in the
 * catalog by age (catalog/runs.ts and events.ts keep what something still points at).
 *
 * Only files named the way Haven names run logs (`<what>-<UTC time>-<pid>.log`, cli/context.ts,
 * daemon/run-manager.ts) are considered, and never one whose process is still alive: a daemon's
 * log or a long copy's stays however old or big it is. Expired files are deleted while the
 * directory is read, so memory holds only the files young enough to keep, whatever the directory
 * held before retention existed.
 */
import type { Dir } from 'node:fs';
import { opendir, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Catalog, pidAlive } from '../catalog/catalog.ts';
import type { RetentionConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';

/** Logs and history are looked after at most this often (each process that did work asks). */
export const RETENTION_EVERY_MS = 3_600_000;
/** In the log directory; its time is when log retention last ran. */
export const LOG_STAMP = '.haven-retention';

/** `<what>-2026-03-10T12-00-00-000Z-<pid>.log`: the time as toISOString() with ':' and '.' as '-'. */
const RUN_LOG = /-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-(\d+)\.log$/;

export interface DeletedLog {
  file: string;
  bytes: number;
  reason: 'age' | 'size' | 'count';
}

export interface LogRetentionResult {
  dir: string;
  deleted: DeletedLog[];
  keptFiles: number;
  keptBytes: number;
}

interface LogFile {
  name: string;
  bytes: number;
  mtimeMs: number;
  live: boolean;
}

export interface LogRetentionOptions {
  now?: Date;
  dryRun?: boolean;
  /** Files never deleted (this process's own log). */
  keep?: readonly string[];
  log?: Logger;
}

async function remove(dir: string, f: LogFile, dryRun: boolean): Promise<boolean> {
  if (dryRun) return true;
  try {
    await unlink(join(dir, f.name));
    return true;
  } catch (e) {
    // Another Haven process pruned it first.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function openLogDir(dir: string): Promise<Dir | undefined> {
  try {
    return await opendir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Applies the log policy to `dir`; see the file comment. */
export async function pruneLogs(
  dir: string,
  policy: RetentionConfig['logs'],
  options: LogRetentionOptions = {},
): Promise<LogRetentionResult> {
  const now = (options.now ?? new Date()).getTime();
  const dryRun = options.dryRun === true;
  const keep = new Set(options.keep ?? []);
  const out: LogRetentionResult = { dir, deleted: [], keptFiles: 0, keptBytes: 0 };
  const handle = await openLogDir(dir);
  if (!handle) return out;
  const young: LogFile[] = [];
  for await (const entry of handle) {
    const m = RUN_LOG.exec(entry.name);
    if (!entry.isFile() || !m) continue;
    const st = await stat(join(dir, entry.name)).catch(() => undefined);
    if (!st) continue;
    const f: LogFile = {
      name: entry.name,
      bytes: st.size,
      mtimeMs: st.mtimeMs,
      live: keep.has(join(dir, entry.name)) || pidAlive(Number(m[1])),
    };
    if (!f.live && policy.maxAgeMs !== null && now - f.mtimeMs > policy.maxAgeMs) {
      if (await remove(dir, f, dryRun)) out.deleted.push({ file: f.name, bytes: f.bytes, reason: 'age' });
    } else {
      young.push(f);
    }
  }
  young.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : 1));
  let files = young.length;
  let bytes = young.reduce((n, f) => n + f.bytes, 0);
  for (const f of young) {
    const overCount = policy.maxFiles !== null && files > policy.maxFiles;
    const overSize = policy.maxBytes !== null && bytes > policy.maxBytes;
    if (!overCount && !overSize) break;
    if (f.live) continue;
    if (await remove(dir, f, dryRun)) {
      out.deleted.push({ file: f.name, bytes: f.bytes, reason: overCount ? 'count' : 'size' });
    }
    files--;
    bytes -= f.bytes;
  }
  out.keptFiles = files;
  out.keptBytes = bytes;
  options.log?.verbose('log retention', {
    dir,
    deleted: out.deleted.length,
    keptFiles: files,
    keptBytes: bytes,
    dryRun,
  });
  return out;
}

/**
 * True when log retention is due for `logDir` (its stamp is older than an hour, or missing), and
 * then stamps it now. A directory that does not exist has nothing to prune.
 */
export async function claimLogRetention(
  logDir: string,
  now: Date,
  everyMs = RETENTION_EVERY_MS,
): Promise<boolean> {
  const stamp = join(logDir, LOG_STAMP);
  const last = await stat(stamp).then(
    (s) => s.mtimeMs,
    (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)),
  );
  if (last !== undefined && last <= now.getTime() && now.getTime() - last < everyMs) return false;
  try {
    if (last === undefined) await writeFile(stamp, '');
    await utimes(stamp, now, now);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  return true;
}

export interface HistoryRetentionResult {
  runs: number;
  events: number;
}

/** Deletes finished runs and events older than the configured ages (with `dryRun`, counts them). */
export function pruneHistory(
  catalog: Catalog,
  retention: RetentionConfig,
  options: { now?: Date; dryRun?: boolean } = {},
): HistoryRetentionResult {
  const now = (options.now ?? new Date()).getTime();
  const dryRun = options.dryRun === true;
  return {
    runs: retention.runsMs === null ? 0 : catalog.runs.prune(new Date(now - retention.runsMs), { dryRun }),
    events:
      retention.eventsMs === null ? 0 : catalog.events.prune(new Date(now - retention.eventsMs), { dryRun }),
  };
}
