/**
 * Reusable large buffers for the receiver's data path. Each data extent needs a buffer for its
 * body (and one for its decompressed bytes); allocating 4 MiB per frame makes the garbage
 * collector a bottleneck at several hundred MB/s. Buffers are handed out as views and come back
 * by their backing memory, so a view of a view returns the right one. The pool holds at most as
 * many buffers as were ever in use at once (a frame being read, one being checked, one being
 * written), so memory stays bounded by the extent size.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly owned = new Map<ArrayBufferLike, Buffer>();

  constructor(readonly size: number) {}

  /** A buffer of `length` bytes (at most `size`), as a view of a pooled buffer. */
  take(length: number): Buffer {
    if (length > this.size) return Buffer.allocUnsafe(length);
    let b = this.free.pop();
    if (!b) {
      b = Buffer.allocUnsafeSlow(this.size);
      this.owned.set(b.buffer, b);
    }
    return b.subarray(0, length);
  }

  /** Returns the buffer `view` was taken from; views of other memory are ignored. */
  release(view: Buffer | undefined): void {
    if (!view) return;
    const b = this.owned.get(view.buffer);
    if (b && !this.free.includes(b)) this.free.push(b);
  }

  /** Buffers allocated so far (in use or free). */
  get allocated(): number {
    return this.owned.size;
  }
}
