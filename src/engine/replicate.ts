/**
 * One run for one server to one target (docs/design.md §4–§6): decide what the target already has,
 * take a point in time, send the delta over the replication stream, wait until it is durable
 * and committed, then record in the catalog which checkpoint the new generation came from.
 *
 * The target is the authority on what it holds: its newest generation names the checkpoint it
 * came from, and the next run is incremental from exactly that checkpoint when libvirt still has
 * it (or it can be redefined from the catalog) and its bitmaps are consistent (base.ts). Anything
 * else is a checksum resync: every chunk is read, only chunks whose digests differ are sent.
 *
 * A broken connection is retried within the run, resuming from what the receiver staged; the
 * backup job (the point in time) stays up meanwhile (deliver.ts). A run killed outright leaves the
 * job running and its delta recorded as in flight, and the next run continues it. `planProtect`
 * answers a dry run: the same questions, nothing taken, written or recorded.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import type { StreamSender } from '../protocol/index.ts';
import type { DeltaMode, Generation } from '../store/types.ts';
import { checkpointXml, domainXml, getServer, type Server, type Virsh } from '../virt/index.ts';
import { likelyBase, trustedBase } from './base.ts';
import { pruneUnneededCheckpoints } from './checkpoint-cleanup.ts';
import { firstContact, retryPolicy, settleInflight } from './contact.ts';
import { type AttemptRecord, type Delivery, deliver, deltaMode } from './deliver.ts';
import { EngineError } from './errors.ts';
import type { PlanMode } from './plan.ts';
import { type ProgressSnapshot, ProgressTracker } from './progress.ts';
import { TokenBucket } from './rate-limit.ts';
import { lockServer } from './server-lock.ts';
import { acquireSource, type ProtectedDisk, type Source } from './source.ts';
import type { DiskTransferResult } from './transfer.ts';

export interface ProtectTuning {
  /** Largest piece read ahead and sent as one stream frame (a multiple of the chunk size). */
  pieceBytes: number;
  /** Largest NBD read request (pieces are read in requests of this size, concurrently). */
  requestBytes: number;
  /** NBD read requests in flight per disk (so about inflight × requestBytes bytes). */
  inflight: number;
  /** Bytes of progress between resume watermarks. */
  markEvery: number;
}

export const DEFAULT_TUNING: ProtectTuning = {
  // 256 KiB requests, 16 in flight, is what QEMU's NBD server serves fastest (bench/nbd-read);
  // 1 MiB frames mean a quarter of the per-frame work and of the receiver's writes.
  pieceBytes: 1024 * 1024,
  requestBytes: 256 * 1024,
  inflight: 16,
  markEvery: 256 * 1024,
};

/**
 * Primary cache drive staging (jobs/ decides where and when). `before` runs just before the
 * point in time is taken (a job waits there for its turn); `source` receives the point-in-time
 * source and returns the one the transfer reads (e.g. engine/stage.ts's staged copy, whose
 * release also ends the original). If `source` throws, the original is released.
 */
export interface StageHook {
  before?(): Promise<void>;
  source(source: Source, context: { chunkSize: number; log: Logger }): Promise<Source>;
}

export interface ProtectOptions {
  server: string;
  /** Opens a new connection to the target and does the handshake; called again to resume. */
  connect: () => Promise<StreamSender>;
  /** How the target is named in logs (its URL). */
  targetLabel: string;
  virsh: Virsh;
  runDir: string;
  job?: string;
  copies: number;
  /** Bytes per second on the wire; 0 or undefined: unlimited. */
  bandwidth?: number;
  consistency?: 'live' | 'shutdown';
  /** Freeze guest filesystems through the agent when there is one (default true). */
  quiesce?: boolean;
  catalog?: Catalog;
  runId?: number;
  /** Reconnections within the run after a broken connection (default 3). */
  retries?: number;
  retryBackoffMs?: number;
  shutdownTimeoutMs?: number;
  tuning?: Partial<ProtectTuning>;
  onProgress?: (p: ProgressSnapshot) => void;
  signal?: AbortSignal;
  log: Logger;
  /** Stage the point in time on a primary cache drive before the transfer (docs/design.md §4.6). */
  stage?: StageHook;
  /** Compare every chunk's digest with the target's and send what differs (`--resync`). */
  resync?: boolean;
}

export interface DiskReport {
  name: string;
  target: string;
  size: number;
  mode: PlanMode;
  dataBytes: number;
  zeroBytes: number;
  readBytes: number;
  skippedBytes: number;
}

/** What a dry run asks: the target's answer and libvirt's, read only. */
export interface PlanOptions
  extends Pick<
    ProtectOptions,
    | 'server'
    | 'targetLabel'
    | 'virsh'
    | 'consistency'
    | 'catalog'
    | 'retries'
    | 'retryBackoffMs'
    | 'signal'
    | 'log'
    | 'resync'
  > {
  /** Opens a session to ask the target; resolves to null when the target holds no store yet. */
  connect: () => Promise<StreamSender | null>;
}

