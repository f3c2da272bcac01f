/**
 * The point-in-time source of a run: one NBD export per disk showing every disk of the server
 * as it was at one instant, plus, where a trustworthy checkpoint exists, the map of what changed
 * since it (docs/design.md §6).
 *
 * - live: libvirt pull-mode backup while the guest runs; the checkpoint for the next run is
 *   created at the same instant. With a guest agent, filesystems are frozen around that instant.
 * - shutdown (consistency: shutdown): the guest is shut down cleanly, started paused, the backup
 *   begins (a clean, quiesced point in time), and the guest resumes at once. Its downtime is a
 *   shutdown and a boot, not the copy.
 * - offline (a server that is shut off): qemu-nbd exports each image read-only, with the base
 *   checkpoint's persistent bitmap; the next checkpoint is made offline (createOfflineCheckpoint).
 * - reused: a backup job a crashed run left running is the same point in time, so the delta it
 *   was sending can be resumed exactly.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import { ensureRunDir } from '../core/paths.ts';
import { CONTEXT_BASE_ALLOCATION, NbdClient } from '../nbd/index.ts';
import {
  activeBackup,
  type BackupJob,
  backupBegin,
  backupEnd,
  createOfflineCheckpoint,
  deleteCheckpoint,
  exportImage,
  freeze,
  getCheckpoint,
  type ImageExport,
  listCheckpoints,
  needsResync,
  removeStaleScratch,
  resumeDomain,
  type Server,
  shutdownDomain,
  startDomain,
  thaw,
  type Virsh,
} from '../virt/index.ts';
import { EngineError } from './errors.ts';
import type { PlanMode } from './plan.ts';
import { newCheckpointName } from './points.ts';

/** A disk Haven protects: a block device of the server with an image and a store name. */
export interface ProtectedDisk {
  target: string;
  /** The `<disk>` part of image names (docs/design.md §4.1). */
  name: string;
  size: number;
  format: string;
  path: string;
}

export interface SourceDisk extends ProtectedDisk {
  socketPath: string;
  exportName: string;
  /** Meta context listing the blocks changed since the base checkpoint (incremental disks). */
  dirtyContext: string | undefined;
  mode: PlanMode;
}

/** A disk as its NBD export serves it: the socket, the export name and the dirty map, if any. */
export function servedBy<D extends object>(
  d: D,
  exp: ImageExport,
): D & Pick<SourceDisk, 'socketPath' | 'exportName' | 'dirtyContext'> {
  return { ...d, socketPath: exp.socketPath, exportName: exp.exportName, dirtyContext: exp.bitmapContext };
}

/**
 * A connection to a source disk's export that can map its allocation and, for an incremental
 * disk, the blocks changed since the base checkpoint (the dirty bitmap's meta context).
 */
export function connectSourceDisk(
  d: Pick<SourceDisk, 'socketPath' | 'exportName' | 'dirtyContext'>,
  log: Logger,
): Promise<NbdClient> {
  return NbdClient.connect({
    socketPath: d.socketPath,
    exportName: d.exportName,
    metaContexts: d.dirtyContext ? [CONTEXT_BASE_ALLOCATION, d.dirtyContext] : [CONTEXT_BASE_ALLOCATION],
    log,
  });
}

/** The export of `disk` in a pull-mode backup job; a disk it lacks means the domain changed. */
export function backupExport(
  job: BackupJob,
  server: string,
  disk: string,
  then: string,
): BackupJob['exports'][number] {
  const exp = job.exports.find((e) => e.disk === disk);
  if (!exp) {
    throw new EngineError('ENGINE_SOURCE_CHANGED', `the backup of ${server} does not export ${disk}`, {
      kind: 'conflict',
      hint: `The server’s disks changed${then}`,
      details: { server, disk },
    });
  }
  return exp;
}

export type SourceKind = 'live' | 'shutdown' | 'offline' | 'reused';

export interface Source {
  kind: SourceKind;
  /** The checkpoint created at this instant: the generation's point in time. */
  pointInTime: string;
  takenAt: Date;
  /** The checkpoint the dirty maps are relative to, when any disk is incremental. */
  incrementalFrom: string | undefined;
  /** Guest filesystems were frozen through the agent at the instant of the copy. */
  quiesced: boolean;
  disks: SourceDisk[];
  /**
   * The source holds only what its incremental disks changed (a staged copy, stage.ts): those
   * disks cannot be read whole, so a checksum resync needs a new point in time.
   */
  partial?: boolean;
  /** The backup socket (live sources), recorded so a crashed run's successor can reuse the job. */
  socketPath: string | undefined;
  /** Ends the backup job or stops the exports. Safe to call twice. */
  release(): Promise<void>;
}

export interface BaseCheckpoint {
  name: string;
  /** Targets whose bitmap for it is present and consistent. */
  disks: ReadonlySet<string>;
}

