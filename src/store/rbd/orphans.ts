/**
 * qemu-nbd exports left behind by a Haven process that died (SIGKILL, the OOM killer): each
 * writable rbd image is exported by a qemu-nbd child in a private directory `haven-rbd-*` of the
 * temporary directory (writable.ts). A process that dies cannot stop its child, which would go on
 * holding the image open, and its exclusive lock, for as long as the host runs. Every rbd store
 * that opens stops such exports first.
 *
 * The directory names its owner (`owner`: the pid and start time of the process that made it, so
 * a recycled pid is not mistaken for it); an export whose owner is gone is an orphan. A directory
 * with no live export is removed once it has not changed for STALE_MS: younger, it may be an
 * export that is starting (qemu-nbd writes its pid file only once it listens) or restarting (a
 * resize). A live export without an owner file is left alone.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Logger } from '../../core/log.ts';

export const EXPORT_DIR_PREFIX = 'haven-rbd-';

const STALE_MS = 10 * 60_000;

interface ProcessInfo {
  /** Clock ticks after boot when it started (proc(5) field 22). */
  startTime: string;
  args: string[];
}

/** A process's start time and command line, from /proc; undefined once it is gone. */
async function processInfo(pid: number): Promise<ProcessInfo | undefined> {
  try {
    const statText = await readFile(`/proc/${pid}/stat`, 'utf8');
    // proc(5): "pid (comm) state ppid …"; comm may hold spaces and parentheses. After it, the
    // start time is the 20th field (field 22 of the line).
    const startTime = statText.slice(statText.lastIndexOf(')') + 2).split(' ')[19] ?? '';
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    return { startTime, args };
  } catch {
    return undefined;
  }
}

/** Names process `pid` (this one by default) as the owner of the export directory `dir`. */
export async function markOwner(dir: string, pid: number = process.pid): Promise<void> {
  const info = await processInfo(pid);
  if (!info) throw new Error(`process ${pid} is gone`);
  await writeFile(join(dir, 'owner'), `${pid} ${info.startTime}\n`);
}

/** Whether the owner `dir` names runs; undefined when it names none. */
async function ownerAlive(dir: string): Promise<boolean | undefined> {
  const text = await readFile(join(dir, 'owner'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const [pid, startTime] = text.trim().split(' ');
  const info = Number(pid) > 1 ? await processInfo(Number(pid)) : undefined;
  return info !== undefined && info.startTime === startTime;
}

async function exited(pid: number, ms: number): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; ) {
    if (!(await processInfo(pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** The live qemu-nbd serving the export in `dir`, if its pid file names one. */
async function exportProcess(dir: string): Promise<number | undefined> {
  const pidFile = join(dir, 'nbd.pid');
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  const info = await processInfo(pid);
  // A recycled pid is some other process: only a qemu-nbd given this very pid file is the export.
  const ours = info?.args.includes(`--pid-file=${pidFile}`) && basename(info.args[0] ?? '') === 'qemu-nbd';
  return ours ? pid : undefined;
}

/**
 * Stops the orphaned exports under `root` (the temporary directory) and removes their
 * directories, and those of exports long gone. Returns the pids stopped. Never fails: a sweep
 * that cannot read or stop something leaves it for the next.
 */
export async function stopOrphanedExports(log: Logger, root: string = tmpdir()): Promise<number[]> {
  const stopped: number[] = [];
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(EXPORT_DIR_PREFIX))) {
    const dir = join(root, name);
    try {
      const live = await exportProcess(dir);
      if (live !== undefined) {
        if ((await ownerAlive(dir)) !== false) continue;
        process.kill(live, 'SIGTERM');
        if (!(await exited(live, 10_000))) process.kill(live, 'SIGKILL');
        log.warn('stopped a qemu-nbd export left by a Haven process that died', { pid: live, dir });
        stopped.push(live);
      } else if (Date.now() - (await stat(dir)).mtimeMs < STALE_MS) {
        continue;
      }
      await rm(dir, { recursive: true, force: true });
    } catch (e) {
      log.debug('orphaned export not swept', { dir, error: String(e) });
    }
  }
  return stopped;
}
