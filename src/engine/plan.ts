/**
 * Extent planning: which byte ranges of a disk a run reads, and as what.
 *
 * Inputs are the NBD block-status maps of the backup export (QEMU docs/interop/nbd.txt):
 * `base:allocation` (flag bit 0 NBD_STATE_HOLE, bit 1 NBD_STATE_ZERO) and, for an incremental
 * run, `qemu:dirty-bitmap:<name>` (bit 0 = dirty). Outputs are chunk-aligned extents (the store's
 * CHUNK_SIZE) because the receiver digests whole chunks; a chunk is `data` when any byte of it
 * may be non-zero, `zero` when every byte reads as zero.
 *
 * Everything here streams: a fragmented disk may have millions of extents, and memory must not
 * grow with the disk.
 */
import type { Extent, ExtentKind } from '../core/extent.ts';

export interface StatusRun {
  offset: number;
  length: number;
  flags: number;
}

export const NBD_STATE_HOLE = 1;
export const NBD_STATE_ZERO = 2;
export const NBD_STATE_DIRTY = 1;

/** What a run reads from a disk. */
export type PlanMode =
  /** allocated data only: the target image is new and sparse, zero ranges are already holes */
  | 'full'
  /** dirty ∩ allocation: data where dirty and allocated, zero where dirty and reading as zero */
  | 'incremental'
  /** the whole disk, data and zero, for comparison against the target's digests */
  | 'resync';

/** Allocation runs as data/zero segments (a run whose flags say "reads as zero" is zero). */
export async function* allocationSegments(runs: AsyncIterable<StatusRun>): AsyncGenerator<Extent> {
  for await (const r of runs) {
    if (r.length === 0) continue;
    yield { offset: r.offset, length: r.length, kind: r.flags & NBD_STATE_ZERO ? 'zero' : 'data' };
  }
}

/** Only the dirty runs of a dirty-bitmap map, as plain ranges. */
export async function* dirtyRanges(
  runs: AsyncIterable<StatusRun>,
): AsyncGenerator<{ offset: number; length: number }> {
  for await (const r of runs) {
    if (r.length > 0 && r.flags & NBD_STATE_DIRTY) yield { offset: r.offset, length: r.length };
  }
}

/**
 * The parts of `segments` that lie inside `ranges`. Both inputs sorted and non-overlapping.
 * A two-pointer walk: O(n + m), no buffering beyond one element of each stream.
 */
export async function* intersect(
  ranges: AsyncIterable<{ offset: number; length: number }>,
  segments: AsyncIterable<Extent>,
): AsyncGenerator<Extent> {
  const ri = ranges[Symbol.asyncIterator]();
  const si = segments[Symbol.asyncIterator]();
  let r = await ri.next();
  let s = await si.next();
  while (!r.done && !s.done) {
    const rs = r.value.offset;
    const re = rs + r.value.length;
    const ss = s.value.offset;
    const se = ss + s.value.length;
    const start = Math.max(rs, ss);
    const end = Math.min(re, se);
    if (start < end) yield { offset: start, length: end - start, kind: s.value.kind };
    if (re <= se) r = await ri.next();
    else s = await si.next();
  }
}

/**
 * Rounds segments out to whole chunks and merges them: a chunk touched by any data segment is
 * data, a chunk touched only by zero segments is zero, untouched chunks are left out. Adjacent
 * chunks of the same kind are merged. `size` clips the last chunk to the disk's end.
 */
export function alignToChunks(
  segments: AsyncIterable<Extent>,
  chunkSize: number,
  size: number,
): AsyncGenerator<Extent> {
  return mergeAdjacent(chunkRuns(segments, chunkSize, size));
}

/**
 * A zero run can shrink to nothing when its only chunk turns out to be shared with data, so two
 * data runs may come out adjacent; this joins them.
 */
async function* mergeAdjacent(extents: AsyncIterable<Extent>): AsyncGenerator<Extent> {
  let held: Extent | undefined;
  for await (const e of extents) {
    if (held && held.kind === e.kind && held.offset + held.length === e.offset) {
      held = { offset: held.offset, length: held.length + e.length, kind: held.kind };
      continue;
    }
    if (held) yield held;
    held = e;
  }
  if (held) yield held;
}

