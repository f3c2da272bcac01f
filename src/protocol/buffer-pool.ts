/**
 * Reusable large buffers for the receiver's data path. Each data extent needs a buffer for its
 * body (and one for its decompressed bytes); allocating 4 MiB per frame makes the garbage
 * collector a bottleneck at several hundred MB/s. Buffers are handed out as views and come back
 * by their backing memory, so a view of a view returns the right one. The pool holds at most as
 * many buffers as were ever in use at once (a frame being read, one being checked, one being
 * written), so memory stays bounded by the extent size.
 */
import { alignedBuffer, DIRECT_ALIGN } from '../core/aligned-memory.ts';

export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly owned = new Map<ArrayBufferLike, Buffer>();

  /** Where views start in their buffer (0 unless aligned). */
  private readonly pad: number;

  /**
   * `alignAt`: views are page-aligned memory such that byte `alignAt` of each view sits on a
   * DIRECT_ALIGN boundary (a frame body whose payload the store writes with O_DIRECT, without
   * copying it first).
   */
  constructor(
    readonly size: number,
    private readonly options: { alignAt?: number } = {},
  ) {
    const at = options.alignAt;
    this.pad = at === undefined ? 0 : (DIRECT_ALIGN - (at % DIRECT_ALIGN)) % DIRECT_ALIGN;
  }

  /** A buffer of `length` bytes (at most `size`), as a view of a pooled buffer. */
  take(length: number): Buffer {
    if (length > this.size) return Buffer.allocUnsafe(length);
    let b = this.free.pop();
    if (!b) {
      b =
        this.options.alignAt === undefined
          ? Buffer.allocUnsafeSlow(this.size)
          : alignedBuffer(this.pad + this.size);
      this.owned.set(b.buffer, b);
    }
    return b.subarray(this.pad, this.pad + length);
  }

  /** Returns the buffer `view` was taken from; views of other memory are ignored. */
  release(view: Buffer | undefined): void {
    if (!view) return;
    const b = this.owned.get(view.buffer);
    if (b && !this.free.includes(b)) this.free.push(b);
  }

  /**
   * Shares `view` between its reader and the sends that still hold it: `drop` is the reader's
   * reference, and each `hold()` adds one whose returned function drops it. The buffer goes back
   * to the pool when the last reference is dropped, so a send the stream has not yet written
   * never sees it reused.
   */
  share(view: Buffer | undefined): { hold: () => () => void; drop: () => void } {
    let refs = 1;
    const drop = () => {
      if (--refs === 0) this.release(view);
    };
    const hold = () => {
      refs++;
      return drop;
    };
    return { hold, drop };
  }

  /** Buffers allocated so far (in use or free). */
  get allocated(): number {
    return this.owned.size;
  }
}
