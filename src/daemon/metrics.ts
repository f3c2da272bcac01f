/**
 * Prometheus metrics at /metrics (prom-client, a registry of its own). Values come from the
 * catalog, so they are the same whoever ran the copies (the daemon, `haven job run`, `haven
 * protect`): gauges of the state now are recomputed at each scrape (status rows, jobs, problems);
 * counters and histograms of what happened are fed once per finished run (metric-history.ts).
 *
 * The job label is `haven_job`: Prometheus gives every scraped series its own `job` label (the
 * scrape job), and a `job` of ours would arrive renamed to `exported_job`. docs/daemon.md
 * "Metrics" lists every metric with its type and labels.
 */
import client from 'prom-client';
import type { Catalog } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { packageVersion } from '../core/package-root.ts';
import { hostBackupAge } from '../hosts/index.ts';
import { laneStatus, statusRows } from '../jobs/index.ts';
import { runHistoryMetrics } from './metric-history.ts';

export { FinishedRuns } from './metric-history.ts';

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

/** Continuous protection (docs/continuous.md): per lane, from the catalog's continuous_lanes. */
function continuousGauges(registry: client.Registry, catalog: Catalog) {
  const g = (name: string, help: string, labelNames: readonly string[]) =>
    new client.Gauge({ name, help, labelNames, registers: [registry] });
  const pair = ['server', 'target'] as const;
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
  const state = g(
    'haven_continuous_lane_state',
    '1 for the lane’s state (syncing, resyncing, behind, disconnected, refused, …).',
    [...pair, 'state'],
  );
  return {
    refresh(): void {
      for (const m of [lag, pending, state]) m.reset();
      const now = new Date();
      for (const l of catalog.continuous.lanes()) {
        const p = { server: l.server, target: l.target };
        // The state now, as `haven status` shows it: a lane whose protector is gone is stopped.
        const s = laneStatus(l, now);
        if (s.lagMs !== null) lag.set(p, s.lagMs / 1000);
        pending.set(p, s.pendingBytes);
        state.set({ ...p, state: s.state }, 1);
      }
    },
  };
}

/** The gauges of each server and target's state now, from the status rows. */
function pairGauges(registry: client.Registry) {
  const g = (name: string, help: string, labelNames: readonly string[]) =>
    new client.Gauge({ name, help, labelNames, registers: [registry] });
  const pair = ['server', 'target'] as const;
  const held = [...pair, 'haven_job'] as const;
  return {
    lastGood: g(
      'haven_server_last_good_copy_timestamp_seconds',
      'Point in time of the newest good copy (unix time).',
      pair,
    ),
    rpoAge: g(
      'haven_server_rpo_age_seconds',
      'Age of the newest good copy, against the RPO objective.',
      held,
    ),
    rpoObjective: g(
      'haven_server_rpo_objective_seconds',
      'The RPO objective of the job protecting the pair.',
      held,
    ),
    rpoBreached: g(
      'haven_server_rpo_breached',
      '1 when the newest good copy is older than the objective (or there is none).',
      held,
    ),
    sent: g('haven_server_last_run_sent_bytes', 'Bytes sent on the wire by the last run.', pair),
    duration: g('haven_server_last_run_duration_seconds', 'Duration of the last run.', pair),
    lastRunAt: g(
      'haven_server_last_run_timestamp_seconds',
      'When the last run of the pair finished (unix time).',
      pair,
    ),
    lastOk: g('haven_server_last_run_success', '1 when the last run of the pair succeeded, else 0.', pair),
  };
}

/** The gauges of each configured host (docs/hosts.md): its newest backup's age and last results. */
function hostGauges(registry: client.Registry, catalog: Catalog) {
  const g = (name: string, help: string) =>
    new client.Gauge({ name, help, labelNames: ['host'], registers: [registry] });
  const age = g('haven_host_backup_age_seconds', 'Age of the host’s newest good backup archive.');
  const objective = g('haven_host_rpo_objective_seconds', 'The host’s `rpo` objective.');
  const lastOk = g('haven_host_last_backup_success', '1 when the host’s last finished backup was ok.');
  const drillOk = g('haven_host_last_drill_success', '1 when the host’s last finished drill passed.');
  return (config: HavenConfig) => {
    for (const m of [age, objective, lastOk, drillOk]) m.reset();
    for (const h of Object.values(config.hosts)) {
      const label = { host: h.name };
      const { ageMs } = hostBackupAge(catalog, h.name);
      if (ageMs !== null) age.set(label, seconds(ageMs));
      if (h.rpoMs !== undefined) objective.set(label, seconds(h.rpoMs));
      const backup = catalog.hostRuns.latest(h.name, 'backup').last;
      if (backup) lastOk.set(label, backup.status === 'ok' ? 1 : 0);
      const drill = catalog.hostRuns.latest(h.name, 'drill').last;
      if (drill) drillOk.set(label, drill.status === 'ok' ? 1 : 0);
    }
  };
}

