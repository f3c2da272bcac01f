/**
 * What the dashboard's charts and tiles show, computed from the catalog (docs/daemon.md,
 * "Dashboard"): series over a window of days, and a summary of the state now. Pure reads; the
 * routes are in dashboard-routes.ts. Times in series are unix seconds (what charting libraries
 * take); everything else in the API stays ISO 8601.
 */
import type { Catalog, HistoryResult } from '../catalog/catalog.ts';
import type { StatusRow } from '../jobs/index.ts';

const sec = (d: Date) => d.getTime() / 1000;

/** The age of a pair's newest good copy over the window, against its objective. */
export interface RpoSeries {
  server: string;
  target: string;
  job: string | null;
  objectiveSeconds: number | null;
  /** [t, age]: the age grows linearly between points and drops at each good copy. */
  points: Array<[number, number]>;
}

export interface RunPoint {
  at: number;
  runId: number;
  status: string;
  mode: string | null;
  bytesRead: number;
  bytesSent: number;
  durationSeconds: number | null;
  /** Bytes sent on the wire per second of the copy (null without a duration). */
  throughput: number | null;
}

export interface DrillPoint {
  at: number;
  runId: number;
  drill: string | null;
  result: 'pass' | 'fail';
  /** The measured recovery time (start to boot marker); for a failure, how long it tried. */
  recoverySeconds: number | null;
  generationId: string | null;
}

export interface CapacityPoint {
  at: number;
  totalBytes: number;
  freeBytes: number;
  usedBytes: number;
}

export interface HistoryView {
  from: string;
  to: string;
  rpo: RpoSeries[];
  runs: Array<{ server: string; target: string; points: RunPoint[] }>;
  drills: Array<{ server: string; store: string; points: DrillPoint[] }>;
  capacity: Array<{ target: string; points: CapacityPoint[] }>;
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const i of items) {
    const k = key(i);
    const list = out.get(k);
    if (list) list.push(i);
    else out.set(k, [i]);
  }
  return out;
}

const pairKey = (r: { server: string; target: string }) => `${r.server}\u0000${r.target}`;

/**
 * The sawtooth of one pair: at the window's start the age of the copy made before it, at each
 * good copy the age just before (the previous copy's) and just after, and the age now. The point
 * before a drop is 1 ms earlier so times stay strictly increasing.
 */
export function ageSeries(
  before: Date | null,
  copies: readonly HistoryResult[],
  from: Date,
  now: Date,
): Array<[number, number]> {
  const points: Array<[number, number]> = [];
  let newest = before;
  if (newest) points.push([sec(from), sec(from) - sec(newest)]);
  for (const c of copies) {
    if (c.status !== 'ok' || !c.finishedAt) continue;
    const good = c.copyAt ?? c.finishedAt;
    const at = sec(c.finishedAt);
    if (newest) points.push([at - 0.001, at - 0.001 - sec(newest)]);
    if (!newest || good > newest) newest = good;
    points.push([at, at - sec(newest)]);
  }
  if (newest) points.push([sec(now), sec(now) - sec(newest)]);
  return points;
}

export function historyView(o: {
  catalog: Catalog;
  rows: readonly StatusRow[];
  from: Date;
  now: Date;
}): HistoryView {
  const { catalog, from, now } = o;
  const copies = groupBy(catalog.history.copies({ since: from }), pairKey);
  const before = new Map(catalog.history.goodCopiesBefore(from).map((g) => [pairKey(g), g.goodAt]));
  const rowOf = new Map(o.rows.map((r) => [pairKey(r), r]));
  const pairs = [...new Set([...rowOf.keys(), ...copies.keys()])].sort();
  const rpo: RpoSeries[] = pairs.map((key) => {
    const [server, target] = key.split('\u0000') as [string, string];
    const row = rowOf.get(key);
    return {
      server,
      target,
      job: row?.job ?? null,
      objectiveSeconds: row?.rpoMs ? row.rpoMs / 1000 : null,
      points: ageSeries(before.get(key) ?? null, copies.get(key) ?? [], from, now),
    };
  });
  const runs = [...copies].map(([, list]) => ({
    server: list[0]!.server,
    target: list[0]!.target,
    points: list.map((r) => {
      const seconds = r.durationMs === null ? null : r.durationMs / 1000;
      return {
        at: sec(r.finishedAt ?? r.startedAt),
        runId: r.runId,
        status: r.status,
        mode: r.mode,
        bytesRead: r.bytesRead,
        bytesSent: r.bytesSent,
        durationSeconds: seconds,
        throughput: seconds ? r.bytesSent / seconds : null,
      };
    }),
  }));
  const drills = [...groupBy(catalog.history.drills({ since: from }), pairKey)].map(([, list]) => ({
    server: list[0]!.server,
    store: list[0]!.target,
    points: list.map((d) => ({
      at: sec(d.finishedAt ?? d.startedAt),
      runId: d.runId,
      drill: d.job,
      result: d.status === 'ok' ? ('pass' as const) : ('fail' as const),
      recoverySeconds: d.durationMs === null ? null : d.durationMs / 1000,
      generationId: d.generationId,
    })),
  }));
  const capacity = [...groupBy(catalog.history.capacity({ since: from }), (r) => r.target)].map(
    ([target, list]) => ({
      target,
      points: list.map((r) => ({
        at: sec(r.finishedAt ?? r.startedAt),
        totalBytes: r.storeTotalBytes!,
        freeBytes: r.storeFreeBytes!,
        usedBytes: r.storeTotalBytes! - r.storeFreeBytes!,
      })),
    }),
  );
  return { from: from.toISOString(), to: now.toISOString(), rpo, runs, drills, capacity };
}

