/**
 * Whole-image copies for a new slot (docs/design.md §4.2): while fewer than N generations exist, and on
 * every rotation where the filesystem clones files (`clonesImages`). The cheapest way the target
 * allows:
 * 1. a reflink (XFS, btrfs: instant, no space used);
 * 2. `qemu-img convert -t none -T none`: only the data extents (it asks the filesystem where
 *    they are), read and written with O_DIRECT, so the copy costs no page-cache pages. On the CI
 *    machines a 2 GiB image with 1 GiB of data took 1.2–1.4 s this way and 2.6–2.9 s with cp,
 *    whose in-kernel copy goes through newly allocated cache pages (common/direct-io.ts says why
 *    those are dear);
 * 3. GNU cp --sparse=auto (data extents only, copy_file_range), where qemu-img is missing or the
 *    filesystem refuses O_DIRECT.
 * Images are raw and named by the store (absolute paths), so qemu-img never probes a format or
 * reads a path as a protocol.
 */
import { constants as fsConstants } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HavenError } from '../../core/errors.ts';
import { CommandError, exec } from '../../core/exec.ts';
import type { Logger } from '../../core/log.ts';
import { fsyncFile, io, isErrno, removeIfExists } from '../common/files.ts';
import { storeError } from '../errors.ts';

export type CopyMethod = 'reflink' | 'qemu-img' | 'cp';

/** Directories where a reflink failed (the filesystem has none), and whether qemu-img is missing. */
const noReflink = new Set<string>();
/** Directories where a probe clone worked. */
const reflinks = new Set<string>();
let qemuImgMissing = false;

/**
 * Whether files in `dir` can be cloned (FICLONE: XFS with reflink, btrfs), tried once per
 * directory and process on a small probe file. The rotation asks before it plans: a clone of the
 * newest generation plus the new delta writes far less than replaying N deltas onto the oldest.
 */
export async function clonesImages(dir: string, log: Logger): Promise<boolean> {
  if (reflinks.has(dir)) return true;
  if (noReflink.has(dir)) return false;
  const probe = join(dir, `.haven-reflink-probe.${process.pid}`);
  const clone = `${probe}.clone`;
  try {
    // A probe that cannot even be written (a full or read-only store) says nothing about
    // reflinks: answer no for this run without remembering it.
    await writeFile(probe, Buffer.alloc(4096, 1));
  } catch (e) {
    log.debug('could not write a reflink probe; rotation replays deltas this time', {
      dir,
      reason: String(e),
    });
    await removeIfExists(probe).catch(() => false);
    return false;
  }
  try {
    await copyFile(probe, clone, fsConstants.COPYFILE_FICLONE_FORCE);
    reflinks.add(dir);
    return true;
  } catch (e) {
    log.debug('the store filesystem cannot clone files now; rotation replays deltas', {
      dir,
      reason: String(e),
    });
    // Out of space or an I/O error says nothing lasting about the filesystem.
    if (cannotClone(e)) noReflink.add(dir);
    return false;
  } finally {
    await removeIfExists(probe).catch(() => false);
    await removeIfExists(clone).catch(() => false);
  }
}

/** The errors FICLONE gives where the filesystem (or the pair of files) cannot share blocks. */
function cannotClone(e: unknown): boolean {
  return isErrno(e, 'EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY');
}

function noSpace(from: string, to: string, cause: unknown): HavenError {
  return storeError('NO_SPACE', 'resource', `no space left copying ${from} to ${to}`, {
    hint: 'Free space on the target filesystem (or keep fewer copies), then run again; stored generations are intact.',
    cause,
  });
}

function isNoSpace(e: unknown): boolean {
  return e instanceof CommandError && /No space left/i.test(e.result.stderr);
}

/**
 * Copies raw image `from` to a new file `to` (which must not exist) and fsyncs it. `reflink:
 * false` skips cloning (`haven receive --no-reflink`: images that share no blocks).
 */
export async function copyImage(
  from: string,
  to: string,
  options: { directIo: boolean; log: Logger; reflink?: boolean },
): Promise<CopyMethod> {
  const method = await copy(from, to, options);
  await fsyncFile(to);
  return method;
}

async function copy(
  from: string,
  to: string,
  options: { directIo: boolean; log: Logger; reflink?: boolean },
): Promise<CopyMethod> {
  const dir = dirname(to);
  const attempt = async (what: string, run: () => Promise<unknown>): Promise<boolean> => {
    try {
      await run();
      return true;
    } catch (e) {
      if (isNoSpace(e)) throw noSpace(from, to, e);
      if (e instanceof HavenError && e.code === 'TOOL_MISSING' && what === 'qemu-img') qemuImgMissing = true;
      else
        options.log.verbose(`${what} could not copy the image; trying the next way`, {
          to,
          reason: String(e),
        });
      await removeIfExists(to);
      return false;
    }
  };
  if (options.reflink !== false && !noReflink.has(dir)) {
    // FICLONE in this process (libuv), not `cp --reflink`: no process to start on every rotation.
    try {
      await copyFile(from, to, fsConstants.COPYFILE_FICLONE_FORCE);
      return 'reflink';
    } catch (e) {
      await removeIfExists(to);
      if (isErrno(e, 'ENOSPC', 'EDQUOT')) throw noSpace(from, to, e);
      // Anything else (the source gone, an I/O error) fails the copy as a store file error.
      if (!cannotClone(e)) return io(from, () => Promise.reject(e));
      options.log.verbose('reflink could not copy the image; trying the next way', { to, reason: String(e) });
      noReflink.add(dir);
    }
  }
  if (options.directIo && !qemuImgMissing) {
    const args = ['convert', '-f', 'raw', '-O', 'raw', '-t', 'none', '-T', 'none', from, to];
    if (await attempt('qemu-img', () => exec('qemu-img', args))) return 'qemu-img';
  }
  try {
    await exec('cp', ['--sparse=auto', '--', from, to]);
  } catch (e) {
    if (isNoSpace(e)) throw noSpace(from, to, e);
    throw e;
  }
  return 'cp';
}
