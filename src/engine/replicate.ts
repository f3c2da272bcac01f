/**
 * One run for one server to one target (DESIGN §4–§6): decide what the target already has,
 * take a point in time, send the delta over the replication stream, wait until it is durable
 * and committed, then record in the catalog which checkpoint the new generation came from.
 *
 * The target is the authority on what it holds: its newest generation names the checkpoint it
 * came from, and the next run is incremental from exactly that checkpoint when libvirt still has
 * it (or it can be redefined from the catalog) and its bitmaps are consistent. Anything else is a
 * checksum resync: every chunk is read, only chunks whose digests differ are sent.
 *
 * A broken connection is retried within the run, resuming from what the receiver staged; the
 * backup job (the point in time) stays up meanwhile. A run killed outright leaves the job
 * running and its delta recorded as in flight, and the next run continues it.
 */
import type { Catalog } from '../catalog/catalog.ts';
import { asHavenError, type HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { CONTEXT_BASE_ALLOCATION, NbdClient } from '../nbd/index.ts';
import type { StreamSender } from '../protocol/index.ts';
import type { DeltaMode, DeltaSummary, Generation } from '../store/types.ts';
import {
  type Checkpoint,
  checkpointXml,
  deleteCheckpoint,
  domainXml,
  getServer,
  listCheckpoints,
  redefineCheckpoint,
  type Server,
  type Virsh,
  VirtError,
  validateCheckpoint,
} from '../virt/index.ts';
import { EngineError } from './errors.ts';
import type { PlanMode } from './plan.ts';
import { checkpointOf, isHavenCheckpoint } from './points.ts';
import { type ProgressSnapshot, ProgressTracker } from './progress.ts';
import { TokenBucket } from './rate-limit.ts';
import { acquireSource, type BaseCheckpoint, diskMode, type ProtectedDisk, type Source } from './source.ts';
import { type DiskTransferResult, diskPlanTotals, transferDisk } from './transfer.ts';

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
  dryRun?: boolean;
  shutdownTimeoutMs?: number;
  tuning?: Partial<ProtectTuning>;
  onProgress?: (p: ProgressSnapshot) => void;
  signal?: AbortSignal;
  log: Logger;
  /** Stage the point in time on a primary cache drive before the transfer (DESIGN §4.6). */
  stage?: StageHook;
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

export interface ProtectPlan {
  server: string;
  target: string;
  storeId: string;
  state: string;
  consistency: 'live' | 'shutdown';
  newest: Pick<Generation, 'id' | 'seq' | 'pointInTime' | 'takenAt'> | null;
  base: string | undefined;
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
  attemptLog: Array<{ stagedBytes: number; sentBytes: number; error?: string }>;
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
          hint: 'Store names come from image file names (DESIGN §4.1); rename one of the images.',
          details: { server: server.name, disks: [other, d.target], name: d.name },
        },
      );
    }
    seen.set(d.name, d.target);
  }
  return disks;
}

/**
 * The checkpoint the target's newest generation came from, if its bitmaps can be trusted.
 * Checkpoint metadata libvirt lost is redefined from the catalog first (DESIGN §6).
 */
