/**
 * A cycle's spool (docs/continuous.md): the extents a cycle read from its point-in-time export,
 * in a local file, so the backup job ends at once (the guest's copy-before-write overhead lasts
 * only as long as the read) and every lane ships from here at its own pace. The file lives in
 * the page cache like any recent write; its size is bounded by the protector's per-cycle cap.
 * Lanes that take part in the cycle hold a reference; the file is removed when the last lets go.
 */
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { Extent } from '../../core/extent.ts';

export interface SpoolExtent extends Extent {
  /** Where a data extent's bytes are in the file. */
  at: number;
}

export class Spool {
  private readonly index = new Map<string, SpoolExtent[]>();
  private size = 0;
  private refs = 1;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<Spool> {
    return new Spool(path, await open(path, 'w+', 0o600));
  }

  /** Data bytes held. */
  get dataBytes(): number {
    return this.size;
  }

  async addData(disk: string, offset: number, data: Buffer): Promise<void> {
    const at = this.size;
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, at + done);
      done += bytesWritten;
    }
    this.size += data.length;
    this.push(disk, { offset, length: data.length, kind: 'data', at });
  }

  addZero(disk: string, offset: number, length: number): void {
    this.push(disk, { offset, length, kind: 'zero', at: -1 });
  }

  private push(disk: string, e: SpoolExtent): void {
    const list = this.index.get(disk) ?? [];
    const last = list[list.length - 1];
    if (last && last.offset + last.length > e.offset) {
      throw new RangeError(`spool extents of ${disk} must ascend (${e.offset} after ${last.offset})`);
    }
    list.push(e);
    this.index.set(disk, list);
  }

  /** The extents of a disk, ascending. */
  extents(disk: string): readonly SpoolExtent[] {
    return this.index.get(disk) ?? [];
  }

  /** Bytes [from, from + length) of a data extent, into `into` (or a new buffer). */
  async read(e: SpoolExtent, from: number, length: number, into?: Buffer): Promise<Buffer> {
    if (e.kind !== 'data' || from < 0 || from + length > e.length) {
      throw new RangeError(`no data at [${from}, +${length}) of a spool extent`);
    }
    const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, e.at + from + done);
      if (bytesRead === 0) throw new RangeError(`spool ${this.path} ended early`);
      done += bytesRead;
    }
    return buf;
  }

  /** Another holder (a lane taking part in the cycle). */
  retain(): this {
    if (this.closed) throw new Error(`spool ${this.path} is already removed`);
    this.refs++;
    return this;
  }

  /** Lets go; the last holder removes the file. */
  async release(): Promise<void> {
    if (this.closed || --this.refs > 0) return;
    this.closed = true;
    await this.fh.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}
