/**
 * Image and staged-data writes that bypass the page cache (O_DIRECT, open(2) "O_DIRECT").
 *
 * Why: a DR target writes gigabytes it will not read again soon. Through the page cache every
 * byte is copied into freshly allocated cache pages, written back later, and evicts whatever the
 * target host had cached (its own guests' data). Measured on the CI machines (a VM), writing
 * 1 GiB buffered and then fdatasync took 3–4 s and 3.8–5.6 CPU-seconds of kernel time; through
 * O_DIRECT it took 0.6–0.9 s and 0.25 CPU-seconds. qemu-img's `-t none` and QEMU's `cache=none`
 * exist for the same reason.
 *
 * O_DIRECT needs aligned memory, offsets and lengths (core/aligned-memory.ts).
 *
 * Whatever cannot go direct (an unaligned head or tail, a filesystem that refuses O_DIRECT with
 * EINVAL, such as some FUSE or older tmpfs) goes through the ordinary handle: the content is the
 * same either way, and the kernel keeps the two coherent (a direct write first writes back and
 * drops cached pages of its range). Durability still comes from fsync/fdatasync on either
 * handle: both name the same inode, and O_DIRECT alone does not flush the device's write cache.
 */
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import {
  alignDown,
  alignedBuffer,
  alignUp,
  DIRECT_ALIGN,
  isAlignedMemory,
} from '../../core/aligned-memory.ts';
import type { Logger } from '../../core/log.ts';
import { isErrno, writeAllAt } from './files.ts';

/** Bytes copied into the aligned scratch buffer per direct write. */
const SCRATCH_BYTES = 4 << 20;

/** An O_DIRECT handle on `path`, or null where disabled or the filesystem refuses it. */
async function openDirect(path: string, flags: number, enabled: boolean): Promise<FileHandle | null> {
  if (!enabled || !constants.O_DIRECT) return null;
  try {
    return await open(path, flags | constants.O_DIRECT);
  } catch (e) {
    if (!isErrno(e, 'EINVAL', 'EOPNOTSUPP')) throw e;
    return null;
  }
}

/** The O_DIRECT handle beside a caller's ordinary one; an EINVAL from it turns it off for good. */
abstract class DirectHandle {
  constructor(
    protected readonly buffered: FileHandle,
    protected direct: FileHandle | null,
  ) {}

  get isDirect(): boolean {
    return this.direct !== null;
  }

  /** After `e` from direct handle `fh`: rethrows unless EINVAL, else stops using `fh`. */
  protected async refused(fh: FileHandle, e: unknown): Promise<void> {
    if (!isErrno(e, 'EINVAL')) throw e;
    if (this.direct === fh) {
      this.direct = null;
      await fh.close().catch(() => {});
    }
  }

  /** Closes the direct handle (the buffered one is the caller's). */
  async close(): Promise<void> {
    const fh = this.direct;
    this.direct = null;
    await fh?.close().catch(() => {});
  }
}

/**
 * Positioned writes to one file: the aligned part of each write through an O_DIRECT handle,
 * the rest through `buffered` (which the caller owns and syncs).
 */
export class DirectWrites extends DirectHandle {
  private scratch: Buffer | null = null;
  /** Bytes written through the O_DIRECT handle so far. */
  directBytes = 0;
  /** Writes that use the scratch buffer run one at a time. */
  private scratchTurn: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    buffered: FileHandle,
    direct: FileHandle | null,
    private readonly log: Logger,
  ) {
    super(buffered, direct);
  }

  /**
   * `enabled` false, or a filesystem that refuses O_DIRECT, gives a writer that only uses
   * `buffered`. The file must exist.
   */
  static async open(
    path: string,
    buffered: FileHandle,
    enabled: boolean,
    log: Logger,
  ): Promise<DirectWrites> {
    const direct = await openDirect(path, constants.O_RDWR, enabled);
    if (enabled && !direct) log.verbose('no O_DIRECT here; writing through the page cache', { path });
    return new DirectWrites(path, buffered, direct, log);
  }

  /** Writes all of `buf` at `position`. */
  async write(buf: Buffer, position: number): Promise<void> {
    const start = alignUp(position);
    const end = alignDown(position + buf.length);
    if (!this.direct || end - start < DIRECT_ALIGN) return writeAllAt(this.buffered, buf, position);
    if (start > position) await writeAllAt(this.buffered, buf.subarray(0, start - position), position);
    await this.writeAligned(buf.subarray(start - position, end - position), start);
    if (end < position + buf.length) await writeAllAt(this.buffered, buf.subarray(end - position), end);
  }

  /** `buf.length` and `position` are aligned. */
  private async writeAligned(buf: Buffer, position: number): Promise<void> {
    if (isAlignedMemory(buf)) {
      await this.tryDirect(buf, position);
      return;
    }
    const turn = this.scratchTurn;
    let done!: () => void;
    this.scratchTurn = new Promise<void>((r) => {
      done = r;
    });
    await turn;
    try {
      this.scratch ??= alignedBuffer(SCRATCH_BYTES);
      if (!isAlignedMemory(this.scratch)) {
        await writeAllAt(this.buffered, buf, position);
        return;
      }
      for (let at = 0; at < buf.length; at += SCRATCH_BYTES) {
        const n = Math.min(SCRATCH_BYTES, buf.length - at);
        buf.copy(this.scratch, 0, at, at + n);
        await this.tryDirect(this.scratch.subarray(0, n), position + at);
      }
    } finally {
      done();
    }
  }

  /** A direct write; EINVAL (the device wants a larger alignment) turns direct I/O off for good. */
  private async tryDirect(buf: Buffer, position: number): Promise<void> {
    const fh = this.direct;
    if (fh) {
      try {
        await writeAllAt(fh, buf, position);
        this.directBytes += buf.length;
        return;
      } catch (e) {
        await this.refused(fh, e);
        this.log.verbose('O_DIRECT write refused; writing through the page cache', { path: this.path });
      }
    }
    await writeAllAt(this.buffered, buf, position);
  }
}

/**
 * Positioned reads of one file past the page cache where the destination allows it (aligned
 * memory and position, room for the length rounded up), else through `buffered`.
 */
export class DirectReads extends DirectHandle {
  static async open(path: string, buffered: FileHandle, enabled: boolean): Promise<DirectReads> {
    return new DirectReads(buffered, await openDirect(path, constants.O_RDONLY, enabled));
  }

  /** Reads up to `length` bytes at `position` into `buf`; returns the bytes read (0 at the end). */
  async read(buf: Buffer, length: number, position: number): Promise<number> {
    const fh = this.direct;
    const span = alignUp(length);
    if (fh && position % DIRECT_ALIGN === 0 && buf.length >= span && isAlignedMemory(buf)) {
      try {
        const { bytesRead } = await fh.read(buf, 0, span, position);
        return Math.min(bytesRead, length);
      } catch (e) {
        await this.refused(fh, e);
      }
    }
    const { bytesRead } = await this.buffered.read(buf, 0, length, position);
    return bytesRead;
  }
}