async function trustedBase(
  virsh: Virsh,
  server: Server,
  newest: Generation | null,
  catalog: Catalog | undefined,
  log: Logger,
  likely?: Promise<BaseCheckpoint | undefined>,
): Promise<BaseCheckpoint | undefined> {
  const name = checkpointOf(newest?.pointInTime);
  if (!newest) return undefined;
  if (!name) {
    log.warn('the target’s newest copy names no Haven checkpoint: checksum resync', {
      pointInTime: newest.pointInTime,
    });
    return undefined;
  }
  const checked = await likely;
  if (checked?.name === name) {
    log.debug('base checkpoint checked while the receiver started', { checkpoint: name });
    return checked;
  }
  let cp = (await listCheckpoints(virsh, server.name)).find((c) => c.name === name);
  if (!cp) {
    const saved = catalog?.checkpoints.get(server.name, name);
    if (!saved) {
      log.warn('libvirt no longer has the checkpoint of the target’s newest copy: checksum resync', {
        checkpoint: name,
      });
      return undefined;
    }
    try {
      cp = await redefineCheckpoint(virsh, server.name, saved.xml);
      log.info('redefined the checkpoint libvirt had lost, from the catalog', { checkpoint: name });
    } catch (e) {
      if (!(e instanceof VirtError)) throw e;
      log.warn('the lost checkpoint cannot be redefined (its bitmaps are gone): checksum resync', {
        checkpoint: name,
        err: e,
      });
      return undefined;
    }
  }
  const v = await validateCheckpoint(virsh, server.name, name, { log });
  if (!v.ok) {
    log.warn('the checkpoint’s bitmaps are missing or inconsistent: checksum resync', {
      checkpoint: name,
      issues: v.issues,
      message: v.message,
    });
    return undefined;
  }
  return baseOf(cp);
}

function baseOf(cp: Checkpoint): BaseCheckpoint {
  return {
    name: cp.name,
    disks: new Set(cp.disks.filter((d) => d.checkpoint === 'bitmap').map((d) => d.name)),
  };
}

/**
 * trustedBase's answer for the checkpoint the target most likely holds its newest copy from (the
 * newest one this catalog saw delivered anywhere), worked out while the receiver starts: the
 * sender waits about a third of a second for its first answer, and the libvirt checks take a
 * quarter of that. Only a checkpoint that exists and whose bitmaps check out is returned; when the
 * target names another, or anything is wrong, trustedBase checks again and says why. Never rejects.
 */
async function likelyBase(
  virsh: Virsh,
  server: Server,
  catalog: Catalog,
): Promise<BaseCheckpoint | undefined> {
  try {
    const name = catalog.checkpoints
      .list(server.name)
      .find((c) => catalog.checkpoints.deliveries(server.name, c.name).length > 0)?.name;
    if (!name) return undefined;
    const cp = (await listCheckpoints(virsh, server.name)).find((c) => c.name === name);
    if (!cp) return undefined;
    const v = await validateCheckpoint(virsh, server.name, name);
    return v.ok ? baseOf(cp) : undefined;
  } catch {
    return undefined;
  }
}

const RETRYABLE_CODES = new Set([
  'PROTO_TRUNCATED',
  'PROTO_DIGEST_MISMATCH',
  'PROTO_DELTA_MISMATCH',
  'STORE_LOCKED',
]);

function retryable(e: HavenError): boolean {
  if (e.code.startsWith('NBD_') || e.code.startsWith('VIRT_')) return false;
  return e.kind === 'unavailable' || RETRYABLE_CODES.has(e.code);
}

function deltaMode(disks: { mode: PlanMode }[]): DeltaMode {
  if (disks.some((d) => d.mode === 'resync')) return 'resync';
  if (disks.every((d) => d.mode === 'full')) return 'full';
  return 'incremental';
}

async function sourceDefinition(virsh: Virsh, server: Server): Promise<string> {
  return domainXml(virsh, server.name, { inactive: server.persistent });
}

/** Deletes Haven checkpoints no target needs any more (keeps each target's last delivery). */
async function pruneCheckpoints(virsh: Virsh, server: Server, catalog: Catalog, log: Logger): Promise<void> {
  for (const cp of catalog.checkpoints.unneeded(server.name)) {
    if (!isHavenCheckpoint(cp.name)) continue;
    try {
      await deleteCheckpoint(virsh, server.name, cp.name);
      catalog.checkpoints.forget(server.name, cp.name);
      log.verbose('deleted a checkpoint no target needs', { checkpoint: cp.name });
    } catch (e) {
      if (e instanceof VirtError && e.code === 'VIRT_CHECKPOINT_NOT_FOUND') {
        catalog.checkpoints.forget(server.name, cp.name);
      } else {
        log.warn('could not delete an old checkpoint; will try again next run', {
          checkpoint: cp.name,
          err: e,
        });
      }
    }
  }
}

