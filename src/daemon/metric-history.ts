/**
 * The metrics that count what happened (counters, histograms) and what the last drill and the
 * last capacity report said, all fed from finished runs in the catalog. Prometheus needs a
 * counter that never goes down, but retention deletes old runs; so each run is taken once, when
 * it has finished (FinishedRuns), and added to values this process keeps. At the first scrape the
 * catalog's whole history is the starting value. docs/daemon.md "Metrics".
 */
import client from 'prom-client';
import type { Catalog, SettledRun } from '../catalog/catalog.ts';

/**
 * Hands out each run once, after it finished, whatever order runs finish in and whatever
 * retention deletes later. Ids up to `settledThrough` are done with; above it only the ids handed
 * out already are remembered: the runs since the oldest one still running.
 */
export class FinishedRuns {
  private settledThrough = 0;
  private readonly handed = new Set<number>();

  /** The runs finished since the last call. `read(afterId)` gives runs by id, a page at a time. */
  take(read: (afterId: number) => SettledRun[]): SettledRun[] {
    const out: SettledRun[] = [];
    let oldestRunning = Number.POSITIVE_INFINITY;
    let newest = this.settledThrough;
    for (let page = read(this.settledThrough); page.length > 0; page = read(page.at(-1)!.id)) {
      for (const r of page) {
        newest = Math.max(newest, r.id);
        if (r.status === 'running') oldestRunning = Math.min(oldestRunning, r.id);
        else if (!this.handed.has(r.id)) {
          this.handed.add(r.id);
          out.push(r);
        }
      }
    }
    this.settledThrough = Math.max(this.settledThrough, Math.min(oldestRunning - 1, newest));
    for (const id of this.handed) if (id <= this.settledThrough) this.handed.delete(id);
    return out;
  }
}

const DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400];
/** 1 MiB to 4 TiB, four times each step. */
const BYTE_BUCKETS = Array.from({ length: 12 }, (_, i) => 2 ** (20 + 2 * i));
const RECOVERY_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800];

const s = (ms: number) => ms / 1000;

export interface RunHistoryMetrics {
  /** Takes the runs finished since the last scrape into the counters and last-seen gauges. */
  refresh(): void;
  /** Gives a configured job its counters at 0 before its first run (rates need a start). */
  ensureJob(job: string): void;
}

/** The counters, histograms and last-seen gauges fed from finished runs. */
function historyMetricSet(registry: client.Registry) {
  const counter = (name: string, help: string, labelNames: string[]) =>
    new client.Counter({ name, help, labelNames, registers: [registry] });
  const histogram = (name: string, help: string, labelNames: string[], buckets: number[]) =>
    new client.Histogram({ name, help, labelNames, buckets, registers: [registry] });
  const gauge = (name: string, help: string, labelNames: string[]) =>
    new client.Gauge({ name, help, labelNames, registers: [registry] });
  return {
    jobRuns: counter('haven_job_runs_total', 'Finished runs of the job, by final status.', [
      'haven_job',
      'status',
    ]),
    jobFailures: counter('haven_job_failures_total', 'Runs of the job that failed or partly failed.', [
      'haven_job',
    ]),
    jobDuration: histogram(
      'haven_job_run_duration_seconds',
      'How long runs of the job took.',
      ['haven_job'],
      DURATION_BUCKETS,
    ),
    copies: counter('haven_server_copies_total', 'Finished copies of the server to the target, by result.', [
      'server',
      'target',
      'result',
    ]),
    read: counter('haven_server_read_bytes_total', 'Bytes read from the server’s disks by its copies.', [
      'server',
      'target',
    ]),
    sent: counter('haven_server_sent_bytes_total', 'Bytes sent on the wire by the server’s copies.', [
      'server',
      'target',
    ]),
    copyDuration: histogram(
      'haven_copy_duration_seconds',
      'How long each server’s copy to the target took.',
      ['target'],
      DURATION_BUCKETS,
    ),
    copySent: histogram(
      'haven_copy_sent_bytes',
      'Bytes one good copy sent to the target.',
      ['target'],
      BYTE_BUCKETS,
    ),
    drills: counter('haven_drills_total', 'Drill results per server, pass or fail.', [
      'drill',
      'server',
      'result',
    ]),
    recovery: histogram(
      'haven_drill_recovery_seconds',
      'Measured recovery time of passed drills (start to boot marker).',
      ['drill'],
      RECOVERY_BUCKETS,
    ),
    drillOk: gauge('haven_drill_last_success', '1 when the server’s last drill passed, else 0.', [
      'drill',
      'server',
    ]),
    drillSeconds: gauge(
      'haven_drill_last_recovery_seconds',
      'Recovery time the server’s last drill measured.',
      ['drill', 'server'],
    ),
    drillAt: gauge(
      'haven_drill_last_timestamp_seconds',
      'When the server’s last drill finished (unix time).',
      ['drill', 'server'],
    ),
    capacity: gauge(
      'haven_target_capacity_bytes',
      'Size of the target store’s filesystem, as its receiver last reported.',
      ['target'],
    ),
    free: gauge(
      'haven_target_free_bytes',
      'Space left for the target store, as its receiver last reported.',
      ['target'],
    ),
    capacityAt: gauge(
      'haven_target_capacity_timestamp_seconds',
      'When the target last reported its space (unix time).',
      ['target'],
    ),
  };
}

