/**
 * The staged kind of delta (every run after the first, docs/design.md §4.2 step 1): the bytes of data
 * extents go into the delta's `data` file back to back (at aligned positions, for O_DIRECT), each
 * extent is logged in its `index` with its chunk digests (delta-log.ts), and the per-disk `.sums`
 * files hold the staged digests by position so expectedDigests answers without scanning the log.
 * The generations are untouched until commit.
 *
 * Resume: `data` and `index` are cut back to their checkpointed lengths and the `.sums` files,
 * a cache, rebuilt from the index, so whatever arrived after the checkpoint is gone.
 *
 * A long zero range (PUNCH_MIN_CHUNKS or more: 4 GiB of disk) is not written into the `.sums` as
 * zero-chunk digests, which would make a 20-byte frame cost 1/2048 of the range it names (issue
 * 13.2): its digests are cleared (a hole) and the range is kept in `longZeros`. Lookup: a staged
 * digest wins (written after the range, or it would have been cleared), then `longZeros`, then
 * the base. The set holds at most one entry per 4 GiB of disk and is rebuilt from the index.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { alignUp } from '../../../core/aligned-memory.ts';
import { DIGEST_BYTES, zeroChunkDigest } from '../../../core/digest.ts';
import type { Logger } from '../../../core/log.ts';
import { CHUNK_SIZE, type Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { encodeEntry, encodeIndexHeader } from '../delta-log.ts';
import { readIndexEntries, stagedFiles } from '../deltas.ts';
import { DirectFile } from '../direct-file.ts';
import { io, writeAllAt } from '../files.ts';
import { RangeSet } from '../range-set.ts';
import type { DeltaRecord } from '../records.ts';
import {
  chunkCount,
  chunkLength,
  clearSums,
  isUnstaged,
  PUNCH_MIN_CHUNKS,
  sumsLength,
  writeSums,
  writeZeroSums,
} from '../sums.ts';
import { BaseDigests } from './base-digests.ts';
import { type DeltaDisk, deltaDisk, openDigestFile, partialDamaged, type Track } from './disk.ts';
import type { DataTarget, DeltaKind } from './kind.ts';

/** Index entries are buffered up to this many bytes before they are written. */
const INDEX_FLUSH_BYTES = 1 << 20;

/** A staged delta keeps nothing of its own per disk: the digest file is every kind's. */
export type StagedDisk = Record<never, never>;

export class StagedDelta implements DeltaKind<StagedDisk> {
  readonly sumsWhat = 'staged delta digests';
  private dataLength: number;
  private indexLength: number;
  private indexBuf: Buffer[] = [];
  private indexBufBytes = 0;
  /** Per disk index: chunk ranges staged as long zero ranges (see above). */
  private readonly longZeros = new Map<number, RangeSet>();

  private constructor(
    private readonly ctx: StoreContext,
    private readonly record: DeltaRecord,
    private readonly data: DirectFile,
    private readonly index: FileHandle,
    private readonly baseDigests: BaseDigests,
    /** `data` or `index` written since the last sync. */
    private dirty: boolean,
  ) {
    this.dataLength = record.dataLength;
    this.indexLength = record.indexLength;
  }

  /** Opens (or with `create`, starts) the delta's files; `base` is the generation it applies to. */
  static async open(args: {
    ctx: StoreContext;
    record: DeltaRecord;
    base: Generation;
    create: boolean;
    log: Logger;
    track: Track;
  }): Promise<{ kind: StagedDelta; disks: DeltaDisk<StagedDisk>[] }> {
    const { ctx, record, create, track } = args;
    const files = stagedFiles(record.dataDir);
    const data = track(
      await DirectFile.open(files.data, {
        create: create ? 'always' : 'never',
        directIo: ctx.directIo,
        log: args.log,
        what: 'staged delta data',
      }),
    );
    const index = track(await io(files.index, () => open(files.index, create ? 'w+' : 'r+')));
    if (create) await writeAllAt(index, encodeIndexHeader(), 0);
    const disks: DeltaDisk<StagedDisk>[] = [];
    for (const [i, d] of record.meta.disks.entries()) {
      // The digest files are a cache, rebuilt from the index on every resume.
      const sums = await openDigestFile(record, d, true, track);
      disks.push(deltaDisk(record, d, i, { sums, dirty: create }, {}));
    }
    const baseDigests = track(new BaseDigests(ctx, record.server, args.base));
    return { kind: new StagedDelta(ctx, record, data, index, baseDigests, create), disks };
  }

  async placeData(_disk: DeltaDisk<StagedDisk>, _offset: number): Promise<DataTarget> {
    // Aligned positions let the data go through O_DIRECT (the gap is never read).
    return {
      out: this.data.out,
      at: alignUp(this.dataLength),
      what: this.data.what,
      datasync: () => this.data.datasync(),
    };
  }

