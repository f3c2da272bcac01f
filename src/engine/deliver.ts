/**
 * Delivering a point in time to the target: one attempt opens (or resumes) the delta, sends every
 * disk, waits until the delta is durable and the generation committed. A broken connection is
 * retried within the run (retry.ts), resuming from what the receiver staged, while the backup job
 * (the point in time) stays up. Each attempt's tallies are kept, since a failed attempt still sent
 * what it sent.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../core/log.ts';
import type { NbdClient } from '../nbd/index.ts';
import type { OpenResult, StreamSender } from '../protocol/index.ts';
import type { DeltaMode, DeltaSummary, Generation } from '../store/types.ts';
import { EngineError } from './errors.ts';
import type { PlanMode } from './plan.ts';
import type { ProgressTracker } from './progress.ts';
import type { TokenBucket } from './rate-limit.ts';
import { type RetryPolicy, withReconnects } from './retry.ts';
import { connectSourceDisk, type Source, type SourceDisk } from './source.ts';
import { type DiskTransferResult, diskPlanTotals, transferDisk } from './transfer.ts';

export interface TransferTuning {
  pieceBytes: number;
  requestBytes: number;
  inflight: number;
  markEvery: number;
}

export interface DeliveryRequest {
  server: string;
  source: Source;
  /** The source's libvirt definition, sent with the delta (docs/design.md §4.5). */
  definition: string;
  /** The target's newest generation when the run began: the delta's base. */
  newest: Generation | null;
  storeId: string;
  job: string;
  copies: number;
  catalog: Catalog | undefined;
  runId: number | undefined;
  tuning: TransferTuning;
  bucket: TokenBucket;
  progress: ProgressTracker;
  signal: AbortSignal | undefined;
  log: Logger;
  /**
   * Read every chunk of the incremental disks too and compare (checksum resync): the operator
   * asked (`--resync`), or the target did (damaged chunks only the source can repair).
   */
  resync?: boolean;
}

export interface AttemptRecord {
  /** What the receiver had staged when the attempt began. */
  stagedBytes: number;
  /** Bytes the attempt sent. */
  sentBytes: number;
  error?: string;
}

/** Everything the attempts did, for the run's report. */
export interface Delivery {
  generation: Generation;
  attempts: number;
  attemptLog: AttemptRecord[];
  /** Bytes the receiver already held from an earlier attempt at the same point in time. */
  resumedBytes: number;
  /** Bytes on the wire over every connection of the delivery. */
  wireBytes: number;
  /** Per disk: every attempt's tallies, and the mode it was last read in. */
  tallies: Map<string, DiskTransferResult[]>;
  modes: Map<string, PlanMode>;
}

/** What the attempts share: the delivery so far, and whether the target asked for a resync. */
type Attempts = Omit<Delivery, 'generation' | 'attempts'> & { resync: boolean };

export function deltaMode(disks: { mode: PlanMode }[]): DeltaMode {
  if (disks.some((d) => d.mode === 'resync')) return 'resync';
  if (disks.every((d) => d.mode === 'full')) return 'full';
  return 'incremental';
}

/**
 * Delivers the source through `first` (the session the run already holds), reconnecting with
 * `connect` after a broken connection. Every session it opened is closed before it returns.
 */
export async function deliver(
  req: DeliveryRequest,
  first: StreamSender,
  connect: () => Promise<StreamSender>,
  policy: RetryPolicy,
): Promise<Delivery> {
  let sender: StreamSender | undefined = first;
  const d: Attempts = {
    attemptLog: [],
    resumedBytes: 0,
    wireBytes: 0,
    tallies: new Map(),
    modes: new Map(),
    resync: req.resync === true,
  };
  const sent = (ts: DiskTransferResult[]) => ts.reduce((n, x) => n + x.dataBytes + x.zeroBytes, 0);
  let current: DiskTransferResult[] = [];
  try {
    const { generation, attempts } = await withReconnects(
      policy,
      'the connection to the target broke; resuming',
      async (n) => {
        current = [];
        const record: AttemptRecord = { stagedBytes: 0, sentBytes: 0 };
        d.attemptLog.push(record);
        sender ??= await connect();
        const generation = await attemptOnce(req, sender, n, record, current, d);
        record.sentBytes = sent(current);
        return { generation, attempts: n };
      },
      async (e) => {
        const record = d.attemptLog[d.attemptLog.length - 1]!;
        record.error = e.code;
        // The target discarded the delta and marked what only the source can repair.
        if (e.code === 'STORE_RESEND_NEEDED') d.resync = true;
        record.sentBytes = sent(current);
        d.wireBytes += sender?.bytesOnWire ?? 0;
        await sender?.close().catch(() => {});
        sender = undefined;
      },
    );
    d.wireBytes += sender?.bytesOnWire ?? 0;
    const { resync: _, ...delivery } = d;
    return { ...delivery, generation, attempts };
  } finally {
    await sender?.close().catch(() => {});
  }
}

/**
 * One attempt on one session. After a broken connection the target may already hold this very
 * point in time (its answer lost, or a receiver killed mid-commit that the new one rolled forward
 * on QUERY): then the copy is done, and opening a delta on the old base would be refused.
 */
