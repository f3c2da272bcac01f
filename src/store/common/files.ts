/**
 * Durable file operations. The store's crash safety rests on these two, and on fsyncing the
 * directory after every rename:
 * - `writeFileDurable`: write a temporary file, fsync it, rename it over the target, fsync the
 *   directory. Readers see the old or the new content, never a mix, also after a power cut.
 * - `createFileOnce`: the same, but `link()` instead of `rename()`, so an existing file is never
 *   replaced (definitions, docs/design.md §4.5; lock files).
 * OS errors become HavenErrors through core/errors ioError (ENOSPC → NO_SPACE).
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { HavenError, ioError } from '../../core/errors.ts';
import { invalidFile } from '../errors.ts';

export function isErrno(e: unknown, ...codes: string[]): boolean {
  return typeof e === 'object' && e !== null && codes.includes((e as NodeJS.ErrnoException).code ?? '');
}

/** Runs an fs operation, turning OS errors into HavenErrors. */
export async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof HavenError) throw e;
    if (typeof e === 'object' && e !== null && typeof (e as NodeJS.ErrnoException).code === 'string') {
      throw ioError(e as NodeJS.ErrnoException, what);
    }
    throw e;
  }
}

export function tmpName(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Temporary files this module leaves behind when a process dies mid-write. */
export const TMP_PATTERN = /^\..+\.tmp-\d+-[0-9a-f]{8}$/;

/** fsync of a directory (its entries: names created, renamed, removed) or of a file. */
async function syncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  await io(path, async () => {
    const fh = await open(path, flags);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
}

export function fsyncDir(dir: string): Promise<void> {
  return syncPath(dir, 'r');
}

export function fsyncFile(path: string): Promise<void> {
  return syncPath(path, 'r+');
}

async function writeTmp(path: string, data: string | Buffer, sync = true): Promise<string> {
  const tmp = tmpName(path);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      if (sync) await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return tmp;
}

export async function writeFileDurable(path: string, data: string | Buffer): Promise<void> {
  await io(path, async () => {
    const tmp = await writeTmp(path, data);
    try {
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  });
  await fsyncDir(dirname(path));
}

/** Creates `path` with `data` unless it exists. Returns false (and changes nothing) if it did. */
export async function createFileOnce(path: string, data: string | Buffer, durable = true): Promise<boolean> {
  const created = await io(path, async () => {
    const tmp = await writeTmp(path, data, durable);
    try {
      await link(tmp, path);
      return true;
    } catch (e) {
      if (isErrno(e, 'EEXIST')) return false;
      throw e;
    } finally {
      await unlink(tmp).catch(() => {});
    }
  });
  if (created && durable) await fsyncDir(dirname(path));
  return created;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ENOTDIR')) return false;
    throw ioError(e as NodeJS.ErrnoException, path);
  }
}

export async function removeIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw ioError(e as NodeJS.ErrnoException, path);
  }
}

export async function removeTree(path: string): Promise<void> {
  // Retries: a reader may still create a file inside as it is removed (a verify recording a
  // check in a retired generation's digest folder), which fails the last rmdir with ENOTEMPTY.
  await io(path, () => rm(path, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 }));
}

export async function ensureDir(path: string): Promise<void> {
  await io(path, async () => {
    try {
      await mkdir(path, { recursive: true });
    } catch (e) {
      // Node's recursive mkdir reports ENOENT for the last level whatever stopped it (on a full
      // filesystem, ENOSPC): where the parent exists, a plain mkdir tells the real reason.
      if (!isErrno(e, 'ENOENT') || !(await exists(dirname(path)))) throw e;
      await mkdir(path).catch((again: unknown) => {
        if (!isErrno(again, 'EEXIST')) throw again;
      });
    }
  });
}

export async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return [];
    throw ioError(e as NodeJS.ErrnoException, path);
  }
}

/** Reads and validates a JSON file; null when it does not exist. */
export async function readJson<T>(path: string, parse: (value: unknown) => T): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return null;
    throw ioError(e as NodeJS.ErrnoException, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw invalidFile(path, 'not JSON', e);
  }
  return parse(value);
}

/** Writes all of `buf` at `position` (a short write is retried, not silently accepted). */
export async function writeAllAt(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads exactly `length` bytes at `position` into `buf`; bytes past the end of file read as zeros. */
export async function readAllAt(
  fh: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      buf.fill(0, done, length);
      return;
    }
    done += bytesRead;
  }
}