export interface SourceRequest {
  virsh: Virsh;
  server: Server;
  disks: ProtectedDisk[];
  /** The checkpoint the target's newest generation came from, when it can be trusted. */
  base: BaseCheckpoint | undefined;
  /** Disk name → size in the target's newest generation (absent: no generation). */
  previous: ReadonlyMap<string, number>;
  consistency: 'live' | 'shutdown';
  runDir: string;
  /** A job left running by a crashed run of this server to this target, to continue. */
  reuse?: { checkpoint: string; socketPath: string };
  /** Freeze guest filesystems through the agent (default true). */
  quiesce?: boolean;
  shutdownTimeoutMs?: number;
  log: Logger;
}

/** How a disk is read, given what the target holds and what the export offers. */
export function diskMode(
  disk: ProtectedDisk,
  previous: ReadonlyMap<string, number>,
  incremental: boolean,
): PlanMode {
  const before = previous.get(disk.name);
  if (before === undefined) return 'full';
  // A resized disk is compared whole: the bitmap does not describe the size change.
  return incremental && before === disk.size ? 'incremental' : 'resync';
}

/**
 * Socket names are short and unique: a unix socket path holds at most 107 bytes, and server
 * names may be 100 characters long.
 */
function socketPathFor(runDir: string, server: string, what: string): string {
  const h = createHash('sha256').update(`${server}\0${what}\0${process.pid}\0${Date.now()}`).digest('hex');
  return join(ensureRunDir(runDir, 'nbd'), `${server.slice(0, 16)}-${h.slice(0, 12)}.sock`);
}

function fromJob(req: SourceRequest, job: BackupJob): SourceDisk[] {
  return req.disks.map((d) => {
    const exp = backupExport(job, req.server.name, d.target, ' while a backup was running; run again.');
    const incremental = exp.mode === 'incremental' && exp.bitmapContext !== undefined;
    return {
      ...d,
      socketPath: job.socketPath,
      exportName: exp.exportName,
      dirtyContext: incremental ? exp.bitmapContext : undefined,
      mode: diskMode(d, req.previous, incremental),
    };
  });
}

async function beginBackup(req: SourceRequest, checkpoint: string, quiesce: boolean): Promise<BackupJob> {
  const { virsh, log } = req;
  const domain = req.server.name;
  const socketPath = socketPathFor(req.runDir, domain, checkpoint);
  const scratchDir = ensureRunDir(req.runDir, 'scratch');
  // No backup job runs (acquireSource ended a stale one) and this run holds the server.
  const stale = removeStaleScratch(domain, scratchDir);
  if (stale.length) log.info('removed scratch files a crashed backup left behind', { files: stale });
  const targets = req.disks.map((d) => d.target);
  let frozen = false;
  if (quiesce) {
    const f = await freeze(virsh, domain, { timeoutMs: 5000 });
    frozen = f.agent;
    if (f.agent) log.verbose('guest filesystems frozen', { frozen: f.frozen });
    else log.verbose('no guest agent: crash-consistent copy', { reason: f.reason });
  }
  try {
    try {
      return await backupBegin(virsh, domain, {
        checkpointName: checkpoint,
        incrementalFrom: req.base?.name,
        socketPath,
        scratchDir,
        disks: targets,
        log,
      });
    } catch (e) {
      if (!(req.base && needsResync(e))) throw e;
      log.warn('the base checkpoint’s bitmaps are broken: checksum resync', {
        checkpoint: req.base.name,
        err: e,
      });
      req.base = undefined;
      return await backupBegin(virsh, domain, {
        checkpointName: checkpoint,
        socketPath,
        scratchDir,
        disks: targets,
        log,
      });
    }
  } finally {
    if (frozen) {
      const t = await thaw(virsh, domain, { timeoutMs: 10_000 });
      if (!t.agent) log.warn('guest agent did not answer the thaw', { reason: t.reason });
    }
  }
}

async function liveSource(req: SourceRequest, kind: 'live' | 'shutdown'): Promise<Source> {
  const checkpoint = newCheckpointName();
  // Only a running guest's agent can freeze anything (a paused one cannot even answer).
  const quiesce = kind === 'live' && req.quiesce !== false && req.server.state === 'running';
  const job = await beginBackup(req, checkpoint, quiesce);
  const takenAt = new Date();
  const release = once(() => backupEnd(req.virsh, req.server.name).then(() => {}));
  try {
    return {
      kind,
      pointInTime: checkpoint,
      takenAt,
      incrementalFrom: job.incrementalFrom,
      quiesced: kind === 'shutdown',
      disks: fromJob(req, job),
      socketPath: job.socketPath,
      release,
    };
  } catch (e) {
    await release();
    throw e;
  }
}

async function reusedSource(req: SourceRequest, job: BackupJob, checkpoint: string): Promise<Source> {
  const cp = await getCheckpoint(req.virsh, req.server.name, checkpoint);
  req.log.info('continuing the backup a previous run left running', { checkpoint, socket: job.socketPath });
  return {
    kind: 'reused',
    pointInTime: checkpoint,
    takenAt: cp.creationTime,
    incrementalFrom: job.incrementalFrom,
    quiesced: false,
    disks: fromJob(req, job),
    socketPath: job.socketPath,
    release: once(() => backupEnd(req.virsh, req.server.name).then(() => {})),
  };
}