type MetricSet = ReturnType<typeof historyMetricSet>;

/** Adds one finished run to the metrics; `newer` says whether a last-seen value may move. */
function takeRun(m: MetricSet, r: SettledRun, newer: (key: string, at: number) => boolean): void {
  const end = r.finishedAt ?? r.startedAt;
  if (r.kind === 'job' && r.job) {
    m.jobRuns.inc({ haven_job: r.job, status: r.status });
    m.jobFailures.inc({ haven_job: r.job }, r.status === 'failed' || r.status === 'partial' ? 1 : 0);
    m.jobDuration.observe({ haven_job: r.job }, s(end.getTime() - r.startedAt.getTime()));
  }
  for (const x of r.servers) {
    if (x.status === 'running') continue;
    const at = s((x.finishedAt ?? end).getTime());
    if (r.kind === 'drill') {
      const labels = { drill: r.job ?? '', server: x.server };
      const pass = x.status === 'ok';
      m.drills.inc({ ...labels, result: pass ? 'pass' : 'fail' });
      if (pass && x.durationMs !== null) m.recovery.observe({ drill: labels.drill }, s(x.durationMs));
      if (newer(`drill\u0000${labels.drill}\u0000${x.server}`, at)) {
        m.drillOk.set(labels, pass ? 1 : 0);
        if (x.durationMs !== null) m.drillSeconds.set(labels, s(x.durationMs));
        m.drillAt.set(labels, at);
      }
    } else if (r.kind === 'job' || r.kind === 'protect') {
      const pair = { server: x.server, target: x.target };
      m.copies.inc({ ...pair, result: x.status });
      m.read.inc(pair, x.bytesRead);
      m.sent.inc(pair, x.bytesSent);
      if (x.durationMs !== null) m.copyDuration.observe({ target: x.target }, s(x.durationMs));
      if (x.status === 'ok') m.copySent.observe({ target: x.target }, x.bytesSent);
      if (x.storeTotalBytes !== null && x.storeFreeBytes !== null && newer(`target\u0000${x.target}`, at)) {
        m.capacity.set({ target: x.target }, x.storeTotalBytes);
        m.free.set({ target: x.target }, x.storeFreeBytes);
        m.capacityAt.set({ target: x.target }, at);
      }
    }
  }
}

export function runHistoryMetrics(registry: client.Registry, catalog: Catalog): RunHistoryMetrics {
  const m = historyMetricSet(registry);
  const runs = new FinishedRuns();
  // Runs are taken by id, which is not the order they end in: a last-seen gauge moves only forward.
  const seen = new Map<string, number>();
  const newer = (key: string, at: number) => {
    if ((seen.get(key) ?? Number.NEGATIVE_INFINITY) > at) return false;
    seen.set(key, at);
    return true;
  };
  return {
    refresh() {
      for (const r of runs.take((after) => catalog.history.runsAfter(after, 500))) takeRun(m, r, newer);
    },
    ensureJob(job) {
      m.jobFailures.inc({ haven_job: job }, 0);
    },
  };
}