export interface ProtectPlan {
  server: string;
  target: string;
  /** The target store's id; null when there is no store yet (the first run creates it). */
  storeId: string | null;
  state: string;
  consistency: 'live' | 'shutdown';
  newest: Pick<Generation, 'id' | 'seq' | 'pointInTime' | 'takenAt'> | null;
  base: string | undefined;
  /** Why every chunk is compared whatever the base: `--resync`, or the target asks (damage). */
  resync?: 'operator' | 'target';
  disks: Array<{ name: string; target: string; size: number; format: string; mode: PlanMode }>;
  resumeJob: boolean;
}

export interface ProtectResult {
  server: string;
  target: string;
  storeId: string;
  generation: Generation;
  pointInTime: string;
  takenAt: string;
  sourceKind: Source['kind'];
  quiesced: boolean;
  mode: DeltaMode;
  disks: DiskReport[];
  bytesRead: number;
  bytesSent: number;
  /** Bytes the receiver already held from an earlier attempt at the same point in time. */
  resumedBytes: number;
  attempts: number;
  /** Per attempt: what the receiver had staged when it began, and the bytes it sent. */
  attemptLog: AttemptRecord[];
  durationMs: number;
}

/** Disks Haven protects: every disk/lun with an image; removable media are not data. */
export function protectedDisks(server: Server): ProtectedDisk[] {
  const disks: ProtectedDisk[] = [];
  for (const d of server.disks) {
    if (d.device !== 'disk' && d.device !== 'lun') continue;
    if (!d.path || !d.storeName || d.virtualSize === undefined) {
      throw new EngineError(
        'ENGINE_DISK_UNSUPPORTED',
        `${server.name}: disk ${d.target} has no local image Haven can name`,
        {
          kind: 'usage',
          hint: 'Haven protects file, block and volume disks; network disks are not supported yet.',
          details: { server: server.name, disk: d.target, sourceType: d.sourceType },
        },
      );
    }
    disks.push({
      target: d.target,
      name: checkName('disk', d.storeName),
      size: d.virtualSize,
      format: d.format ?? 'raw',
      path: d.path,
    });
  }
  if (disks.length === 0) {
    throw new EngineError('ENGINE_NO_DISKS', `${server.name} has no disk to protect`, {
      kind: 'usage',
      details: { server: server.name },
    });
  }
  const seen = new Map<string, string>();
  for (const d of disks) {
    const other = seen.get(d.name);
    if (other) {
      throw new EngineError(
        'ENGINE_DISK_NAME_CLASH',
        `${server.name}: disks ${other} and ${d.target} would both be stored as "${d.name}"`,
        {
          kind: 'usage',
          hint: 'Store names come from image file names (docs/design.md §4.1); rename one of the images.',
          details: { server: server.name, disks: [other, d.target], name: d.name },
        },
      );
    }
    seen.set(d.name, d.target);
  }
  return disks;
}

/**
 * Takes the point in time (through the primary cache drive when the job stages). If staging
 * fails, the point in time is released.
 */
async function takeSource(
  o: ProtectOptions,
  request: Omit<Parameters<typeof acquireSource>[0], 'virsh' | 'runDir' | 'log'>,
  chunkSize: number,
  log: Logger,
): Promise<Source> {
  await o.stage?.before?.();
  const taken = await acquireSource({
    ...request,
    virsh: o.virsh,
    runDir: o.runDir,
    quiesce: o.quiesce,
    shutdownTimeoutMs: o.shutdownTimeoutMs,
    log,
  });
  if (!o.stage) return taken;
  try {
    return await o.stage.source(taken, { chunkSize, log });
  } catch (e) {
    await taken.release().catch((err) => log.warn('could not end the backup job', { err }));
    throw e;
  }
}

/** Replicates one server now. A second run of the same server on this host is refused. */
export async function protectServer(o: ProtectOptions): Promise<ProtectResult> {
  const started = performance.now();
  const log = o.log.child({ server: o.server });
  checkName('server', o.server);
  const server = await getServer(o.virsh, o.server, { log });
  const disks = protectedDisks(server);
  const lock = await lockServer(server, { target: o.targetLabel, job: o.job, runId: o.runId }, log);
  try {
    return await protectLocked(o, server, disks, started, log);
  } finally {
    await lock.release();
  }
}

