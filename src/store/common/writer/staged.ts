/**
 * The staged kind of delta (every run after the first, DESIGN §4.2 step 1): the bytes of data
 * extents go into the delta's `data` file back to back (at aligned positions, for O_DIRECT), each
 * extent is logged in its `index` with its chunk digests (delta-log.ts), and the per-disk `.sums`
 * files hold the staged digests by position so expectedDigests answers without scanning the log.
 * The generations are untouched until commit.
 *
 * Resume: `data` and `index` are cut back to their checkpointed lengths and the `.sums` files,
 * a cache, rebuilt from the index, so whatever arrived after the checkpoint is gone.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { alignUp } from '../../../core/aligned-memory.ts';
import type { Logger } from '../../../core/log.ts';
import { CHUNK_SIZE, type Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { encodeEntry, encodeIndexHeader } from '../delta-log.ts';
import { readIndexEntries, stagedFiles } from '../deltas.ts';
import { DirectFile } from '../direct-file.ts';
import { io, writeAllAt } from '../files.ts';
import type { DeltaRecord } from '../records.ts';
import { chunkCount, sumsLength, writeSums, writeZeroSums } from '../sums.ts';
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
    const alg = this.ctx.descriptor.digest;
    await io('delta digests', () =>
      writeZeroSums(disk.sums, alg, disk.size, offset / CHUNK_SIZE, chunkCount(offset + length)),
    );
    this.dirty = true;
  }

  fillUnstaged(disk: DeltaDisk<StagedDisk>, fromChunk: number, count: number, out: Buffer): Promise<void> {
    return this.baseDigests.fill(disk, fromChunk, count, out);
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
    const alg = this.ctx.descriptor.digest;
    for await (const e of readIndexEntries(this.index, r.indexLength, stagedFiles(r.dataDir).index)) {
      const d = disks[e.disk];
      if (!d || e.offset + e.length > d.size) throw partialDamaged(r, 'index entry out of range');
      const first = e.offset / CHUNK_SIZE;
      if (e.kind === 'data') await writeSums(d.sums, first, e.digests);
      else await writeZeroSums(d.sums, alg, d.size, first, chunkCount(e.offset + e.length));
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
