/**
 * Zeroing ranges of a block device (docs/store-lvm.md "Holes and zeroes"): an LV has no holes, so
 * a zero range is zeroed by the kernel — fallocate(2) FALLOC_FL_ZERO_RANGE on the device, which is
 * BLKZEROOUT: the device's WRITE ZEROES where it has it, zero pages written by the kernel
 * otherwise — through `xfs_io fzero` (many ranges in one process). Without xfs_io, or where the
 * kernel refuses, Haven writes the zeroes itself. A thin volume's whole pool blocks are discarded
 * instead (blkdiscard): dm-thin unmaps them, so they read as zeroes and give their space back.
 */
import type { FileHandle } from 'node:fs/promises';
import { HavenError } from '../../core/errors.ts';
import { CommandError, exec } from '../../core/exec.ts';
import type { Logger } from '../../core/log.ts';
import { type ByteRange, writeZeros } from '../common/holes.ts';

const BATCH = 256;

/** False once xfs_io was found missing or the kernel refused: write zeroes from then on. */
let kernelZeroes = true;

/**
 * Makes `ranges` of the block device read as zeroes. With `discardBlock` (a thin volume), the
 * whole pool blocks of each range are discarded — unmapped, so they read as zeroes and free their
 * space — and only the unaligned edges are zeroed.
 */
export async function zeroRanges(
  fh: FileHandle,
  path: string,
  ranges: ByteRange[],
  log: Logger,
  discardBlock = 0,
): Promise<void> {
  const edges = discardBlock > 0 ? await discardAligned(path, ranges, discardBlock) : ranges;
  for (let i = 0; i < edges.length; i += BATCH) {
    const batch = edges.slice(i, i + BATCH).filter((r) => r.length > 0);
    if (kernelZeroes) {
      try {
        const { stderr } = await exec('xfs_io', [
          ...batch.flatMap((r) => ['-c', `fzero ${r.offset} ${r.length}`]),
          path,
        ]);
        // Some xfs_io versions report a failed command on stderr and still exit 0.
        if (stderr.trim() === '') continue;
        throw new CommandError('xfs_io', ['fzero', path], { code: 0, stdout: '', stderr });
      } catch (e) {
        const refused = e instanceof CommandError && /not supported|Invalid argument/i.test(e.result.stderr);
        if (!refused && !(e instanceof HavenError && e.code === 'TOOL_MISSING')) throw e;
        kernelZeroes = false;
        log.debug('the kernel does not zero ranges of this device (or xfs_io is missing); writing zeroes', {
          path,
        });
      }
    }
    for (const r of batch) await writeZeros(fh, r);
  }
}

/** Discards the whole `block`s inside each range (blkdiscard); returns the edges left to zero. */
async function discardAligned(path: string, ranges: ByteRange[], block: number): Promise<ByteRange[]> {
  const edges: ByteRange[] = [];
  for (const r of ranges) {
    const end = r.offset + r.length;
    const from = Math.ceil(r.offset / block) * block;
    const to = Math.floor(end / block) * block;
    if (to <= from) {
      edges.push(r);
      continue;
    }
    await exec('blkdiscard', ['-o', String(from), '-l', String(to - from), path]);
    if (from > r.offset) edges.push({ offset: r.offset, length: from - r.offset });
    if (end > to) edges.push({ offset: to, length: end - to });
  }
  return edges;
}
