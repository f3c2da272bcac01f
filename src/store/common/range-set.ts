/**
 * A set of byte ranges of one disk, for applying several staged deltas in one pass (apply/):
 * the ranges the later deltas write (data or zero), so what an earlier delta wrote there is
 * skipped instead of written and then overwritten. Pure: no I/O.
 */
import type { ByteRange } from './holes.ts';

/** [start, end) of a disk. */
interface Span {
  start: number;
  end: number;
}

export class RangeSet {
  /** Sorted, disjoint, non-touching. */
  private spans: Span[] = [];
  /** Added since the last normalize(), unsorted. */
  private pending: ByteRange[] = [];

  /** Ranges held (after merging neighbours). */
  get count(): number {
    this.normalize();
    return this.spans.length;
  }

  add(offset: number, length: number): void {
    if (length > 0) this.pending.push({ offset, length });
  }

  /** Every range of `other` added to this set. */
  addAll(other: RangeSet): void {
    other.normalize();
    for (const s of other.spans) this.pending.push({ offset: s.start, length: s.end - s.start });
  }

  /** The parts of [offset, offset + length) that no range covers, in ascending order. */
  gaps(offset: number, length: number): ByteRange[] {
    this.normalize();
    const end = offset + length;
    const out: ByteRange[] = [];
    let at = offset;
    for (let i = this.firstEndingAfter(offset); at < end; i++) {
      const span = this.spans[i];
      if (!span || span.start >= end) break;
      if (span.start > at) out.push({ offset: at, length: span.start - at });
      at = Math.max(at, span.end);
    }
    if (at < end) out.push({ offset: at, length: end - at });
    return out;
  }

  /** Index of the first span that ends after `offset` (binary search). */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.spans.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.spans[mid]?.end ?? Number.POSITIVE_INFINITY) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private normalize(): void {
    if (!this.pending.length) return;
    const all = this.pending;
    for (const s of this.spans) all.push({ offset: s.start, length: s.end - s.start });
    this.pending = [];
    all.sort((a, b) => a.offset - b.offset);
    const spans: Span[] = [];
    for (const r of all) {
      const last = spans[spans.length - 1];
      if (last && r.offset <= last.end) last.end = Math.max(last.end, r.offset + r.length);
      else spans.push({ start: r.offset, end: r.offset + r.length });
    }
    this.spans = spans;
  }
}