async function* chunkRuns(
  segments: AsyncIterable<Extent>,
  chunkSize: number,
  size: number,
): AsyncGenerator<Extent> {
  // pending run in chunk units [start, end)
  let pStart = -1;
  let pEnd = -1;
  let pKind: ExtentKind = 'data';
  const flush = (): Extent | undefined => {
    if (pStart < 0 || pEnd <= pStart) return undefined;
    const offset = pStart * chunkSize;
    return { offset, length: Math.min(pEnd * chunkSize, size) - offset, kind: pKind };
  };
  for await (const seg of segments) {
    if (seg.length <= 0) continue;
    let a = Math.floor(seg.offset / chunkSize);
    const b = Math.ceil(Math.min(seg.offset + seg.length, size) / chunkSize);
    if (a >= b) continue;
    if (pStart >= 0 && a < pEnd) {
      // The first chunk (at most one, since inputs do not overlap) is shared with the pending run.
      if (seg.kind === pKind) {
        pEnd = Math.max(pEnd, b);
        continue;
      }
      if (seg.kind === 'data') {
        pEnd -= 1; // the shared chunk becomes data, so it leaves the pending zero run
      } else {
        a = pEnd; // the shared chunk stays data
        if (a >= b) continue;
      }
    }
    if (pStart >= 0 && a === pEnd && seg.kind === pKind) {
      pEnd = b;
      continue;
    }
    const done = flush();
    if (done) yield done;
    pStart = a;
    pEnd = b;
    pKind = seg.kind;
  }
  const last = flush();
  if (last) yield last;
}

/** The whole plan for one disk. */
export function planDisk(options: {
  mode: PlanMode;
  allocation: AsyncIterable<StatusRun>;
  /** Required for 'incremental'. */
  dirty?: AsyncIterable<StatusRun>;
  chunkSize: number;
  size: number;
}): AsyncGenerator<Extent> {
  const { mode, chunkSize, size } = options;
  const alloc = allocationSegments(options.allocation);
  switch (mode) {
    case 'full':
      return alignToChunks(onlyKind(alloc, 'data'), chunkSize, size);
    case 'resync':
      return alignToChunks(alloc, chunkSize, size);
    case 'incremental': {
      if (!options.dirty) throw new TypeError('incremental plan needs a dirty map');
      return alignToChunks(intersect(dirtyRanges(options.dirty), alloc), chunkSize, size);
    }
  }
}

async function* onlyKind(segments: AsyncIterable<Extent>, kind: ExtentKind): AsyncGenerator<Extent> {
  for await (const s of segments) if (s.kind === kind) yield s;
}

/** Drops what lies below `from` (a resume watermark), cutting an extent that straddles it. */
export async function* clipBelow(extents: AsyncIterable<Extent>, from: number): AsyncGenerator<Extent> {
  for await (const e of extents) {
    const end = e.offset + e.length;
    if (end <= from) continue;
    if (e.offset >= from) yield e;
    else yield { offset: from, length: end - from, kind: e.kind };
  }
}

/** Splits extents into pieces of at most `max` bytes (a multiple of the chunk size). */
export async function* splitExtents(extents: AsyncIterable<Extent>, max: number): AsyncGenerator<Extent> {
  for await (const e of extents) {
    for (let off = e.offset; off < e.offset + e.length; off += max) {
      yield { offset: off, length: Math.min(max, e.offset + e.length - off), kind: e.kind };
    }
  }
}

/** Totals of a plan, for progress and --dry-run. */
export async function planTotals(
  extents: AsyncIterable<Extent>,
): Promise<{ data: number; zero: number; count: number }> {
  let data = 0;
  let zero = 0;
  let count = 0;
  for await (const e of extents) {
    count++;
    if (e.kind === 'data') data += e.length;
    else zero += e.length;
  }
  return { data, zero, count };
}
