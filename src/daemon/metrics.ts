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
import type { Catalog } from '../catalog/catalog.ts';
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
      jobFailures.inc(
        { job: job.name },
        runs.filter((r) => r.status === 'failed' || r.status === 'partial').length,
      );
      const last = runs.find((r) => r.status !== 'running');
      if (last) jobLastOk.set({ job: job.name }, last.status === 'ok' ? 1 : 0);
      jobRunning.set({ job: job.name }, o.running(job.name) ? 1 : 0);
      const next = o.nextRun(job.name);
      if (next) jobNext.set({ job: job.name }, seconds(next.getTime()));
    }
    problems.set(o.catalog.events.openProblems().length);
  };
  return {
    contentType: registry.contentType,
    scrape: async () => {
      refresh();
      return registry.metrics();
    },
  };
}
