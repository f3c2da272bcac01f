/**
 * Parallel reads delivered in order. Several NBD reads are in flight at once (latency hiding;
 * QEMU serves them concurrently) but the stream must carry extents in ascending order per disk,
 * because the receiver's resume watermark means "everything below was sent". Memory is bounded
 * by `inflight × maxPiece` (and by `maxBytes`), whatever the disk size.
 */
import type { Extent } from '../core/extent.ts';
import { splitExtents } from './plan.ts';

export interface Piece<T> {
  extent: Extent;
  /** The bytes of a data extent; undefined for zero extents. */
  data: Buffer | undefined;
  /** Whatever `companion` fetched alongside (e.g. the target's digests for the range). */
  companion: T | undefined;
}

export interface OrderedReadOptions<T> {
  read: (offset: number, length: number) => Promise<Buffer>;
  /** Pieces (reads) in flight at once. */
  inflight: number;
  /** …and at most about this many bytes of them (one piece may go over). Default: no limit. */
  maxBytes?: number;
  /** Largest piece, bytes: a multiple of the chunk size. */
  maxPiece: number;
  /** Started together with each piece's read, awaited before the piece is delivered. */
  companion?: (extent: Extent) => Promise<T>;
}

export async function* orderedReads<T = undefined>(
  extents: AsyncIterable<Extent>,
  options: OrderedReadOptions<T>,
): AsyncGenerator<Piece<T>> {
  const source = splitExtents(extents, options.maxPiece)[Symbol.asyncIterator]();
  const queue: Promise<Piece<T>>[] = [];
  const sizes: number[] = [];
  let queuedBytes = 0;
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
  let exhausted = false;
  const start = (extent: Extent): Promise<Piece<T>> => {
    const data = extent.kind === 'data' ? options.read(extent.offset, extent.length) : undefined;
    const comp = options.companion ? options.companion(extent) : undefined;
    // Attach handlers now so a rejection while queued is not reported as unhandled.
    data?.catch(() => {});
    comp?.catch(() => {});
    return (async () => ({ extent, data: await data, companion: await comp }))();
  };
  const fill = async () => {
    while (
      !exhausted &&
      queue.length < Math.max(1, options.inflight) &&
      (queuedBytes < maxBytes || queue.length === 0)
    ) {
      const next = await source.next();
      if (next.done) {
        exhausted = true;
        break;
      }
      const p = start(next.value);
      p.catch(() => {});
      queue.push(p);
      const size = next.value.kind === 'data' ? next.value.length : 0;
      sizes.push(size);
      queuedBytes += size;
    }
  };
  try {
    await fill();
    while (queue.length > 0) {
      const piece = await queue.shift()!;
      queuedBytes -= sizes.shift()!;
      await fill();
      yield piece;
    }
  } finally {
    // On an early exit (error downstream), let in-flight reads settle quietly.
    await Promise.allSettled(queue);
    await source.return?.(undefined);
  }
}
