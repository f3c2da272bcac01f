/**
 * Zeroing ranges of a block device (docs/store-lvm.md "Holes and zeroes"): an LV has no holes, so
 * a zero range is zeroed by the kernel — fallocate(2) FALLOC_FL_ZERO_RANGE on the device, which is
 * BLKZEROOUT: the device's WRITE ZEROES where it has it, zero pages written by the kernel
 * otherwise — through `xfs_io fzero` (many ranges in one process). Without xfs_io, or where the
 * kernel refuses, Haven writes the zeroes itself.
 */
import type { FileHandle } from 'node:fs/promises';
import { HavenError } from '../../core/errors.ts';
import { CommandError, exec } from '../../core/exec.ts';
import type { Logger } from '../../core/log.ts';
import { type ByteRange, writeZeros } from '../common/holes.ts';

const BATCH = 256;

/** False once xfs_io was found missing or the kernel refused: write zeroes from then on. */
let kernelZeroes = true;

export async function zeroRanges(
  fh: FileHandle,
  path: string,
  ranges: ByteRange[],
  log: Logger,
): Promise<void> {
  for (let i = 0; i < ranges.length; i += BATCH) {
    const batch = ranges.slice(i, i + BATCH).filter((r) => r.length > 0);
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
