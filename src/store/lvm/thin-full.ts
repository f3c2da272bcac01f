/**
 * A thin pool that fills while images are written (docs/store-lvm.md, "Errors"). The room check
 * before a rotation counts what the deltas will map, but something else may fill a shared pool
 * during a run, and a first run streams into its volumes as the data arrives. dm-thin then fails
 * the writes that need a new block: ENOSPC past the page cache, but EIO from an fsync through it
 * (the kernel reports a failed writeback as EIO), after holding them for `no_space_timeout`
 * (60 s) unless the pool was set to error when full (Linux
 * Documentation/admin-guide/device-mapper/thin-provisioning.rst, "Running out of space"). Both
 * become NO_SPACE naming the pool, once `lvs` confirms the pool is full; any other failure is
 * left as it is.
 */
import { HavenError } from '../../core/errors.ts';
import type { PositionedWrites } from '../common/images.ts';
import { storeError } from '../errors.ts';
import type { LvInfo } from './report.ts';

/** Whether `e` is how dm-thin fails a write it has no block for. */
export function mayBeFullPool(e: unknown): boolean {
  if (e instanceof HavenError) {
    if (e.code === 'NO_SPACE') return true;
    return e.code === 'IO_ERROR' && e.details?.errno === 'EIO';
  }
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EIO';
}

/** The error for a write to thin volume `lv` that failed because `pool` is full. */
export function thinPoolFull(lv: LvInfo, pool: LvInfo, path: string, cause: unknown) {
  const what = (pool.metadataPercent ?? 0) >= 100 ? 'metadata' : 'data';
  return storeError(
    'NO_SPACE',
    'resource',
    `thin pool ${lv.vg}/${pool.name} is full (${what}) writing ${path}`,
    {
      hint: `Extend the thin pool (lvextend -L +SIZE ${lv.vg}/${pool.name}${what === 'metadata' ? ' --poolmetadatasize +SIZE' : ''}) or free what else fills it, then run again: the delta resumes from its last checkpoint, and stored generations are intact.`,
      cause,
      details: {
        pool: `${lv.vg}/${pool.name}`,
        dataPercent: pool.dataPercent,
        metadataPercent: pool.metadataPercent,
        whenFull: pool.whenFull || 'queue',
      },
    },
  );
}

/** Runs `fn`; what it throws is replaced by what `explain` makes of it. */
export async function explaining<T>(
  fn: () => Promise<T>,
  explain: (e: unknown) => Promise<unknown>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw await explain(e);
  }
}

/** Writes to a thin volume whose failures are explained by `explain` (a full pool, or as they are). */
export class ThinVolumeWrites implements PositionedWrites {
  constructor(
    private readonly inner: PositionedWrites,
    private readonly explain: (e: unknown) => Promise<unknown>,
  ) {}

  write(buf: Buffer, position: number): Promise<void> {
    return explaining(() => this.inner.write(buf, position), this.explain);
  }
}