export type PairState = 'protected' | 'at-risk' | 'failing';

/** The share of the objective after which a pair that is still within it counts as at risk. */
export const AT_RISK_SHARE = 0.8;

/**
 * failing: its objective is missed (older than the objective, or never copied), or, without an
 * objective, it has no good copy; at risk: within the objective but its continuous lane does not
 * replicate (refused, disconnected, stopped: its lag only grows), the last copy did not succeed,
 * or 80 % of the objective is used up; protected: the rest.
 */
export function pairState(r: StatusRow): { state: PairState; reason: string } {
  if (r.rpo === 'breached') return { state: 'failing', reason: 'newest good copy older than the objective' };
  if (r.rpo === 'never' || (r.rpo === 'none' && !r.lastGoodAt))
    return { state: 'failing', reason: 'never copied' };
  const lane = r.lane?.state;
  if (lane === 'refused' || lane === 'disconnected' || lane === 'stopped')
    return { state: 'at-risk', reason: `continuous replication ${lane}` };
  if (r.lastResult && r.lastResult !== 'ok' && r.lastResult !== 'running')
    return { state: 'at-risk', reason: `last copy ${r.lastResult}` };
  if (r.rpoMs !== null && r.ageMs !== null && r.ageMs > AT_RISK_SHARE * r.rpoMs)
    return { state: 'at-risk', reason: 'most of the objective used up' };
  return { state: 'protected', reason: 'within its objective' };
}

const RANK: Record<PairState, number> = { protected: 0, 'at-risk': 1, failing: 2 };

export interface Summary {
  /** Servers by the worst state of their targets. */
  servers: { total: number; protected: number; atRisk: number; failing: number };
  pairs: Array<{ server: string; target: string; state: PairState; reason: string }>;
  openProblems: number;
  running: number;
  /** Per server and drill, the last result. */
  drills: { passing: number; failing: number };
  /** Each target's newest report of its space. */
  targets: Array<{ target: string; at: string; totalBytes: number; freeBytes: number }>;
}

export function summary(o: {
  catalog: Catalog;
  rows: readonly StatusRow[];
  running: number;
  now: Date;
  drillWindowDays?: number;
}): Summary {
  const pairs = o.rows.map((r) => ({ server: r.server, target: r.target, ...pairState(r) }));
  const worst = new Map<string, PairState>();
  for (const p of pairs) {
    const w = worst.get(p.server);
    if (!w || RANK[p.state] > RANK[w]) worst.set(p.server, p.state);
  }
  const states = [...worst.values()];
  const since = new Date(o.now.getTime() - (o.drillWindowDays ?? 400) * 86_400_000);
  const lastDrill = new Map<string, boolean>();
  for (const d of o.catalog.history.drills({ since }))
    lastDrill.set(`${d.job}\u0000${d.server}`, d.status === 'ok');
  const lastCapacity = new Map<string, HistoryResult>();
  for (const c of o.catalog.history.capacity({ since })) lastCapacity.set(c.target, c);
  return {
    servers: {
      total: states.length,
      protected: states.filter((s) => s === 'protected').length,
      atRisk: states.filter((s) => s === 'at-risk').length,
      failing: states.filter((s) => s === 'failing').length,
    },
    pairs,
    openProblems: o.catalog.events.openProblems().length,
    running: o.running,
    drills: {
      passing: [...lastDrill.values()].filter(Boolean).length,
      failing: [...lastDrill.values()].filter((ok) => !ok).length,
    },
    targets: [...lastCapacity.values()].map((c) => ({
      target: c.target,
      at: (c.finishedAt ?? c.startedAt).toISOString(),
      totalBytes: c.storeTotalBytes!,
      freeBytes: c.storeFreeBytes!,
    })),
  };
}
