/**
 * Continuous protection as runs use it (docs/continuous.md): `haven protect --continuous` and
 * the daemon's `mode: continuous` jobs. This layer gives the engine's protector its targets (a
 * session factory per target, as periodic runs use), keeps its state in the catalog (the intent
 * log survives a killed process), records each lane's newest point as the pair's newest good copy
 * (so `haven status`, the dashboard and /metrics show its age), and raises `rpo.breached` the
 * moment a lane's lag passes the job's objective, `rpo.recovered` when it is back within it.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../core/log.ts';
import { formatDuration } from '../core/units.ts';
import {
  type ContinuousStateStore,
  type LaneRecord,
  Protector,
  type ProtectorStatus,
  type SavedProtection,
} from '../engine/continuous/index.ts';
import type { Virsh } from '../engine/index.ts';
import type { GenerationIds } from '../store/types.ts';
import { dedupKeys, type EventLog } from './events.ts';
import { senderFactory } from './sender.ts';
import type { ResolvedTarget } from './targets.ts';

export interface ContinuousOptions {
  server: string;
  targets: ResolvedTarget[];
  virsh: Virsh;
  runDir: string;
  catalog: Catalog;
  /** The job's name, or 'manual' for `haven protect --continuous`. */
  job: string;
  copies: number;
  intervalMs: number;
  windowMs: number;
  segmentBytes: number;
  /** The job's objective: an alert when a lane's lag passes it. */
  rpoMs?: number;
  /** Whether a generation is due (the job's schedule). */
  cutDue?: () => boolean;
  events?: EventLog;
  overwrite?: boolean;
  signal: AbortSignal;
  log: Logger;
  onStatus?: (s: ProtectorStatus) => void;
}

/**
 * The engine's state store over the catalog's continuous tables. Its records carry `pid`, the
 * protecting process, by which status tells a live lane from one left behind (lane-status.ts).
 */
export function catalogState(catalog: Catalog, job: string, pid = process.pid): ContinuousStateStore {
  const laneInput = (r: LaneRecord) => ({
    target: r.target,
    storeId: r.storeId,
    state: r.state,
    record: r,
    pendingBytes: r.pendingBytes,
    lastPointId: r.lastPoint?.id ?? null,
    lastPointAt: r.lastPoint ? new Date(r.lastPoint.takenAt) : null,
    errorCode: r.error?.code ?? null,
    errorMessage: r.error?.message ?? null,
  });
  return {
    load(server: string): SavedProtection | null {
      const s = catalog.continuous.server(server);
      const lanes = catalog.continuous.lanes(server);
      if (!s && lanes.length === 0) return null;
      return {
        ids: (s?.ids as GenerationIds | null) ?? null,
        checkpoint: s?.checkpoint ?? null,
        lanes: lanes.map((l) => l.record as LaneRecord),
      };
    },
    saveCycle(server: string, p: SavedProtection): void {
      catalog.continuous.saveCycle(
        { server, ids: p.ids, checkpoint: p.checkpoint, job, pid },
        p.lanes.map(laneInput),
      );
    },
    saveLane(server: string, lane: LaneRecord): void {
      catalog.continuous.saveLane(server, laneInput(lane), pid);
    },
  };
}

/** Keeps each pair's newest good copy and its objective in step with the lanes. */
class PointRecorder {
  private readonly seen = new Map<string, string>();
  private readonly breached = new Set<string>();

  constructor(private readonly o: ContinuousOptions) {}

  update(s: ProtectorStatus): void {
    for (const l of s.lanes) {
      const p = l.lastPoint;
      if (p && this.seen.get(l.target) !== p.id) {
        this.seen.set(l.target, p.id);
        this.o.catalog.status.notePoint(s.server, l.target, this.o.job, new Date(p.takenAt), p.id);
      }
      this.objective(s.server, l.target, l.lagMs, l.state);
    }
  }

  private objective(server: string, target: string, lagMs: number | null, state: string): void {
    const { rpoMs, events } = this.o;
    if (rpoMs === undefined || !events) return;
    const key = dedupKeys.rpo(server, target);
    const late = lagMs === null || lagMs > rpoMs;
    if (late && !this.breached.has(key) && lagMs !== null) {
      this.breached.add(key);
      if (events.catalog.events.openProblem(key)) return;
      events.emit({
        type: 'rpo.breached',
        severity: 'error',
        server,
        target,
        job: this.o.job,
        message: `${server} → ${target}: continuous replication is ${formatDuration(lagMs)} behind (${state}), beyond the objective of ${formatDuration(rpoMs)}`,
        data: { rpoMs, ageMs: lagMs, state },
        dedupKey: key,
      });
    } else if (!late && lagMs !== null) {
      this.breached.delete(key);
      events.resolve(key, {
        type: 'rpo.recovered',
        severity: 'info',
        server,
        target,
        job: this.o.job,
        message: `${server} → ${target}: continuous replication is within the objective of ${formatDuration(rpoMs)} again (${formatDuration(lagMs)} behind)`,
      });
    }
  }
}

/** Protects one server continuously until `signal` aborts. */
export async function protectContinuously(o: ContinuousOptions): Promise<ProtectorStatus> {
  const recorder = new PointRecorder(o);
  const protector = new Protector({
    server: o.server,
    virsh: o.virsh,
    runDir: o.runDir,
    targets: o.targets.map((t) => ({
      name: t.name,
      storePath: t.endpoint.kind === 'tls' ? t.url : t.endpoint.path,
      connect: senderFactory(t, { log: o.log, receiveArgs: t.receiveArgs }),
      bandwidth: t.bandwidth,
    })),
    job: o.job,
    copies: o.copies,
    intervalMs: o.intervalMs,
    windowMs: o.windowMs,
    segmentBytes: o.segmentBytes,
    state: catalogState(o.catalog, o.job),
    overwrite: o.overwrite,
    cutDue: o.cutDue,
    signal: o.signal,
    log: o.log,
    onStatus: (s) => {
      try {
        recorder.update(s);
      } catch (e) {
        o.log.warn('could not record continuous status', { err: e });
      }
      o.onStatus?.(s);
    },
  });
  return protector.run();
}
