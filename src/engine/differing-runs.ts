/**
 * Compare mode (a checksum resync, docs/design.md §6): which chunks of a piece differ from what
 * the target holds, as runs of consecutive chunks, so each run goes out as one sub-extent.
 */
import { DIGEST_BYTES } from '../core/digest.ts';

/** A run of differing chunks: chunk indexes [first, end) within the piece. */
export interface ChunkRun {
  first: number;
  end: number;
}

/** The runs of chunks whose digest in `actual` differs from the one in `expected`, in order. */
export function differingRuns(actual: Buffer, expected: Buffer): ChunkRun[] {
  const n = actual.length / DIGEST_BYTES;
  const runs: ChunkRun[] = [];
  let first = -1;
  for (let i = 0; i <= n; i++) {
    const at = i * DIGEST_BYTES;
    const differs = i < n && actual.compare(expected, at, at + DIGEST_BYTES, at, at + DIGEST_BYTES) !== 0;
    if (differs && first < 0) first = i;
    if (!differs && first >= 0) {
      runs.push({ first, end: i });
      first = -1;
    }
  }
  return runs;
}

/** The byte range [from, to) of a run within a piece of `length` bytes (the last chunk may be short). */
export function runBytes(run: ChunkRun, chunkSize: number, length: number): { from: number; to: number } {
  return { from: run.first * chunkSize, to: Math.min(run.end * chunkSize, length) };
}