async function protectLocked(
  o: ProtectOptions,
  server: Server,
  disks: ProtectedDisk[],
  started: number,
  log: Logger,
): Promise<ProtectResult> {
  const likely = o.catalog ? likelyBase(o.virsh, server, o.catalog) : undefined;
  const policy = retryPolicy(o, log);
  const { sender, newest, resync: asked } = await firstContact(o.connect, server.name, policy);
  let owned: StreamSender | undefined = sender;
  let source: Source | undefined;
  let result: ProtectResult;
  try {
    const storeId = sender.store.id;
    const previous = new Map((newest?.disks ?? []).map((d) => [d.name, d.size]));
    const resync = resyncReason(o, newest, asked, log);
    const base = resync
      ? undefined
      : await trustedBase(o.virsh, server, newest, { catalog: o.catalog, log, likely });
    const reuse = settleInflight(o.catalog, server.name, storeId, newest);
    const consistency = o.consistency ?? 'live';
    source = await takeSource(
      o,
      { server, disks, base, previous, consistency, reuse },
      sender.chunkSize,
      log,
    );
    log.verbose('point in time taken', {
      checkpoint: source.pointInTime,
      kind: source.kind,
      incrementalFrom: source.incrementalFrom,
      modes: Object.fromEntries(source.disks.map((d) => [d.name, d.mode])),
    });
    await recordCheckpoint(o, server, source);
    const definition = await domainXml(o.virsh, server.name, { inactive: server.persistent });
    owned = undefined;
    const delivery = await deliver(
      {
        server: server.name,
        source,
        definition,
        newest,
        storeId,
        job: o.job ?? 'manual',
        copies: o.copies,
        catalog: o.catalog,
        runId: o.runId,
        tuning: { ...DEFAULT_TUNING, ...o.tuning },
        bucket: new TokenBucket(o.bandwidth ?? 0),
        progress: new ProgressTracker(0, server.name, undefined, o.onProgress),
        signal: o.signal,
        log,
        resync: resync !== undefined,
      },
      sender,
      o.connect,
      policy,
    );
    await recordDelivery(o, server, source, storeId, delivery.generation);
    result = report(o, server, source, storeId, delivery, started, log);
  } finally {
    await source?.release().catch((e) => log.warn('could not end the backup job', { err: e }));
    await owned?.close().catch(() => {});
  }
  // After the release: an offline copy's qemu-nbd export holds the image lock until then, and
  // the previous checkpoint's bitmaps cannot be removed under it.
  if (o.catalog) await pruneUnneededCheckpoints(o.virsh, server.name, o.catalog, log);
  return result;
}

/**
 * Why this run is a checksum resync whatever its base: the operator asked (`--resync`), or the
 * target did (its newest generation holds damaged chunks only the source can repair). Undefined
 * when neither did, or there is nothing to compare with yet (a first run is a full copy).
 */
export function resyncReason(
  o: { resync?: boolean },
  newest: Generation | null,
  asked: boolean,
  log: Logger,
): 'operator' | 'target' | undefined {
  if (!newest) return undefined;
  const reason = o.resync ? 'operator' : asked ? 'target' : undefined;
  if (reason === 'operator') log.info('checksum resync asked for (--resync): every chunk is compared');
  if (reason === 'target')
    log.warn('the target holds damaged chunks only the source can repair: checksum resync', {
      generation: newest.id,
    });
  return reason;
}

/** The checkpoint of a new point in time, kept so it can be redefined if libvirt loses it. */
async function recordCheckpoint(o: ProtectOptions, server: Server, source: Source): Promise<void> {
  if (!o.catalog || source.kind === 'reused') return;
  o.catalog.checkpoints.record({
    server: server.name,
    name: source.pointInTime,
    domainUuid: server.uuid,
    createdAt: source.takenAt,
    parent: source.incrementalFrom,
    disks: source.disks.map((d) => d.target),
    xml: await checkpointXml(o.virsh, server.name, source.pointInTime),
  });
}

async function recordDelivery(
  o: ProtectOptions,
  server: Server,
  source: Source,
  storeId: string,
  generation: Generation,
): Promise<void> {
  const catalog = o.catalog;
  if (!catalog) return;
  catalog.transaction(() => {
    catalog.checkpoints.markDelivered(server.name, source.pointInTime, storeId, generation.id);
    catalog.inflight.clear(server.name, storeId);
  });
}

function report(
  o: ProtectOptions,
  server: Server,
  source: Source,
  storeId: string,
  delivery: Delivery,
  started: number,
  log: Logger,
): ProtectResult {
  const disks: DiskReport[] = source.disks.map((d) => {
    const ts = delivery.tallies.get(d.name) ?? [];
    const sum = (k: keyof DiskTransferResult) => ts.reduce((n, x) => n + x[k], 0);
    return {
      name: d.name,
      target: d.target,
      size: d.size,
      mode: delivery.modes.get(d.name) ?? d.mode,
      dataBytes: sum('dataBytes'),
      zeroBytes: sum('zeroBytes'),
      readBytes: sum('readBytes'),
      skippedBytes: sum('skippedBytes'),
    };
  });
  const { generation } = delivery;
  const result: ProtectResult = {
    server: server.name,
    target: o.targetLabel,
    storeId,
    generation,
    pointInTime: source.pointInTime,
    takenAt: source.takenAt.toISOString(),
    sourceKind: source.kind,
    quiesced: source.quiesced,
    mode: deltaMode(disks),
    disks,
    bytesRead: disks.reduce((s, d) => s + d.readBytes, 0),
    bytesSent: delivery.wireBytes,
    resumedBytes: delivery.resumedBytes,
    attempts: delivery.attempts,
    attemptLog: delivery.attemptLog,
    durationMs: Math.round(performance.now() - started),
  };
  log.verbose('generation committed', {
    generation: generation.id,
    seq: generation.seq,
    mode: result.mode,
    bytesSent: result.bytesSent,
    ms: result.durationMs,
  });
  return result;
}
