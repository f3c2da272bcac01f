/**
 * Zero ranges over existing data become holes, so images stay sparse (docs/design.md §4.2). Node has no
 * fallocate(2), so this runs util-linux tools: `xfs_io` (xfsprogs) takes many `fpunch` commands
 * in one process, which matters when a delta carries thousands of zero ranges; `fallocate
 * --punch-hole` (util-linux) does one range per process. Where the filesystem cannot punch
 * holes (EOPNOTSUPP), the range is written with zeroes instead: the bytes are right, only the
 * space is not given back.
 */
import type { FileHandle } from 'node:fs/promises';
import { HavenError } from '../../core/errors.ts';
import { CommandError, exec } from '../../core/exec.ts';
import type { Logger } from '../../core/log.ts';
import { storeError } from '../errors.ts';
import { writeAllAt } from './files.ts';

export interface ByteRange {
  offset: number;
  length: number;
}

const BATCH = 256;

type PunchTool = 'xfs_io' | 'fallocate';

/** The tools that punch holes, most capable first: how each punches `ranges` of `path`. */
const PUNCHERS: [PunchTool, (path: string, ranges: ByteRange[]) => Promise<unknown>][] = [
  [
    'xfs_io',
    (path, ranges) =>
      exec('xfs_io', [...ranges.flatMap((r) => ['-c', `fpunch ${r.offset} ${r.length}`]), path]),
  ],
  [
    'fallocate',
    async (path, ranges) => {
      for (const r of ranges) {
        await exec('fallocate', [
          '--punch-hole',
          '--offset',
          String(r.offset),
          '--length',
          String(r.length),
          path,
        ]);
      }
    },
  ],
];

/** The tool found to work (undefined: not tried yet; none: neither is installed). */
let tool: PunchTool | 'none' | undefined;

function noSpace(path: string, cause: unknown): HavenError {
  return storeError('NO_SPACE', 'resource', `no space left punching holes in ${path}`, {
    hint: 'Free space on the target filesystem, then run again; stored generations are intact.',
    cause,
  });
}

function unsupported(err: unknown): boolean {
  return err instanceof CommandError && /not supported/i.test(err.result.stderr);
}

async function runPunch(path: string, ranges: ByteRange[]): Promise<void> {
  for (const [i, [name, punch]] of PUNCHERS.entries()) {
    if (tool !== undefined && tool !== name) continue;
    try {
      await punch(path, ranges);
      tool = name;
      return;
    } catch (e) {
      if (!(e instanceof HavenError && e.code === 'TOOL_MISSING')) throw e;
      // Missing: the next tool from now on.
      tool = PUNCHERS[i + 1]?.[0] ?? 'none';
    }
  }
  throw storeError('STORE_CANNOT_PUNCH', 'unavailable', 'neither xfs_io nor fallocate is installed', {
    hint: 'Install util-linux (fallocate) or xfsprogs (xfs_io) so zero ranges stay sparse.',
  });
}

const ZEROS = Buffer.alloc(1024 * 1024);

/** Writes zeroes over `r` through `fh` (where nothing can punch or zero the range for us). */
export async function writeZeros(fh: FileHandle, r: ByteRange): Promise<void> {
  for (let done = 0; done < r.length; ) {
    const n = Math.min(ZEROS.length, r.length - done);
    await writeAllAt(fh, ZEROS.subarray(0, n), r.offset + done);
    done += n;
  }
}

/**
 * Makes every range read as zeroes, as holes where possible. `fh` is an open handle on the same
 * file (used for the zero-writing fallback); the caller fsyncs afterwards.
 */
export async function punchHoles(
  fh: FileHandle,
  path: string,
  ranges: ByteRange[],
  log: Logger,
): Promise<void> {
  for (let i = 0; i < ranges.length; i += BATCH) {
    const batch = ranges.slice(i, i + BATCH);
    try {
      await runPunch(path, batch);
    } catch (e) {
      if (e instanceof CommandError && /No space left/i.test(e.result.stderr)) throw noSpace(path, e);
      if (!unsupported(e) && !(e instanceof HavenError && e.code === 'STORE_CANNOT_PUNCH')) throw e;
      log.debug('filesystem cannot punch holes; writing zeroes', { path });
      for (const r of batch) await writeZeros(fh, r);
    }
  }
}

/** Adds a range to a pending list, merging it with the last one when they touch. */
export function addRange(list: ByteRange[], offset: number, length: number): void {
  const last = list[list.length - 1];
  if (last && last.offset + last.length === offset) last.length += length;
  else list.push({ offset, length });
}