/** Each configured scrub's last finished run (kind verify, job = its name). */
function scrubGauges(catalog: Catalog, config: HavenConfig, found: client.Gauge, at: client.Gauge): void {
  found.reset();
  at.reset();
  for (const sc of Object.values(config.scrubs)) {
    const last = catalog.runs
      .list({ kind: 'verify', job: sc.name, limit: 10 })
      .find((r) => r.status !== 'running');
    if (!last) continue;
    const label = { scrub: sc.name, store: sc.store };
    const n = Number((last.summary as { problems?: unknown } | null)?.problems);
    found.set(label, Number.isFinite(n) ? n : last.status === 'ok' ? 0 : 1);
    if (last.finishedAt) at.set(label, seconds(last.finishedAt.getTime()));
  }
}

export function createMetrics(o: MetricsOptions): Metrics {
  const registry = new client.Registry();
  const g = (name: string, help: string, labelNames: readonly string[]) =>
    new client.Gauge({ name, help, labelNames, registers: [registry] });
  g('haven_build_info', 'Always 1: the Haven and Node.js versions serving these metrics.', [
    'version',
    'nodejs',
  ]).set({ version: packageVersion(), nodejs: process.version }, 1);
  const pairs = pairGauges(registry);
  const jobLastOk = g('haven_job_last_run_success', '1 when the job’s last finished run was ok.', [
    'haven_job',
  ]);
  const jobRunning = g('haven_job_running', '1 while a run of the job is going.', ['haven_job']);
  const jobNext = g('haven_job_next_run_timestamp_seconds', 'Next scheduled run of the job (unix time).', [
    'haven_job',
  ]);
  const problems = g('haven_open_problems', 'Problems open now (what alerts are about).', []);
  const scrubProblems = g(
    'haven_scrub_problems',
    'Problems the last finished scrub (scheduled haven verify) of the store found; 0: it verifies.',
    ['scrub', 'store'],
  );
  const scrubLast = g('haven_scrub_last_run_timestamp_seconds', 'When the last scrub finished (unix time).', [
    'scrub',
    'store',
  ]);
  const lanes = continuousGauges(registry, o.catalog);
  const history = runHistoryMetrics(registry, o.catalog);
  const hosts = hostGauges(registry, o.catalog);

  // The state now is recomputed at every scrape: a pair `haven forget` removed disappears.
  const refresh = () => {
    const config = o.config();
    const rows = statusRows({ config, catalog: o.catalog, selections: o.selections() });
    for (const m of [...Object.values(pairs), jobLastOk, jobRunning, jobNext]) m.reset();
    for (const r of rows) {
      const p = { server: r.server, target: r.target };
      const j = { ...p, haven_job: r.job ?? '' };
      if (r.lastGoodAt) pairs.lastGood.set(p, seconds(r.lastGoodAt.getTime()));
      if (r.ageMs !== null) pairs.rpoAge.set(j, seconds(r.ageMs));
      if (r.rpoMs !== null) {
        pairs.rpoObjective.set(j, seconds(r.rpoMs));
        pairs.rpoBreached.set(j, r.rpo === 'ok' ? 0 : 1);
      }
      if (r.lastBytesSent !== null) pairs.sent.set(p, r.lastBytesSent);
      if (r.lastDurationMs !== null) pairs.duration.set(p, seconds(r.lastDurationMs));
      if (r.lastRunAt) pairs.lastRunAt.set(p, seconds(r.lastRunAt.getTime()));
      if (r.lastResult) pairs.lastOk.set(p, r.lastResult === 'ok' ? 1 : 0);
    }
    for (const job of Object.values(config.jobs)) {
      const label = { haven_job: job.name };
      history.ensureJob(job.name);
      const last = o.catalog.runs
        .list({ kind: 'job', job: job.name, limit: 10 })
        .find((r) => r.status !== 'running');
      if (last) jobLastOk.set(label, last.status === 'ok' ? 1 : 0);
      jobRunning.set(label, o.running(job.name) ? 1 : 0);
      const next = o.nextRun(job.name);
      if (next) jobNext.set(label, seconds(next.getTime()));
    }
    scrubGauges(o.catalog, config, scrubProblems, scrubLast);
    problems.set(o.catalog.events.openProblems().length);
    hosts(config);
    lanes.refresh();
    history.refresh();
  };
  return {
    contentType: registry.contentType,
    scrape: async () => {
      refresh();
      return registry.metrics();
    },
  };
}