export async function protectServer(o: ProtectOptions): Promise<ProtectResult | ProtectPlan> {
  const started = performance.now();
  const log = o.log.child({ server: o.server });
  const tuning = { ...DEFAULT_TUNING, ...o.tuning };
  checkName('server', o.server);
  const server = await getServer(o.virsh, o.server, { log });
  const disks = protectedDisks(server);
  const consistency = o.consistency ?? 'live';
  const likely = o.catalog && !o.dryRun ? likelyBase(o.virsh, server, o.catalog) : undefined;

  // The first contact is retried like the transfer: a receiver that dies while starting is the
  // same broken connection as one that dies mid-delta.
  let sender: StreamSender | undefined;
  let newest: Generation | null = null;
  for (let attempt = 1; ; attempt++) {
    try {
      sender = await o.connect();
      newest = await sender.query(server.name);
      break;
    } catch (err) {
      const e = asHavenError(err);
      await sender?.close().catch(() => {});
      sender = undefined;
      if (o.signal?.aborted || !retryable(e) || attempt > (o.retries ?? 3)) throw e;
      const wait = (o.retryBackoffMs ?? 1000) * 2 ** (attempt - 1);
      log.warn('cannot reach the target; trying again', { attempt, err: e, waitMs: wait });
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  const storeId = sender.store.id;
  const { chunkSize } = sender;
  const digestAlg = sender.digestAlgorithm;
  const previous = new Map((newest?.disks ?? []).map((d) => [d.name, d.size]));
  const base = await trustedBase(o.virsh, server, newest, o.catalog, log, likely);
  const inflight = o.catalog?.inflight.get(server.name, storeId);
  let reuse: { checkpoint: string; socketPath: string } | undefined;
  if (inflight && newest?.pointInTime === inflight.checkpoint) {
    // The crashed run got as far as the commit: record the delivery it could not record.
    const catalog = o.catalog!;
    catalog.transaction(() => {
      catalog.checkpoints.markDelivered(server.name, inflight.checkpoint, storeId, newest.id);
      catalog.inflight.clear(server.name, storeId);
    });
  } else if (
    inflight?.socket &&
    (inflight.incrementalFrom ?? undefined) === checkpointOf(newest?.pointInTime)
  ) {
    // Same base as when that run began: its backup job, if still up, is the same point in time.
    reuse = { checkpoint: inflight.checkpoint, socketPath: inflight.socket };
  }

  if (o.dryRun) {
    await sender.close();
    return {
      server: server.name,
      target: o.targetLabel,
      storeId,
      state: server.state,
      consistency,
      newest: newest && {
        id: newest.id,
        seq: newest.seq,
        pointInTime: newest.pointInTime,
        takenAt: newest.takenAt,
      },
      base: base?.name,
      disks: disks.map((d) => ({
        name: d.name,
        target: d.target,
        size: d.size,
        format: d.format,
        mode: diskMode(d, previous, Boolean(base?.disks.has(d.target) && d.format === 'qcow2')),
      })),
      resumeJob: reuse !== undefined,
    } satisfies ProtectPlan;
  }

  let taken: Source;
  try {
    await o.stage?.before?.();
    taken = await acquireSource({
      virsh: o.virsh,
      server,
      disks,
      base,
      previous,
      consistency,
      runDir: o.runDir,
      reuse,
      quiesce: o.quiesce,
      shutdownTimeoutMs: o.shutdownTimeoutMs,
      log,
    });
  } catch (e) {
    await sender.close().catch(() => {});
    throw e;
  }
  let source = taken;
  if (o.stage) {
    try {
      source = await o.stage.source(taken, { chunkSize, log });
    } catch (e) {
      await taken.release().catch((err) => log.warn('could not end the backup job', { err }));
      await sender.close().catch(() => {});
      throw e;
    }
  }
  log.verbose('point in time taken', {
    checkpoint: source.pointInTime,
    kind: source.kind,
    incrementalFrom: source.incrementalFrom,
    modes: Object.fromEntries(source.disks.map((d) => [d.name, d.mode])),
  });
  const progress = new ProgressTracker(0, server.name, undefined, o.onProgress);
  const bucket = new TokenBucket(o.bandwidth ?? 0);
  // Every attempt's tallies per disk (a failed attempt still sent what it sent), and each disk's mode.
  const diskTallies = new Map<string, DiskTransferResult[]>();
  const diskModes = new Map<string, PlanMode>();
  let attempts = 0;
  let wireBytes = 0;
  const attemptLog: ProtectResult['attemptLog'] = [];
  let resumedBytes = 0;
  try {
    if (o.catalog && source.kind !== 'reused') {
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
    const definition = await sourceDefinition(o.virsh, server);
    let generation!: Generation;
    for (;;) {
      attempts++;
      const tallies: DiskTransferResult[] = [];
      const attempt: ProtectResult['attemptLog'][number] = { stagedBytes: 0, sentBytes: 0 };
      attemptLog.push(attempt);
      try {
        sender ??= await o.connect();
        if (attempts > 1) {
          // The connection may have broken after the target committed this very point in time
          // (its answer lost, or a receiver killed mid-commit that the new one rolled forward on
          // QUERY): then the copy is done, and opening a delta on the old base would be refused.
          const now = await sender.query(server.name);
          if (now && now.pointInTime === source.pointInTime) {
            log.info('the target had committed this point in time before the connection broke', {
              generation: now.id,
            });
            generation = now;
            break;
          }
        }
        const opened = await sender.open({
          server: server.name,
          job: o.job ?? 'manual',
          copies: o.copies,
          disks: source.disks.map((d) => ({ name: d.name, size: d.size })),
          sourceDefinition: definition,
          pointInTime: source.pointInTime,
          takenAt: source.takenAt.toISOString(),
          baseGenerationId: newest?.id ?? null,
          mode: deltaMode(source.disks),
        });
        const resume = opened.resume;
        const samePoint = resume !== null && resume.pointInTime === source.pointInTime;
        const compareAll = resume !== null && !samePoint;
        if (resume) {
          log.info(
            samePoint
              ? 'resuming the staged delta'
              : 'a partial delta from another point in time: comparing digests',
            {
              delta: resume.deltaId,
              stagedBytes: resume.stagedBytes,
            },
          );
          if (samePoint) resumedBytes = resume.stagedBytes;
          attempt.stagedBytes = resume.stagedBytes;
        }
        // The receiver says which delta is open; an older record (a run that failed before its
        // point in time could be reused) is obsolete.
        const recorded = o.catalog?.inflight.get(server.name, storeId);
        if (recorded && (recorded.deltaId !== opened.deltaId || recorded.checkpoint !== source.pointInTime)) {
          o.catalog?.inflight.clear(server.name, storeId);
        }
        o.catalog?.inflight.set({
          server: server.name,
          target: storeId,
          deltaId: opened.deltaId,
          checkpoint: source.pointInTime,
          incrementalFrom: source.incrementalFrom,
          socket: source.socketPath,
          runId: o.runId,
        });

        // Totals first (block status only, no data), so progress has an ETA.
        const clients = new Map<string, NbdClient>();
        try {
          let total = 0;
          for (const d of source.disks) {
            const client = await NbdClient.connect({
              socketPath: d.socketPath,
              exportName: d.exportName,
              metaContexts: d.dirtyContext
                ? [CONTEXT_BASE_ALLOCATION, d.dirtyContext]
                : [CONTEXT_BASE_ALLOCATION],
              log,
            });
            clients.set(d.name, client);
            const mode = compareAll && d.mode === 'full' ? 'resync' : d.mode;
            const from = samePoint ? (resume.watermarks[d.name] ?? 0) : 0;
            const t = await diskPlanTotals({
              client,
              mode,
              dirtyContext: d.dirtyContext,
              chunkSize,
              size: d.size,
              from,
            });
            total += t.data + t.zero;
          }
          progress.setTotal(total);

          const summary: DeltaSummary = { disks: {} };
          for (const d of source.disks) {
            const staged = resume?.staged?.[d.name] ?? { dataBytes: 0, zeroBytes: 0 };
            const mode = compareAll && d.mode === 'full' ? 'resync' : d.mode;
            progress.setPhase('sending', d.name);
            const tally: DiskTransferResult = { dataBytes: 0, zeroBytes: 0, readBytes: 0, skippedBytes: 0 };
            tallies.push(tally);
            diskTallies.set(d.name, [...(diskTallies.get(d.name) ?? []), tally]);
            diskModes.set(d.name, mode);
            const r: DiskTransferResult = await transferDisk({
              tally,
              sender,
              client: clients.get(d.name)!,
              disk: d.name,
              size: d.size,
              mode,
              dirtyContext: d.dirtyContext,
              compare: compareAll || mode === 'resync',
              from: samePoint ? (resume.watermarks[d.name] ?? 0) : 0,
              chunkSize,
              digest: digestAlg,
              pieceBytes: tuning.pieceBytes,
              requestBytes: tuning.requestBytes,
              inflight: tuning.inflight,
              markEvery: tuning.markEvery,
              bucket,
              progress,
              signal: o.signal,
              log,
            });
            summary.disks[d.name] = {
              dataBytes: staged.dataBytes + r.dataBytes,
              zeroBytes: staged.zeroBytes + r.zeroBytes,
            };
          }
          progress.setPhase('making the delta durable');
          await sender.endDelta(summary);
          progress.setPhase('committing the generation');
          generation = await sender.commit();
        } finally {
          await Promise.allSettled([...clients.values()].map((c) => c.close()));
        }
        attempt.sentBytes = tallies.reduce((n, x) => n + x.dataBytes + x.zeroBytes, 0);
        break;
      } catch (err) {
        const e = asHavenError(err);
        attempt.error = e.code;
        attempt.sentBytes = tallies.reduce((n, x) => n + x.dataBytes + x.zeroBytes, 0);
        if (o.signal?.aborted || !retryable(e) || attempts > (o.retries ?? 3)) throw e;
        const wait = (o.retryBackoffMs ?? 1000) * 2 ** (attempts - 1);
        log.warn('the connection to the target broke; resuming', { attempt: attempts, err: e, waitMs: wait });
        wireBytes += sender?.bytesOnWire ?? 0;
        await sender?.close().catch(() => {});
        sender = undefined;
        await new Promise((r) => setTimeout(r, wait));
      }
    }

    if (o.catalog) {
      const catalog = o.catalog;
      catalog.transaction(() => {
        catalog.checkpoints.markDelivered(server.name, source.pointInTime, storeId, generation.id);
        catalog.inflight.clear(server.name, storeId);
      });
      await pruneCheckpoints(o.virsh, server, catalog, log);
    }
    const diskReports: DiskReport[] = source.disks.map((d) => {
      const ts = diskTallies.get(d.name) ?? [];
      const sum = (k: keyof DiskTransferResult) => ts.reduce((n, x) => n + x[k], 0);
      return {
        name: d.name,
        target: d.target,
        size: d.size,
        mode: diskModes.get(d.name) ?? d.mode,
        dataBytes: sum('dataBytes'),
        zeroBytes: sum('zeroBytes'),
        readBytes: sum('readBytes'),
        skippedBytes: sum('skippedBytes'),
      };
    });
    const result: ProtectResult = {
      server: server.name,
      target: o.targetLabel,
      storeId,
      generation,
      pointInTime: source.pointInTime,
      takenAt: source.takenAt.toISOString(),
      sourceKind: source.kind,
      quiesced: source.quiesced,
      mode: deltaMode(diskReports),
      disks: diskReports,
      bytesRead: diskReports.reduce((s, d) => s + d.readBytes, 0),
      bytesSent: wireBytes + (sender?.bytesOnWire ?? 0),
      resumedBytes,
      attempts,
      attemptLog,
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
  } finally {
    await source.release().catch((e) => log.warn('could not end the backup job', { err: e }));
    await sender?.close().catch(() => {});
  }
}