  async bookData(
    disk: DeltaDisk<StagedDisk>,
    target: DataTarget,
    offset: number,
    digests: Buffer,
    length: number,
  ): Promise<void> {
    this.appendIndex(
      encodeEntry({ kind: 'data', disk: disk.index, offset, length, dataPos: target.at, digests }),
    );
    this.dataLength = target.at + length;
    this.dirty = true;
    if (this.indexBufBytes >= INDEX_FLUSH_BYTES) await this.flushIndex();
  }

  async stageZero(disk: DeltaDisk<StagedDisk>, offset: number, length: number): Promise<void> {
    this.appendIndex(encodeEntry({ kind: 'zero', disk: disk.index, offset, length, dataPos: 0 }));
    if (this.indexBufBytes >= INDEX_FLUSH_BYTES) await this.flushIndex();
    await this.zeroSums(disk, offset, length);
    this.dirty = true;
  }

  /** The digests of a staged zero range: zero-chunk digests, or for a long one, `longZeros`. */
  private async zeroSums(disk: DeltaDisk<StagedDisk>, offset: number, length: number): Promise<void> {
    const first = offset / CHUNK_SIZE;
    const end = chunkCount(offset + length);
    if (end - first < PUNCH_MIN_CHUNKS) {
      const alg = this.ctx.descriptor.digest;
      await io(this.sumsWhat, () => writeZeroSums(disk.sums, alg, disk.size, first, end));
      return;
    }
    const path = stagedFiles(this.record.dataDir).sums(disk.name);
    await io(path, () => clearSums(disk.sums, first, end, { path, log: this.ctx.log }));
    let set = this.longZeros.get(disk.index);
    if (!set) {
      set = new RangeSet();
      this.longZeros.set(disk.index, set);
    }
    set.add(first, end - first);
  }

  async fillUnstaged(
    disk: DeltaDisk<StagedDisk>,
    fromChunk: number,
    count: number,
    out: Buffer,
  ): Promise<void> {
    const zeros = this.longZeros.get(disk.index);
    if (zeros?.count) {
      const alg = this.ctx.descriptor.digest;
      // Chunks outside every gap of the set lie in a long zero range.
      let at = fromChunk;
      const mark = (to: number) => {
        for (; at < to; at++) {
          const i = at - fromChunk;
          if (isUnstaged(out, i))
            zeroChunkDigest(alg, chunkLength(disk.size, at)).copy(out, i * DIGEST_BYTES);
        }
      };
      for (const gap of zeros.gaps(fromChunk, count)) {
        mark(gap.offset);
        at = gap.offset + gap.length;
      }
      mark(fromChunk + count);
    }
    await this.baseDigests.fill(disk, fromChunk, count, out);
  }

  flush(): Promise<void> {
    return this.flushIndex();
  }

  async sync(): Promise<void> {
    if (!this.dirty) return;
    await this.data.sync();
    await io('staged delta index', () => this.index.sync());
    this.dirty = false;
  }

  async syncCreated(): Promise<void> {}

  async reconcile(disks: DeltaDisk<StagedDisk>[]): Promise<void> {
    const r = this.record;
    const dataSize = await this.data.size();
    const indexSize = (await this.index.stat()).size;
    if (dataSize < r.dataLength || indexSize < r.indexLength)
      throw partialDamaged(r, 'staged files are shorter than recorded');
    await this.data.resize(r.dataLength);
    await this.index.truncate(r.indexLength);
    for (const d of disks) {
      await d.sums.truncate(0);
      await d.sums.truncate(sumsLength(d.size));
    }
    this.longZeros.clear();
    for await (const e of readIndexEntries(this.index, r.indexLength, stagedFiles(r.dataDir).index)) {
      const d = disks[e.disk];
      if (!d || e.offset + e.length > d.size) throw partialDamaged(r, 'index entry out of range');
      if (e.kind === 'data') await writeSums(d.sums, e.offset / CHUNK_SIZE, e.digests);
      else await this.zeroSums(d, e.offset, e.length);
    }
    this.dirty = true;
  }

  snapshot(record: DeltaRecord): void {
    record.dataLength = this.dataLength;
    record.indexLength = this.indexLength;
  }

  async close(): Promise<void> {
    await this.data.close();
    await this.index.close().catch(() => {});
    await this.baseDigests.close();
  }

  private appendIndex(entry: Buffer): void {
    this.indexBuf.push(entry);
    this.indexBufBytes += entry.length;
  }

  private async flushIndex(): Promise<void> {
    if (!this.indexBufBytes) return;
    const buf = Buffer.concat(this.indexBuf, this.indexBufBytes);
    await io('staged delta index', () => writeAllAt(this.index, buf, this.indexLength));
    this.indexLength += buf.length;
    this.indexBuf = [];
    this.indexBufBytes = 0;
  }
}
