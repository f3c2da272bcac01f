/**
 * A set of byte ranges of one disk, for applying several staged deltas in one pass (apply.ts):
 * the ranges the later deltas write (data or zero), so what an earlier delta wrote there is
 * skipped instead of written and then overwritten. Pure: no I/O.
 */
import type { ByteRange } from './holes.ts';

export class RangeSet {
  /** Sorted, disjoint, non-touching ranges as parallel arrays of starts and ends. */
  private starts: number[] = [];
  private ends: number[] = [];
  /** Added since the last normalize(), unsorted. */
  private pending: ByteRange[] = [];

  /** Ranges held (after merging neighbours). */
  get count(): number {
    this.normalize();
    return this.starts.length;
  }

  add(offset: number, length: number): void {
    if (length > 0) this.pending.push({ offset, length });
  }

  /** Every range of `other` added to this set. */
  addAll(other: RangeSet): void {
    other.normalize();
    for (let i = 0; i < other.starts.length; i++) {
      this.pending.push({ offset: other.starts[i]!, length: other.ends[i]! - other.starts[i]! });
    }
  }

  /** The parts of [offset, offset + length) that no range covers, in ascending order. */
  gaps(offset: number, length: number): ByteRange[] {
    this.normalize();
    const end = offset + length;
    const out: ByteRange[] = [];
    // The first range that ends after `offset`.
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    let at = offset;
    for (let i = lo; i < this.starts.length && this.starts[i]! < end && at < end; i++) {
      if (this.starts[i]! > at) out.push({ offset: at, length: this.starts[i]! - at });
      at = Math.max(at, this.ends[i]!);
    }
    if (at < end) out.push({ offset: at, length: end - at });
    return out;
  }

  private normalize(): void {
    if (!this.pending.length) return;
    const all: ByteRange[] = this.pending;
    for (let i = 0; i < this.starts.length; i++) {
      all.push({ offset: this.starts[i]!, length: this.ends[i]! - this.starts[i]! });
    }
    this.pending = [];
    all.sort((a, b) => a.offset - b.offset);
    const starts: number[] = [];
    const ends: number[] = [];
    for (const r of all) {
      const last = ends.length - 1;
      if (last >= 0 && r.offset <= ends[last]!) ends[last] = Math.max(ends[last]!, r.offset + r.length);
      else {
        starts.push(r.offset);
        ends.push(r.offset + r.length);
      }
    }
    this.starts = starts;
    this.ends = ends;
  }
}
