/**
 * The direct kind of delta (a first run, no generation yet; docs/design.md §4.2): data goes straight into
 * the `_incomplete` images (new and sparse, so zero ranges over nothing written stay holes), the
 * chunk digests into the delta's own `.sums` files. There is nothing older to protect, so the full
 * copy is written once.
 *
 * Resume: image writes cannot be cut back, so each disk keeps a durable *floor* (DeltaDisk.floor):
 * every write since the last checkpoint lies at or above it (writes ascend per disk; a write below
 * the floor first lowers it durably). Resuming resets [floor, end) of each image and its digests
 * to holes, i.e. "not staged". The floor never sits below the watermark, so nothing the sender
 * will skip is reset, and every chunk reported as staged holds exactly the bytes its digest names.
 */

import { DIGEST_BYTES, zeroChunkDigest } from '../../../core/digest.ts';
import type { Logger } from '../../../core/log.ts';
import { CHUNK_SIZE } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { stagedFiles } from '../deltas.ts';
import { io } from '../files.ts';
import { addRange, type ByteRange, punchHoles } from '../holes.ts';
import type { WritableImage } from '../images.ts';
import type { DeltaRecord } from '../records.ts';
import { chunkCount, chunkLength, clearSums, isUnstaged, sumsLength } from '../sums.ts';
import { type DeltaDisk, deltaDisk, lowerFloor, openDigestFile, partialDamaged, type Track } from './disk.ts';
import type { DataTarget, DeltaKind } from './kind.ts';

/** Zero ranges gathered before their holes are punched (one tool run: holes.ts). */
const PUNCH_BATCH = 256;

/** What the direct kind keeps per disk: its `_incomplete` image and the holes still to punch. */
export interface DirectDisk {
  readonly image: WritableImage;
  /** End of the highest data ever written (zero ranges above it are holes already). */
  dataHigh: number;
  punches: ByteRange[];
  punchEnd: number;
}

export class DirectDelta implements DeltaKind<DirectDisk> {
  readonly sumsWhat = 'delta digests';

  private constructor(
    private readonly ctx: StoreContext,
    private readonly record: DeltaRecord,
    private readonly log: Logger,
  ) {}

  /** Opens (or with `create`, creates sparse) the `_incomplete` images and the digest files. */
  static async open(args: {
    ctx: StoreContext;
    record: DeltaRecord;
    create: boolean;
    log: Logger;
    track: Track;
  }): Promise<{ kind: DirectDelta; disks: DeltaDisk<DirectDisk>[] }> {
    const { ctx, record, create, log, track } = args;
    const disks: DeltaDisk<DirectDisk>[] = [];
    for (const [i, d] of record.meta.disks.entries()) {
      const image = track(
        await ctx.images.openWritable(record.server, d.name, 'incomplete', {
          create: create ? 'always' : 'never',
          ...(create ? { size: d.size } : {}),
          log,
        }),
      );
      // These digest files are the truth about what is staged: kept on resume.
      const sums = await openDigestFile(record, d, create, track);
      const own: DirectDisk = { image, dataHigh: record.dataHigh[d.name] ?? 0, punches: [], punchEnd: 0 };
      disks.push(deltaDisk(record, d, i, { sums, dirty: create }, own));
    }
    return { kind: new DirectDelta(ctx, record, log), disks };
  }

  async placeData(
    disk: DeltaDisk<DirectDisk>,
    offset: number,
    _length: number,
    settleWrites: () => Promise<void>,
  ): Promise<DataTarget> {
    if (offset < disk.floor) await lowerFloor(this.ctx, this.record, disk, offset);
    const own = disk.kindState;
    if (own.punches.length && own.punchEnd > offset) {
      // A hole punched under a write still running would be filled by it afterwards.
      await settleWrites();
      await this.flushPunches(own);
    }
    return {
      out: own.image.out,
      at: offset,
      what: own.image.path,
      datasync: () => own.image.datasync(),
    };
  }

  async bookData(
    disk: DeltaDisk<DirectDisk>,
    _target: DataTarget,
    offset: number,
    _digests: Buffer,
    length: number,
  ): Promise<void> {
    disk.kindState.dataHigh = Math.max(disk.kindState.dataHigh, offset + length);
  }

  async stageZero(disk: DeltaDisk<DirectDisk>, offset: number, length: number): Promise<void> {
    if (offset < disk.floor) await lowerFloor(this.ctx, this.record, disk, offset);
    const own = disk.kindState;
    // Above everything ever written, the fresh image is a hole and its digests read "not
    // staged", which a first run answers and commits as zero chunks: nothing to do there.
    if (offset >= own.dataHigh) return;
    const top = Math.min(offset + length, own.dataHigh);
    addRange(own.punches, offset, top - offset);
    own.punchEnd = Math.max(own.punchEnd, top);
    if (own.punches.length >= PUNCH_BATCH) await this.flushPunches(own);
    await io('delta digests', () => clearSums(disk.sums, offset / CHUNK_SIZE, chunkCount(top)));
  }

  /** Nothing older exists: every chunk not staged is a zero chunk. */
  async fillUnstaged(
    disk: DeltaDisk<DirectDisk>,
    fromChunk: number,
    count: number,
    out: Buffer,
  ): Promise<void> {
    for (let i = 0; i < count; i++) {
      if (!isUnstaged(out, i)) continue;
      const zero = zeroChunkDigest(this.ctx.descriptor.digest, chunkLength(disk.size, fromChunk + i));
      zero.copy(out, i * DIGEST_BYTES);
    }
  }

  async flush(disks: DeltaDisk<DirectDisk>[]): Promise<void> {
    for (const d of disks) await this.flushPunches(d.kindState);
  }

  async sync(dirty: DeltaDisk<DirectDisk>[]): Promise<void> {
    for (const d of dirty) await d.kindState.image.sync();
  }

  /** The images were created: their names must be durable too. */
  syncCreated(): Promise<void> {
    return this.ctx.images.syncNames();
  }

  async reconcile(disks: DeltaDisk<DirectDisk>[]): Promise<void> {
    for (const d of disks) {
      const { image } = d.kindState;
      if ((await image.size()) !== d.size)
        throw partialDamaged(this.record, `${image.path} has the wrong size`);
      if (d.floor >= d.size) continue;
      // To the end of the disk: writes after the checkpoint may lie above the recorded dataHigh.
      const start = Math.floor(d.floor / CHUNK_SIZE) * CHUNK_SIZE;
      await image.punch([{ offset: start, length: d.size - start }], this.log);
      d.kindState.dataHigh = Math.min(d.kindState.dataHigh, start);
      const sumsFrom = (start / CHUNK_SIZE) * DIGEST_BYTES;
      await punchHoles(
        d.sums,
        stagedFiles(this.record.dataDir).sums(d.name),
        [{ offset: sumsFrom, length: sumsLength(d.size) - sumsFrom }],
        this.log,
      );
    }
  }

  snapshot(record: DeltaRecord, disks: DeltaDisk<DirectDisk>[]): void {
    for (const d of disks) record.dataHigh[d.name] = d.kindState.dataHigh;
  }

  async close(disks: DeltaDisk<DirectDisk>[]): Promise<void> {
    await Promise.all(disks.map((d) => d.kindState.image.close()));
  }

  private async flushPunches(own: DirectDisk): Promise<void> {
    if (!own.punches.length) return;
    await own.image.punch(own.punches, this.log);
    own.punches = [];
    own.punchEnd = 0;
  }
}
