/**
 * Prometheus metrics at /metrics (prom-client, a registry of its own). Values are read from the
 * catalog at each scrape, so they are the same whoever ran the copies (the daemon, `haven job
 * run`, `haven protect`):
 *
 * per server and target: newest good copy time, RPO age and objective (and whether it is
 * breached), bytes sent, duration, time and result of the last run; per job: failed runs, the
 * last run's result, whether one is running, the next scheduled run.
 */
import client from 'prom-client';
import type { Catalog, Run } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { statusRows } from '../jobs/index.ts';

export interface MetricsOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  /** Job → servers it selects (refreshed by the daemon). */
  selections: () => Map<string, string[]>;
  running: (job: string) => boolean;
  nextRun: (job: string) => Date | null;
}

const seconds = (ms: number) => ms / 1000;

/**
 * haven_job_failures_total as a counter must never go down, but retention deletes old runs from
 * the catalog. So each job's count starts from the catalog at the first scrape and then only adds
 * runs that failed since, remembered by id: ids below the oldest run still going are settled and
 * collapse into the count, so what is held stays small (the runs since the oldest one running).
 */
export class FailureCounts {
  private readonly jobs = new Map<string, { total: number; settledThrough: number; counted: Set<number> }>();

  /** The job's failure count given its runs in the catalog now (newest first, any order works). */
  count(job: string, runs: readonly Run[]): number {
    const failed = (r: Run) => r.status === 'failed' || r.status === 'partial';
    let s = this.jobs.get(job);
    if (!s) {
      // At first sight the catalog's history is the starting value.
      s = { total: 0, settledThrough: 0, counted: new Set() };
      this.jobs.set(job, s);
    }
    const state = s;
    for (const r of runs) if (r.id > state.settledThrough && failed(r)) state.counted.add(r.id);
    const running = runs
      .filter((r) => r.status === 'running' && r.id > state.settledThrough)
      .map((r) => r.id);
    const settled =
      (running.length > 0 ? Math.min(...running) : runs.reduce((m, r) => Math.max(m, r.id), 0) + 1) - 1;
    for (const id of state.counted) {
      if (id <= settled) {
        state.total++;
        state.counted.delete(id);
      }
    }
    state.settledThrough = Math.max(state.settledThrough, settled);
    return state.total + state.counted.size;
  }
}

export interface Metrics {
  contentType: string;
  /** Reads the catalog and renders the exposition text. */
  scrape(): Promise<string>;
}

export function createMetrics(o: MetricsOptions): Metrics {
  const registry = new client.Registry();
  const pair = ['server', 'target'] as const;
  const g = (name: string, help: string, labelNames: readonly string[]) =>
    new client.Gauge({ name, help, labelNames, registers: [registry] });

  const lastGood = g(
    'haven_server_last_good_copy_timestamp_seconds',
    'Point in time of the newest good copy (unix time).',
    pair,
  );
  const rpoAge = g(
    'haven_server_rpo_age_seconds',
    'Age of the newest good copy, against the RPO objective.',
    [...pair, 'job'],
  );
  const rpoObjective = g(
    'haven_server_rpo_objective_seconds',
    'The RPO objective of the job protecting the pair.',
    [...pair, 'job'],
  );
  const rpoBreached = g(
    'haven_server_rpo_breached',
    '1 when the newest good copy is older than the objective (or there is none).',
    [...pair, 'job'],
  );
  const bytesSent = g('haven_server_last_run_bytes_sent', 'Bytes sent on the wire by the last run.', pair);
  const duration = g('haven_server_last_run_duration_seconds', 'Duration of the last run.', pair);
  const lastRunAt = g(
    'haven_server_last_run_timestamp_seconds',
    'When the last run of the pair finished (unix time).',
    pair,
  );
  const lastOk = g(
    'haven_server_last_run_success',
    '1 when the last run of the pair succeeded, else 0.',
    pair,
  );
  const failures = new FailureCounts();
  const jobFailures = new client.Counter({
    name: 'haven_job_failures_total',
    help: 'Runs of the job that failed or partly failed (in the catalog).',
    labelNames: ['job'],
    registers: [registry],
  });
  const jobLastOk = g('haven_job_last_run_success', '1 when the job’s last finished run was ok.', ['job']);
  const jobRunning = g('haven_job_running', '1 while a run of the job is going.', ['job']);
  const jobNext = g('haven_job_next_run_timestamp_seconds', 'Next scheduled run of the job (unix time).', [
    'job',
  ]);
  const problems = g('haven_open_problems', 'Problems open now (what alerts are about).', []);
  // Continuous protection (docs/continuous.md): per lane, from the catalog's continuous_lanes.
  const lag = g(
    'haven_continuous_lag_seconds',
    'Continuous protection: age of the newest point the target acknowledged.',
    pair,
  );
  const pending = g(
    'haven_continuous_pending_bytes',
    'Continuous protection: bytes the target still lacks.',
    pair,
  );
  const laneState = g(
    'haven_continuous_lane_state',
    '1 for the lane’s state (syncing, resyncing, behind, disconnected, refused, …).',
    [...pair, 'state'],
  );

  // Everything is recomputed at scrape time from the catalog.
  const refresh = () => {
    const config = o.config();
    const rows = statusRows({ config, catalog: o.catalog, selections: o.selections() });
    for (const m of [lastGood, rpoAge, rpoObjective, rpoBreached, bytesSent, duration, lastRunAt, lastOk])
      m.reset();
    jobFailures.reset();
    jobLastOk.reset();
    jobRunning.reset();
    jobNext.reset();
    for (const r of rows) {
      const p = { server: r.server, target: r.target };
      const j = { ...p, job: r.job ?? '' };
      if (r.lastGoodAt) lastGood.set(p, seconds(r.lastGoodAt.getTime()));
      if (r.ageMs !== null) rpoAge.set(j, seconds(r.ageMs));
      if (r.rpoMs !== null) {
        rpoObjective.set(j, seconds(r.rpoMs));
        rpoBreached.set(j, r.rpo === 'ok' ? 0 : 1);
      }
      if (r.lastBytesSent !== null) bytesSent.set(p, r.lastBytesSent);
      if (r.lastDurationMs !== null) duration.set(p, seconds(r.lastDurationMs));
      if (r.lastRunAt) lastRunAt.set(p, seconds(r.lastRunAt.getTime()));
      if (r.lastResult) lastOk.set(p, r.lastResult === 'ok' ? 1 : 0);
    }
    for (const job of Object.values(config.jobs)) {
      const runs = o.catalog.runs.list({ kind: 'job', job: job.name, limit: 10_000 });
      jobFailures.inc({ job: job.name }, failures.count(job.name, runs));
      const last = runs.find((r) => r.status !== 'running');
      if (last) jobLastOk.set({ job: job.name }, last.status === 'ok' ? 1 : 0);
      jobRunning.set({ job: job.name }, o.running(job.name) ? 1 : 0);
      const next = o.nextRun(job.name);
      if (next) jobNext.set({ job: job.name }, seconds(next.getTime()));
    }
    problems.set(o.catalog.events.openProblems().length);
    for (const m of [lag, pending, laneState]) m.reset();
    const now = Date.now();
    for (const l of o.catalog.continuous.lanes()) {
      const p = { server: l.server, target: l.target };
      if (l.lastPointAt) lag.set(p, seconds(Math.max(0, now - l.lastPointAt.getTime())));
      pending.set(p, l.pendingBytes);
      laneState.set({ ...p, state: l.state }, 1);
    }
  };
  return {
    contentType: registry.contentType,
    scrape: async () => {
      refresh();
      return registry.metrics();
    },
  };
}
