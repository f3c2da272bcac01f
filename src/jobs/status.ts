/**
 * The state of protection at a glance, one row per (server, target): the newest good copy, its
 * age against the recovery point objective, the next scheduled run and how the last one went.
 * `haven status`, the daemon's API, its /metrics and the RPO checks all read these rows.
 *
 * The pairs are every server a job selects (when the host's server list is at hand) times the
 * job's targets, plus every pair the catalog has a status for (ad hoc copies, servers that
 * vanished), plus every continuous lane (one that has not acknowledged a point yet has no status).
 * A server in several jobs to the same target is held to the strictest objective. A pair
 * protected continuously carries its lane's state and lag (lane-status.ts); others have none.
 */
import type { Catalog, ServerStatus } from '../catalog/catalog.ts';
import { type HavenConfig, nextRun } from '../core/config.ts';
import { type LaneStatus, laneStatus } from './lane-status.ts';

export type RpoState = 'ok' | 'breached' | 'never' | 'none';

export interface StatusRow {
  server: string;
  target: string;
  /** The job that holds the pair to its objective (or the one that last copied it). */
  job: string | null;
  lastGoodAt: Date | null;
  lastGoodGeneration: string | null;
  rpoMs: number | null;
  /** Age of the newest good copy at `now`; null when there is none. */
  ageMs: number | null;
  rpo: RpoState;
  nextRun: Date | null;
  lastResult: string | null;
  lastRunAt: Date | null;
  lastRunId: number | null;
  lastMode: string | null;
  lastBytesSent: number | null;
  lastDurationMs: number | null;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  /** The continuous lane of the pair (null: protected periodically only). */
  lane: LaneStatus | null;
}

/** The next run of every scheduled job (null: on demand only, or never fires). */
export function nextRuns(config: HavenConfig, now: Date): Map<string, Date | null> {
  const out = new Map<string, Date | null>();
  for (const job of Object.values(config.jobs)) {
    out.set(job.name, job.schedule ? nextRun(job.schedule, config.timezone, now) : null);
  }
  return out;
}

export function rpoState(rpoMs: number | null, lastGoodAt: Date | null, now: Date): RpoState {
  if (rpoMs === null) return 'none';
  if (!lastGoodAt) return 'never';
  return now.getTime() - lastGoodAt.getTime() > rpoMs ? 'breached' : 'ok';
}

export interface StatusOptions {
  config: HavenConfig;
  catalog: Catalog;
  /** Job → the servers it selects now; without it only the catalog's pairs are shown. */
  selections?: Map<string, string[]>;
  now?: Date;
  /** Whether a protector's process lives (default: a signal 0 to its pid). */
  isAlive?: (pid: number) => boolean;
}

export function statusRows(o: StatusOptions): StatusRow[] {
  const now = o.now ?? new Date();
  const next = nextRuns(o.config, now);
  const pairs = new Map<string, { server: string; target: string; jobs: string[] }>();
  const add = (server: string, target: string, job: string | null) => {
    const key = `${server}\u0000${target}`;
    const p = pairs.get(key) ?? { server, target, jobs: [] };
    if (job && o.config.jobs[job]?.targets.includes(target) && !p.jobs.includes(job)) p.jobs.push(job);
    pairs.set(key, p);
  };
  for (const job of Object.values(o.config.jobs)) {
    for (const server of o.selections?.get(job.name) ?? []) {
      for (const target of job.targets) add(server, target, job.name);
    }
  }
  const statuses = new Map<string, ServerStatus>();
  for (const s of o.catalog.status.list()) {
    statuses.set(`${s.server}\u0000${s.target}`, s);
    add(s.server, s.target, s.job);
  }
  const lanes = new Map<string, LaneStatus>();
  const laneJobs = new Map<string, string | null>();
  for (const l of o.catalog.continuous.lanes()) {
    const key = `${l.server}\u0000${l.target}`;
    const job = o.catalog.continuous.server(l.server)?.job ?? null;
    lanes.set(key, laneStatus(l, now, o.isAlive));
    laneJobs.set(key, job);
    add(l.server, l.target, job);
  }
  const rows: StatusRow[] = [];
  for (const [key, p] of pairs) {
    const s = statuses.get(key);
    const objectives = p.jobs
      .map((j) => ({ job: j, rpo: o.config.jobs[j]?.rpoMs }))
      .filter((x): x is { job: string; rpo: number } => x.rpo !== undefined)
      .sort((a, b) => a.rpo - b.rpo);
    const strictest = objectives[0];
    const runs = p.jobs.map((j) => next.get(j)).filter((d): d is Date => d instanceof Date);
    const lastGoodAt = s?.lastGoodAt ?? null;
    const rpoMs = strictest?.rpo ?? null;
    rows.push({
      server: p.server,
      target: p.target,
      job: strictest?.job ?? p.jobs[0] ?? s?.job ?? laneJobs.get(key) ?? null,
      lastGoodAt,
      lastGoodGeneration: s?.lastGoodGeneration ?? null,
      rpoMs,
      ageMs: lastGoodAt ? now.getTime() - lastGoodAt.getTime() : null,
      rpo: rpoState(rpoMs, lastGoodAt, now),
      nextRun: runs.length ? new Date(Math.min(...runs.map((d) => d.getTime()))) : null,
      lastResult: s?.lastResult ?? null,
      lastRunAt: s?.lastRunAt ?? null,
      lastRunId: s?.lastRunId ?? null,
      lastMode: s?.lastMode ?? null,
      lastBytesSent: s?.lastBytesSent ?? null,
      lastDurationMs: s?.lastDurationMs ?? null,
      lastErrorCode: s?.lastErrorCode ?? null,
      lastErrorMessage: s?.lastErrorMessage ?? null,
      lane: lanes.get(key) ?? null,
    });
  }
  return rows.sort((a, b) =>
    a.server === b.server ? (a.target < b.target ? -1 : 1) : a.server < b.server ? -1 : 1,
  );
}