async function shutdownSource(req: SourceRequest): Promise<Source> {
  const { virsh, log } = req;
  const domain = req.server.name;
  if (!req.server.persistent) {
    throw new EngineError(
      'ENGINE_TRANSIENT_SHUTDOWN',
      `${domain} is transient: shutting it down would remove it`,
      {
        kind: 'refused',
        hint: 'Use consistency: live for transient servers, or define the server persistently.',
        details: { server: domain },
      },
    );
  }
  log.info('shutting the server down for a shutdown-consistent copy', { server: domain });
  const r = await shutdownDomain(virsh, domain, { timeoutMs: req.shutdownTimeoutMs ?? 300_000 });
  if (!r.stopped) {
    throw new EngineError(
      'ENGINE_SHUTDOWN_TIMEOUT',
      `${domain} did not shut down within ${Math.round(r.waitedMs / 1000)} s`,
      {
        kind: 'unavailable',
        hint: 'The guest ignored the shutdown request and is still running; check it, or use consistency: live.',
        details: { server: domain, state: r.state },
      },
    );
  }
  // Start it paused, take the point in time, let it run: downtime is one shutdown and one boot.
  await startDomain(virsh, domain, { paused: true });
  try {
    return await liveSource(req, 'shutdown');
  } finally {
    await resumeDomain(virsh, domain);
    log.info('server started again', { server: domain });
  }
}

async function offlineSource(req: SourceRequest): Promise<Source> {
  const { virsh, log } = req;
  const domain = req.server.name;
  const checkpoint = newCheckpointName();
  const existing = await listCheckpoints(virsh, domain);
  const qcow2 = req.disks.filter((d) => d.format === 'qcow2');
  // The new checkpoint's bitmaps must exist before the data is read: the image cannot change
  // while qemu-nbd holds it (QEMU needs the write lock to start the domain).
  await createOfflineCheckpoint(virsh, domain, {
    name: checkpoint,
    disks: qcow2.map((d) => ({ target: d.target, path: d.path })),
    parent: existing[existing.length - 1]?.name,
    log,
  });
  const exports: ImageExport[] = [];
  const stop = once(async () => {
    await Promise.allSettled(exports.map((e) => e.stop()));
  });
  try {
    const disks: SourceDisk[] = [];
    for (const d of req.disks) {
      const bitmap = req.base?.disks.has(d.target) ? req.base.name : undefined;
      const exp = await exportImage({
        path: d.path,
        format: d.format,
        socketPath: socketPathFor(req.runDir, domain, d.target),
        exportName: d.target,
        bitmap,
        readOnly: true,
        log,
      });
      exports.push(exp);
      disks.push({ ...servedBy(d, exp), mode: diskMode(d, req.previous, exp.bitmapContext !== undefined) });
    }
    return {
      kind: 'offline',
      pointInTime: checkpoint,
      takenAt: new Date(),
      incrementalFrom: req.base?.name,
      quiesced: true,
      disks,
      socketPath: undefined,
      release: stop,
    };
  } catch (e) {
    await stop();
    // Nothing was read at the checkpoint made above (the base's bitmap is missing or spoiled,
    // after a crash): delete it, or it would stay, its bitmaps recording every later guest write,
    // with no caller knowing its name (the retry without a base makes a checkpoint of its own).
    await deleteCheckpoint(virsh, domain, checkpoint, { log }).catch((err) =>
      log.warn('could not delete the checkpoint of a failed offline read', { checkpoint, err }),
    );
    throw e;
  }
}

/**
 * Takes the point in time. A backup job on the domain that is not the one `reuse` names is
 * ended first when it is one of ours (its socket is in our run directory), and refused when it
 * is someone else's.
 */
export async function acquireSource(req: SourceRequest): Promise<Source> {
  const domain = req.server.name;
  const state = req.server.state;
  if (state === 'shut off' || state === 'crashed') return offlineSource(req);
  const job = await activeBackup(req.virsh, domain);
  if (job) {
    if (req.reuse && job.socketPath === req.reuse.socketPath)
      return reusedSource(req, job, req.reuse.checkpoint);
    if (!job.socketPath.startsWith(req.runDir)) {
      throw new EngineError('ENGINE_FOREIGN_BACKUP', `another backup job is running on ${domain}`, {
        kind: 'conflict',
        hint: 'Another tool is backing this server up; wait for it to finish (virsh domjobinfo) and run again.',
        details: { server: domain, socket: job.socketPath },
      });
    }
    req.log.info('ending a stale backup job left by an earlier run', { socket: job.socketPath });
    await backupEnd(req.virsh, domain);
  }
  if (req.consistency === 'shutdown') return shutdownSource(req);
  return liveSource(req, 'live');
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => {
    p ??= fn();
    return p;
  };
}