async function attemptOnce(
  req: DeliveryRequest,
  sender: StreamSender,
  attempt: number,
  record: AttemptRecord,
  tallies: DiskTransferResult[],
  d: Attempts,
): Promise<Generation> {
  const { source, log } = req;
  if (attempt > 1) {
    const now = await sender.query(req.server);
    if (now && now.pointInTime === source.pointInTime) {
      log.info('the target had committed this point in time before the connection broke', {
        generation: now.id,
      });
      return now;
    }
  }
  const opened = await sender.open({
    server: req.server,
    job: req.job,
    copies: req.copies,
    disks: source.disks.map((x) => ({ name: x.name, size: x.size })),
    sourceDefinition: req.definition,
    pointInTime: source.pointInTime,
    takenAt: source.takenAt.toISOString(),
    baseGenerationId: req.newest?.id ?? null,
    mode: deltaMode(source.disks.map((x) => ({ mode: modeOf(x, false, d.resync) }))),
  });
  if (opened.resync && !d.resync) {
    log.warn('the target holds damaged chunks only the source can repair: checksum resync', {
      delta: opened.deltaId,
    });
    d.resync = true;
  }
  refuseResyncOfPartial(req, d.resync);
  const resume = opened.resume;
  if (resume) {
    const samePoint = resume.pointInTime === source.pointInTime;
    log.info(
      samePoint
        ? 'resuming the staged delta'
        : 'a partial delta from another point in time: comparing digests',
      { delta: resume.deltaId, stagedBytes: resume.stagedBytes },
    );
    if (samePoint) d.resumedBytes = resume.stagedBytes;
    record.stagedBytes = resume.stagedBytes;
  }
  recordInflight(req, opened.deltaId);
  return sendDisks(req, sender, opened, tallies, d);
}

/**
 * The receiver says which delta is open; an older in-flight record (a run that failed before its
 * point in time could be reused) is obsolete. The record lets a crashed run's successor continue.
 */
function recordInflight(req: DeliveryRequest, deltaId: string): void {
  const { catalog, source } = req;
  if (!catalog) return;
  const recorded = catalog.inflight.get(req.server, req.storeId);
  if (recorded && (recorded.deltaId !== deltaId || recorded.checkpoint !== source.pointInTime)) {
    catalog.inflight.clear(req.server, req.storeId);
  }
  catalog.inflight.set({
    server: req.server,
    target: req.storeId,
    deltaId,
    checkpoint: source.pointInTime,
    incrementalFrom: source.incrementalFrom,
    socket: source.socketPath,
    runId: req.runId,
  });
}

/**
 * How a disk is read in this attempt: a partial delta from another point in time is compared, and
 * a resync reads and compares every chunk of an incremental disk too (the point in time's export
 * serves the whole disk; its dirty bitmap only says what changed).
 */
function modeOf(disk: SourceDisk, compareAll: boolean, resync: boolean): PlanMode {
  if (resync && disk.mode === 'incremental') return 'resync';
  return compareAll && disk.mode === 'full' ? 'resync' : disk.mode;
}

/** A staged copy holds only what changed: a resync of its incremental disks needs a new run. */
function refuseResyncOfPartial(req: DeliveryRequest, resync: boolean): void {
  if (!resync || !req.source.partial || !req.source.disks.some((x) => x.mode === 'incremental')) return;
  throw new EngineError(
    'ENGINE_RESYNC_NEEDED',
    `${req.server}: the target needs a checksum resync, and the staged copy holds only what changed`,
    {
      kind: 'integrity',
      hint: `Run \`haven protect ${req.server}\` again: the target asks for a checksum resync, so the next run stages and compares every chunk.`,
      details: { server: req.server },
    },
  );
}

async function sendDisks(
  req: DeliveryRequest,
  sender: StreamSender,
  opened: OpenResult,
  tallies: DiskTransferResult[],
  d: Attempts,
): Promise<Generation> {
  const { source, progress, log } = req;
  const resume = opened.resume;
  const samePoint = resume !== null && resume.pointInTime === source.pointInTime;
  const compareAll = resume !== null && !samePoint;
  const from = (disk: string) => (samePoint ? (resume.watermarks[disk] ?? 0) : 0);
  const clients = new Map<string, NbdClient>();
  try {
    // Totals first (block status only, no data), so progress has an ETA.
    let total = 0;
    for (const disk of source.disks) {
      const client = await connectSourceDisk(disk, log);
      clients.set(disk.name, client);
      const t = await diskPlanTotals({
        client,
        mode: modeOf(disk, compareAll, d.resync),
        dirtyContext: disk.dirtyContext,
        chunkSize: sender.chunkSize,
        size: disk.size,
        from: from(disk.name),
      });
      total += t.data + t.zero;
    }
    progress.setTotal(total);

    const summary: DeltaSummary = { disks: {} };
    for (const disk of source.disks) {
      const staged = resume?.staged?.[disk.name] ?? { dataBytes: 0, zeroBytes: 0 };
      const mode = modeOf(disk, compareAll, d.resync);
      progress.setPhase('sending', disk.name);
      const tally: DiskTransferResult = { dataBytes: 0, zeroBytes: 0, readBytes: 0, skippedBytes: 0 };
      tallies.push(tally);
      d.tallies.set(disk.name, [...(d.tallies.get(disk.name) ?? []), tally]);
      d.modes.set(disk.name, mode);
      const r = await transferDisk({
        tally,
        sender,
        client: clients.get(disk.name)!,
        disk: disk.name,
        size: disk.size,
        mode,
        dirtyContext: disk.dirtyContext,
        compare: compareAll || mode === 'resync',
        from: from(disk.name),
        chunkSize: sender.chunkSize,
        digest: sender.digestAlgorithm,
        ...req.tuning,
        bucket: req.bucket,
        progress,
        signal: req.signal,
        log,
      });
      summary.disks[disk.name] = {
        dataBytes: staged.dataBytes + r.dataBytes,
        zeroBytes: staged.zeroBytes + r.zeroBytes,
      };
    }
    progress.setPhase('making the delta durable');
    await sender.endDelta(summary);
    progress.setPhase('committing the generation');
    return await sender.commit();
  } finally {
    await Promise.allSettled([...clients.values()].map((c) => c.close()));
  }
}
