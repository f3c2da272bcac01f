/**
 * One disk of a delta being received, as both kinds of writer track it (the kinds keep their own
 * files: staged.ts, direct.ts), and the checks every request about it passes.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { DIGEST_BYTES } from '../../../core/digest.ts';
import { badRequest, storeError } from '../../errors.ts';
import { CHUNK_SIZE, type DiskSpec } from '../../types.ts';
import { isChunkRange } from '../checks.ts';
import type { StoreContext } from '../context.ts';
import { stagedFiles, writeDeltaRecord } from '../deltas.ts';
import { io } from '../files.ts';
import type { DeltaRecord } from '../records.ts';
import { chunkCount, sumsLength } from '../sums.ts';

/** `K`: what the writer's kind keeps per disk (kind.ts). */
export interface DeltaDisk<K> {
  readonly name: string;
  /** Position in the delta's disk list (the index file's disk number). */
  readonly index: number;
  readonly size: number;
  readonly chunks: number;
  /** The delta's own digest file of this disk: what is staged, by chunk ("not staged" = zeros). */
  readonly sums: FileHandle;
  /** What arrived for this disk, counted like DeltaSummary. */
  dataBytes: number;
  zeroBytes: number;
  /**
   * Durable lower bound of every write since the last checkpoint, as recorded. The direct kind
   * lowers it before a write below it and resets the image above it on resume (direct.ts).
   */
  floor: number;
  /** End of the highest write of this attempt (0: none yet). */
  attemptHi: number;
  /** Written since the last sync. */
  dirty: boolean;
  readonly kindState: K;
}

/** Disk `index` (`spec`) of `record` with its digest file, at the counts and floor the record holds. */
export function deltaDisk<K>(
  record: DeltaRecord,
  spec: DiskSpec,
  index: number,
  files: { sums: FileHandle; dirty: boolean },
  kindState: K,
): DeltaDisk<K> {
  const counts = record.counts[spec.name] ?? { dataBytes: 0, zeroBytes: 0 };
  return {
    name: spec.name,
    index,
    size: spec.size,
    chunks: chunkCount(spec.size),
    sums: files.sums,
    dataBytes: counts.dataBytes,
    zeroBytes: counts.zeroBytes,
    floor: record.floors[spec.name] ?? spec.size,
    attemptHi: 0,
    dirty: files.dirty,
    kindState,
  };
}

/** A write or zero range below a disk's floor: the lower floor is made durable before it happens. */
export async function lowerFloor(
  ctx: StoreContext,
  record: DeltaRecord,
  disk: DeltaDisk<unknown>,
  offset: number,
): Promise<void> {
  disk.floor = offset;
  record.floors[disk.name] = offset;
  const watermark = record.watermarks[disk.name];
  if (watermark !== undefined && watermark > offset) record.watermarks[disk.name] = offset;
  await writeDeltaRecord(ctx, record);
}

/** What the request checks need of a disk. */
export type DiskShape = Pick<DeltaDisk<unknown>, 'name' | 'size' | 'chunks'>;

/** Extents start on a chunk boundary and are whole chunks, except at the disk's end. */
export function checkExtent(disk: DiskShape, offset: number, length: number): void {
  const end = offset + length;
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length <= 0 ||
    offset % CHUNK_SIZE !== 0 ||
    end > disk.size ||
    (length % CHUNK_SIZE !== 0 && end !== disk.size)
  ) {
    throw badRequest(
      'STORE_BAD_EXTENT',
      `extent ${offset}+${length} is not chunk-aligned inside disk ${disk.name} (${disk.size} bytes)`,
      {
        disk: disk.name,
        offset,
        length,
        size: disk.size,
      },
    );
  }
}

export function checkChunkDigests(disk: DiskShape, offset: number, length: number, digests: Buffer): void {
  if (digests.length !== Math.ceil(length / CHUNK_SIZE) * DIGEST_BYTES) {
    throw badRequest('STORE_BAD_DIGESTS', `expected one ${DIGEST_BYTES}-byte digest per chunk`, {
      disk: disk.name,
      offset,
      length,
      digestBytes: digests.length,
    });
  }
}

export function checkChunkRange(disk: DiskShape, fromChunk: number, count: number): void {
  if (!isChunkRange(fromChunk, count, disk.chunks)) {
    throw badRequest(
      'STORE_BAD_RANGE',
      `chunks ${fromChunk}+${count} are outside disk ${disk.name} (${disk.chunks} chunks)`,
      {
        disk: disk.name,
        fromChunk,
        count,
      },
    );
  }
}

/** A partial delta whose files cannot be brought back to its last checkpoint (started afresh). */
export function partialDamaged(record: DeltaRecord, why: string) {
  return storeError('STORE_PARTIAL_DAMAGED', 'integrity', `partial delta ${record.id}: ${why}`, {
    hint: 'The partial delta is discarded and the sender starts it again.',
  });
}

/** Something a writer opened and must close, also when opening fails halfway. */
export interface Closeable {
  close(): Promise<void>;
}

/** Registers what is opened, so a failure halfway can close it all. */
export type Track = <T extends Closeable>(opened: T) => T;

/**
 * Opens the delta's digest file of `disk`: `recreate` starts it empty (as long as the disk needs),
 * else it must exist.
 */
export async function openDigestFile(
  record: DeltaRecord,
  disk: DiskSpec,
  recreate: boolean,
  track: Track,
): Promise<FileHandle> {
  const path = stagedFiles(record.dataDir).sums(disk.name);
  const fh = track(await io(path, () => open(path, recreate ? 'w+' : 'r+')));
  if (recreate) await io(path, () => fh.truncate(sumsLength(disk.size)));
  return fh;
}
