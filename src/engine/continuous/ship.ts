/**
 * Sending one journal segment (docs/stream-protocol.md §5.5): the chunks of a lane's part that a
 * cycle's spool holds, disks in order, ascending, then END_DELTA (consistent or not) and the
 * append. Chunks the lane must compare (a checksum resync) go only where their digest differs
 * from what the target's journal holds (`expectedDigests`), as in engine/transfer.ts; the others
 * go whole. Memory: a few pieces of at most `pieceBytes`, whatever the segment's size.
 */

import { chunkDigests, DIGEST_BYTES, zeroRangeDigests } from '../../core/digest.ts';
import { BufferPool, type StreamSender } from '../../protocol/index.ts';
import type { JournalDeltaMeta, SegmentRecord } from '../../store/types.ts';
import { differingRuns, runBytes } from '../differing-runs.ts';
import type { TokenBucket } from '../rate-limit.ts';
import type { ChunkSet, DiskChunks } from './chunk-set.ts';
import type { Spool, SpoolExtent } from './spool.ts';

export interface ShipRequest {
  sender: StreamSender;
  meta: JournalDeltaMeta;
  spool: Spool;
  /** The chunks this segment carries, per disk. */
  part: DiskChunks;
  /** Chunks to compare rather than send blindly (checksum resync); null: none. */
  compare: DiskChunks | null;
  consistent: boolean;
  bucket: TokenBucket;
  pieceBytes: number;
  signal?: AbortSignal;
  /** Called as bytes go out, for progress and stall detection. */
  onProgress?: (bytes: number) => void;
}

export interface ShipResult {
  segment: SegmentRecord;
  dataBytes: number;
  zeroBytes: number;
  /** Compared and found already at the target. */
  skippedBytes: number;
  wireBytes: number;
}

interface Run {
  offset: number;
  length: number;
  compare: boolean;
}

/** The runs of `set` inside [offset, offset + length), split where `compare` membership changes. */
function* runsIn(
  set: ChunkSet,
  compare: ChunkSet | undefined,
  e: SpoolExtent,
  chunkSize: number,
): Generator<Run> {
  const first = Math.floor(e.offset / chunkSize);
  const end = Math.ceil((e.offset + e.length) / chunkSize);
  let start = -1;
  let cmp = false;
  const flush = (c: number): Run | undefined => {
    if (start < 0) return undefined;
    const offset = start * chunkSize;
    return { offset, length: Math.min(c * chunkSize, e.offset + e.length) - offset, compare: cmp };
  };
  for (let c = first; c <= end; c++) {
    const inSet = c < end && set.has(c);
    const isCmp = inSet && (compare?.has(c) ?? false);
    if (start >= 0 && (!inSet || isCmp !== cmp)) {
      const r = flush(c);
      if (r) yield r;
      start = -1;
    }
    if (inSet && start < 0) {
      start = c;
      cmp = isCmp;
    }
  }
}

export async function shipSegment(r: ShipRequest): Promise<ShipResult> {
  const { sender, spool } = r;
  const C = sender.chunkSize;
  await sender.open(r.meta);
  const result = { dataBytes: 0, zeroBytes: 0, skippedBytes: 0 };
  const pool = new BufferPool(r.pieceBytes);
  const wireStart = sender.bytesOnWire;
  let wire = wireStart;
  const paced = async () => {
    const now = sender.bytesOnWire;
    r.onProgress?.(now - wire);
    await r.bucket.take(now - wire);
    wire = now;
  };
  for (const d of r.meta.disks) {
    const set = r.part.disks.get(d.name);
    if (set && !set.isEmpty()) {
      const compare = r.compare?.disks.get(d.name);
      for (const e of spool.extents(d.name)) {
        for (const run of runsIn(set, compare, e, C)) {
          r.signal?.throwIfAborted();
          await sendRun(r, { name: d.name, size: d.size }, e, run, pool, result);
          await paced();
        }
      }
    }
    sender.mark(d.name, d.size);
  }
  await sender.endDelta(undefined, { consistent: r.consistent });
  const segment = await sender.commitSegment();
  await paced();
  return { segment, ...result, wireBytes: sender.bytesOnWire - wireStart };
}

type Tally = { dataBytes: number; zeroBytes: number; skippedBytes: number };

async function sendRun(
  r: ShipRequest,
  disk: { name: string; size: number },
  e: SpoolExtent,
  run: Run,
  pool: BufferPool,
  tally: Tally,
): Promise<void> {
  const { sender } = r;
  const C = sender.chunkSize;
  if (e.kind === 'zero') {
    if (!run.compare) {
      await sender.sendZero(disk.name, run.offset, run.length);
      tally.zeroBytes += run.length;
      return;
    }
    const digests = zeroRangeDigests(sender.digestAlgorithm, run.offset, run.length, C, disk.size);
    await sendDiffering(sender, disk.name, run.offset, run.length, undefined, digests, tally);
    return;
  }
  for (let at = run.offset; at < run.offset + run.length; at += r.pieceBytes) {
    const length = Math.min(r.pieceBytes, run.offset + run.length - at);
    const buf = await r.spool.read(e, at - e.offset, length, pool.take(length));
    const digests = chunkDigests(sender.digestAlgorithm, buf, C);
    // One reference for this loop, one per send until the stream has written the buffer.
    const { hold, drop } = pool.share(buf);
    try {
      if (run.compare) await sendDiffering(sender, disk.name, at, length, buf, digests, tally, hold);
      else {
        await sender.sendData(disk.name, at, buf, digests, hold());
        tally.dataBytes += length;
      }
    } finally {
      drop();
    }
  }
}

/**
 * Sends only the chunks of [offset, offset + length) whose digest differs from the target's
 * (a checksum resync, docs/design.md §6), as runs of consecutive differing chunks.
 */
async function sendDiffering(
  sender: StreamSender,
  disk: string,
  offset: number,
  length: number,
  data: Buffer | undefined,
  digests: Buffer,
  tally: Tally,
  hold?: () => () => void,
): Promise<void> {
  const C = sender.chunkSize;
  const n = digests.length / DIGEST_BYTES;
  const expected = await sender.expectedDigests(disk, Math.floor(offset / C), n);
  let sentBytes = 0;
  for (const run of differingRuns(digests, expected)) {
    const { from, to } = runBytes(run, C, length);
    if (data) {
      await sender.sendData(
        disk,
        offset + from,
        data.subarray(from, to),
        digests.subarray(run.first * DIGEST_BYTES, run.end * DIGEST_BYTES),
        hold?.(),
      );
      tally.dataBytes += to - from;
    } else {
      await sender.sendZero(disk, offset + from, to - from);
      tally.zeroBytes += to - from;
    }
    sentBytes += to - from;
  }
  tally.skippedBytes += length - sentBytes;
}
