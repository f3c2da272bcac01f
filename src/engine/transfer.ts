/**
 * Moving one disk: plan its extents from the export's maps, read them in order with several
 * reads in flight, digest each chunk, and send what the target does not already hold.
 *
 * In compare mode (checksum resync, or resuming a delta under a new point in time) every chunk's
 * digest is checked against what the target will hold (`expectedDigests`, fetched alongside each
 * read) and only differing chunks go over the wire: "never a silent full re-send" (docs/design.md §6).
 */
import { chunkDigests, DIGEST_BYTES, type DigestAlgorithm, zeroRangeDigests } from '../core/digest.ts';
import type { Extent } from '../core/extent.ts';
import type { Logger } from '../core/log.ts';
import { CONTEXT_BASE_ALLOCATION, mapExtents, type NbdClient } from '../nbd/index.ts';
import { BufferPool, type StreamSender } from '../protocol/index.ts';
import { differingRuns, runBytes } from './differing-runs.ts';
import { orderedReads, type Piece } from './ordered-reads.ts';
import { clipBelow, type PlanMode, planDisk, planTotals } from './plan.ts';
import { pooledReader } from './pooled-reader.ts';
import type { ProgressTracker } from './progress.ts';
import type { TokenBucket } from './rate-limit.ts';

export interface DiskTransferOptions {
  sender: StreamSender;
  client: NbdClient;
  /** Store disk name. */
  disk: string;
  size: number;
  mode: PlanMode;
  dirtyContext: string | undefined;
  /** Compare against the target's expected digests and send only what differs. */
  compare: boolean;
  /** Resume: everything below this offset is already staged at the same point in time. */
  from: number;
  chunkSize: number;
  digest: DigestAlgorithm;
  /** Largest piece per frame (a multiple of chunkSize), NBD request size, requests in flight. */
  pieceBytes: number;
  requestBytes: number;
  inflight: number;
  /** Send a MARK (resume watermark) after this many bytes of progress. */
  markEvery: number;
  bucket: TokenBucket;
  progress: ProgressTracker;
  signal?: AbortSignal;
  log: Logger;
  /** Counted into as the transfer goes, so a failed attempt still says what it sent. */
  tally?: DiskTransferResult;
}

export interface DiskTransferResult {
  /** Bytes of data and zero ranges sent in this attempt (the delta summary counts). */
  dataBytes: number;
  zeroBytes: number;
  /** Bytes read from the source. */
  readBytes: number;
  /** Bytes compared and found already present on the target. */
  skippedBytes: number;
}

/** The extents a run will process, for planning totals without reading data. */
export function diskPlan(o: {
  client: NbdClient;
  mode: PlanMode;
  dirtyContext: string | undefined;
  chunkSize: number;
  size: number;
  from: number;
}): AsyncGenerator<Extent> {
  const plan = planDisk({
    mode: o.mode,
    allocation: mapExtents(o.client, CONTEXT_BASE_ALLOCATION),
    dirty: o.dirtyContext ? mapExtents(o.client, o.dirtyContext) : undefined,
    chunkSize: o.chunkSize,
    size: o.size,
  });
  return o.from > 0 ? clipBelow(plan, o.from) : plan;
}

export async function diskPlanTotals(
  o: Parameters<typeof diskPlan>[0],
): Promise<{ data: number; zero: number }> {
  return planTotals(diskPlan(o));
}

export async function transferDisk(o: DiskTransferOptions): Promise<DiskTransferResult> {
  const { sender, client, disk, chunkSize } = o;
  const result: DiskTransferResult = o.tally ?? { dataBytes: 0, zeroBytes: 0, readBytes: 0, skippedBytes: 0 };
  const plan = diskPlan({ ...o, from: o.from });
  let sinceMark = 0;
  let wire = sender.bytesOnWire;

  // Read buffers are reused once the stream has written them (sendData's onReleased): a fresh
  // buffer per read made the garbage collector the sender's largest cost (bench/README.md).
  const pool = new BufferPool(o.pieceBytes);
  const pieces = orderedReads<Buffer>(plan, {
    read: pooledReader(client, pool, o.requestBytes),
    inflight: o.inflight,
    maxBytes: o.inflight * o.requestBytes,
    maxPiece: o.pieceBytes,
    companion: o.compare
      ? (e) => sender.expectedDigests(disk, Math.floor(e.offset / chunkSize), Math.ceil(e.length / chunkSize))
      : undefined,
  });

  for await (const piece of pieces) {
    o.signal?.throwIfAborted();
    const { extent, data } = piece;
    const digests = data
      ? chunkDigests(o.digest, data, chunkSize)
      : zeroRangeDigests(o.digest, extent.offset, extent.length, chunkSize, o.size);
    if (data) result.readBytes += data.length;
    // One reference for this loop, one per send until the stream released it.
    const { hold, drop } = pool.share(data);

    try {
      await sendPiece(o, piece, digests, result, hold);
    } finally {
      drop();
    }

    const end = extent.offset + extent.length;
    sinceMark += extent.length;
    if (sinceMark >= o.markEvery) {
      sender.mark(disk, end);
      sinceMark = 0;
    }
    const sentNow = sender.bytesOnWire - wire;
    wire = sender.bytesOnWire;
    await o.bucket.take(sentNow);
    o.progress.add(extent.length, sentNow);
  }
  sender.mark(disk, o.size);
  return result;
}

/**
 * Sends one piece: whole, or in compare mode only the runs of chunks whose digest differs from
 * the target's, as sub-extents. `hold` takes a reference on the piece's buffer that the stream
 * drops once it has written it.
 */
async function sendPiece(
  o: DiskTransferOptions,
  piece: Piece<Buffer>,
  digests: Buffer,
  result: DiskTransferResult,
  hold: () => () => void,
): Promise<void> {
  const { extent, data } = piece;
  if (!o.compare) {
    await send(o, extent, data, digests, result, hold);
    return;
  }
  const expected = piece.companion!;
  let sentBytes = 0;
  for (const run of differingRuns(digests, expected)) {
    const { from, to } = runBytes(run, o.chunkSize, extent.length);
    await send(
      o,
      { offset: extent.offset + from, length: to - from, kind: extent.kind },
      data?.subarray(from, to),
      digests.subarray(run.first * DIGEST_BYTES, run.end * DIGEST_BYTES),
      result,
      hold,
    );
    sentBytes += to - from;
  }
  result.skippedBytes += extent.length - sentBytes;
}

async function send(
  o: DiskTransferOptions,
  extent: Extent,
  data: Buffer | undefined,
  digests: Buffer,
  result: DiskTransferResult,
  hold: () => () => void,
): Promise<void> {
  if (extent.length === 0) return;
  if (data) {
    await o.sender.sendData(o.disk, extent.offset, data, digests, hold());
    result.dataBytes += extent.length;
  } else {
    await o.sender.sendZero(o.disk, extent.offset, extent.length);
    result.zeroBytes += extent.length;
  }
}
