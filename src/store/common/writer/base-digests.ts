/**
 * What a staged delta's target holds where nothing is staged yet: the base generation's digests,
 * with the chunks beyond its disk sizes as zero chunks, and the one chunk whose bytes change when
 * a disk is resized without being sent (cut or zero-padded). A sender compares against these in a
 * checksum resync and when resuming under a new point in time (DeltaWriter.expectedDigests).
 *
 * A chunk of the base marked to be sent again (damaged where no generation holds it intact,
 * resend.ts) gets a digest no chunk has, so a comparing sender always sends it again.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { DIGEST_BYTES, digest, zeroChunkDigest } from '../../../core/digest.ts';
import { CHUNK_SIZE, type Generation, type GenerationDisk } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { io } from '../files.ts';
import { isMarked, type ResendMarks, readResendMarks } from '../resend.ts';
import { chunkCount, chunkLength, expandZeroEntries, isUnstaged, readSums } from '../sums.ts';
import type { DeltaDisk } from './disk.ts';

/** What a marked chunk reports: all ones, which no digest of real bytes is. */
const RESEND_DIGEST = Buffer.alloc(DIGEST_BYTES, 0xff);

export class BaseDigests {
  /** The base generation's digest files, opened on demand. */
  private readonly sumsFiles = new Map<string, FileHandle>();
  private readonly boundaryDigests = new Map<string, Buffer>();
  private marks: Promise<ResendMarks> | undefined;

  constructor(
    private readonly ctx: StoreContext,
    private readonly server: string,
    private readonly base: Generation,
  ) {}

  /** Fills every "not staged" digest in `out` (chunks [fromChunk, +count) of `disk`). */
  async fill(disk: DeltaDisk<unknown>, fromChunk: number, count: number, out: Buffer): Promise<void> {
    const baseDisk = this.base.disks.find((x) => x.name === disk.name);
    const baseChunks = baseDisk ? chunkCount(baseDisk.size) : 0;
    let baseSums: Buffer | null = null;
    const boundary = this.boundaryChunk(disk);
    this.marks ??= readResendMarks(this.ctx, this.server);
    const marks = await this.marks;
    for (let i = 0; i < count; i++) {
      if (!isUnstaged(out, i)) continue;
      const chunk = fromChunk + i;
      let chunkDigest: Buffer;
      if (baseDisk && chunk < baseChunks && isMarked(marks, disk.name, chunk)) chunkDigest = RESEND_DIGEST;
      else if (baseDisk && chunk === boundary) chunkDigest = await this.boundaryDigest(disk, baseDisk, chunk);
      else if (baseDisk && chunk < baseChunks) {
        baseSums ??= await this.readBaseSums(disk, fromChunk, Math.min(count, baseChunks - fromChunk));
        chunkDigest = baseSums.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
      } else chunkDigest = zeroChunkDigest(this.ctx.descriptor.digest, chunkLength(disk.size, chunk));
      chunkDigest.copy(out, i * DIGEST_BYTES);
    }
  }

  /** The chunk whose bytes change when a disk is resized without being sent, or -1. */
  private boundaryChunk(disk: DeltaDisk<unknown>): number {
    const baseDisk = this.base.disks.find((x) => x.name === disk.name);
    if (!baseDisk || baseDisk.size === disk.size) return -1;
    const shorter = Math.min(baseDisk.size, disk.size);
    return shorter % CHUNK_SIZE === 0 ? -1 : Math.floor(shorter / CHUNK_SIZE);
  }

  /** Digest of the resized boundary chunk: the base's bytes, cut or padded to the new size. */
  private async boundaryDigest(
    disk: DeltaDisk<unknown>,
    baseDisk: GenerationDisk,
    chunk: number,
  ): Promise<Buffer> {
    const known = this.boundaryDigests.get(disk.name);
    if (known) return known;
    const buf = Buffer.alloc(chunkLength(disk.size, chunk));
    const inBase = Math.min(buf.length, baseDisk.size - chunk * CHUNK_SIZE);
    await this.ctx.images.read(this.server, disk.name, this.base.seq, buf, inBase, chunk * CHUNK_SIZE);
    buf.fill(0, inBase);
    const chunkDigest = digest(this.ctx.descriptor.digest, buf);
    this.boundaryDigests.set(disk.name, chunkDigest);
    return chunkDigest;
  }

  private async readBaseSums(disk: DeltaDisk<unknown>, fromChunk: number, count: number): Promise<Buffer> {
    let fh = this.sumsFiles.get(disk.name);
    if (!fh) {
      const path = this.ctx.layout.sums(this.server, this.base.id, disk.name);
      fh = await io(path, () => open(path, 'r'));
      this.sumsFiles.set(disk.name, fh);
    }
    // The base's size: its digest file's all-zero entries are zero chunks of the base (sums.ts).
    const baseSize = this.base.disks.find((x) => x.name === disk.name)?.size ?? disk.size;
    return expandZeroEntries(
      await readSums(fh, fromChunk, count),
      fromChunk,
      baseSize,
      this.ctx.descriptor.digest,
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.sumsFiles.values()].map((fh) => fh.close().catch(() => {})));
    this.sumsFiles.clear();
  }
}
