/**
 * A byte range of a disk and what it holds. Shared by the NBD client (block status), the engine
 * (planning), the stream protocol (extent frames) and the stores (deltas).
 */
export type ExtentKind = 'data' | 'zero';

export interface Extent {
  offset: number;
  length: number;
  kind: ExtentKind;
}

/** End offset (exclusive). */
export function extentEnd(e: { offset: number; length: number }): number {
  return e.offset + e.length;
}

/**
 * Merges adjacent extents of the same kind. Input must be sorted by offset and not overlap;
 * the result is too.
 */
export function coalesce<T extends Extent>(extents: Iterable<T>): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.kind === e.kind && extentEnd(last) === e.offset) last.length += e.length;
    else out.push({ offset: e.offset, length: e.length, kind: e.kind });
  }
  return out;
}

/** Rounds [offset, offset+length) outwards to multiples of `align`, clipped to `limit`. */
export function alignOut(offset: number, length: number, align: number, limit: number): [number, number] {
  const start = Math.floor(offset / align) * align;
  const end = Math.min(Math.ceil((offset + length) / align) * align, limit);
  return [start, end - start];
}
