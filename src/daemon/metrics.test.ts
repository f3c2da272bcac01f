/**
 * /metrics on a catalog with the history of a small fleet (several servers, jobs, drills and
 * targets: test-support/fleet.ts), checked by Prometheus's own promtool and against what the
 * fleet holds; and the counters' rule: never down, each finished run once, whatever retention
 * deletes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RunStatus, SettledRun } from '../catalog/catalog.ts';
import { packageVersion } from '../core/package-root.ts';
import { FinishedRuns } from './metrics.ts';
import { fleetCatalog, fleetMetrics } from './test-support/fleet.ts';
import { parsePrometheus, promtoolCheckMetrics, sampleValue } from './test-support/prometheus.ts';

const MiB = 1024 * 1024;

function run(id: number, status: RunStatus): SettledRun {
  return {
    id,
    kind: 'job',
    job: 'nightly',
    trigger: 'schedule',
    status,
    startedAt: new Date(id * 1000),
    finishedAt: null,
    pid: null,
    summary: null,
    errorCode: null,
    errorMessage: null,
    servers: [],
  };
}

/** Pages of at most two runs above an id, as catalog.history.runsAfter gives them. */
const pages = (runs: SettledRun[]) => (after: number) => runs.filter((r) => r.id > after).slice(0, 2);

test('finished runs are handed out once each, in any finishing order, through retention', () => {
  const f = new FinishedRuns();
  const ids = (rs: SettledRun[]) => rs.map((r) => r.id);
  const history = [run(1, 'failed'), run(2, 'ok'), run(3, 'partial'), run(4, 'running'), run(5, 'failed')];
  assert.deepEqual(ids(f.take(pages(history))), [1, 2, 3, 5], 'the catalog’s history at first');
  assert.deepEqual(ids(f.take(pages(history))), [], 'nothing twice');
  // Retention deletes 1-3; run 4 ends, 6 ends, 7 runs.
  const later = [run(4, 'failed'), run(5, 'failed'), run(6, 'ok'), run(7, 'running')];
  assert.deepEqual(ids(f.take(pages(later))), [4, 6]);
  // Everything up to 7 pruned; 7 ended long ago (pruned too), 8 is new.
  assert.deepEqual(
    ids(f.take(pages([run(8, 'failed')]))),
    [8],
    'a run pruned unseen is lost, not miscounted',
  );
  assert.deepEqual(ids(f.take(pages([]))), [], 'an empty catalog hands out nothing and forgets nothing');
  assert.deepEqual(ids(f.take(pages([run(8, 'failed'), run(9, 'ok')]))), [9]);
});

test('a scrape of a fleet: promtool finds nothing, the values are the catalog’s, no job label', async (t) => {
  const fleet = fleetCatalog();
  t.after(() => fleet.close());
  const metrics = fleetMetrics(fleet, {
    running: (job) => job === 'hourly',
    nextRun: (job) => (job === 'nightly' ? new Date('2030-01-01T01:30:00Z') : null),
  });
  const text = await metrics.scrape();
  const check = await promtoolCheckMetrics(text);
  assert.equal(check.code, 0, `promtool check metrics:\n${check.findings}`);
  assert.equal(check.findings, '', 'not even a lint warning');

  const samples = parsePrometheus(text);
  assert.ok(
    samples.every((s) => !('job' in s.labels) && !('exported_job' in s.labels)),
    'no label a scrape would rename',
  );
  const v = (name: string, labels: Record<string, string> = {}) => sampleValue(samples, name, labels);
  assert.equal(v('haven_build_info', { version: packageVersion(), nodejs: process.version }), 1);

  // Counters: the whole history at the first scrape.
  assert.equal(v('haven_job_runs_total', { haven_job: 'nightly', status: 'ok' }), 1);
  assert.equal(v('haven_job_runs_total', { haven_job: 'nightly', status: 'partial' }), 1);
  assert.equal(v('haven_job_runs_total', { haven_job: 'nightly', status: 'failed' }), 1);
  assert.equal(v('haven_job_runs_total', { haven_job: 'hourly', status: 'ok' }), 5);
  assert.equal(v('haven_job_failures_total', { haven_job: 'nightly' }), 2);
  assert.equal(v('haven_job_failures_total', { haven_job: 'hourly' }), 1);
  assert.equal(v('haven_job_run_duration_seconds_count', { haven_job: 'hourly' }), 6);
  assert.equal(v('haven_job_run_duration_seconds_sum', { haven_job: 'hourly' }), 6 * 180);
  assert.equal(v('haven_server_copies_total', { server: 'db01', target: 'dr', result: 'failed' }), 2);
  assert.equal(v('haven_server_copies_total', { server: 'db01', target: 'dr', result: 'ok' }), 1);
  assert.equal(v('haven_server_sent_bytes_total', { server: 'web01', target: 'dr' }), 120 * MiB);
  assert.equal(v('haven_server_read_bytes_total', { server: 'web01', target: 'dr' }), 240 * MiB);
  assert.equal(v('haven_server_sent_bytes_total', { server: 'app01', target: '/mnt/usb/haven' }), 2048 * MiB);
  // Histograms per target: 4 + 6 copies to dr (one of each a failure, bytes only for good ones).
  assert.equal(v('haven_copy_duration_seconds_count', { target: 'dr' }), 12);
  assert.equal(v('haven_copy_sent_bytes_count', { target: 'dr' }), 8);
  assert.equal(v('haven_copy_sent_bytes_sum', { target: 'dr' }), (100 + 300 + 20 + 5 * 5) * MiB);
  assert.equal(
    v('haven_copy_sent_bytes_bucket', { target: 'dr', le: String(2 ** 24) }),
    5,
    '≤ 16 MiB: the hourly five',
  );

  // Drills: results per server, the recovery time of passes, and the last one of each.
  assert.equal(v('haven_drills_total', { drill: 'weekly', server: 'db01', result: 'fail' }), 1);
  assert.equal(v('haven_drills_total', { drill: 'weekly', server: 'db01', result: 'pass' }), 1);
  assert.equal(v('haven_drill_recovery_seconds_count', { drill: 'weekly' }), 4);
  assert.equal(v('haven_drill_recovery_seconds_sum', { drill: 'weekly' }), 8 + 25 + 7 + 12);
  assert.equal(v('haven_drill_recovery_seconds_bucket', { drill: 'weekly', le: '10' }), 2);
  assert.equal(v('haven_drill_recovery_seconds_count', { drill: 'monthly' }), 1);
  assert.equal(v('haven_drill_last_success', { drill: 'weekly', server: 'db01' }), 0);
  assert.equal(v('haven_drill_last_success', { drill: 'weekly', server: 'app01' }), 1);
  assert.equal(v('haven_drill_last_recovery_seconds', { drill: 'weekly', server: 'app01' }), 12);
  assert.equal(v('haven_drill_last_success', { drill: 'monthly', server: 'db01' }), 1);

  // The targets' space: the newest report of each.
  assert.equal(v('haven_target_free_bytes', { target: 'dr' }), (899_000 - 5) * MiB);
  assert.equal(v('haven_target_capacity_bytes', { target: 'dr' }), 1024 * 1024 * MiB);
  assert.equal(v('haven_target_free_bytes', { target: 'offsite' }), 499_850 * MiB);
  assert.equal(v('haven_target_free_bytes', { target: '/mnt/usb/haven' }), 10_000 * MiB);

  // Hosts: the newest backup's age against the objective, the last backup and drill.
  // Measured against the clock at the scrape, a moment after the fleet was written (seconds
  // later on a loaded host): at least the 30 h the fleet says, and not a minute more.
  const hostAge = v('haven_host_backup_age_seconds', { host: 'node1' }) ?? 0;
  assert.ok(hostAge >= 30 * 3600 && hostAge < 30 * 3600 + 60, `host backup age ${hostAge} s`);
  assert.equal(v('haven_host_rpo_objective_seconds', { host: 'node1' }), 8 * 24 * 3600);
  assert.equal(v('haven_host_last_backup_success', { host: 'node1' }), 1);
  assert.equal(v('haven_host_last_drill_success', { host: 'node1' }), 0);

  // The state now, per pair and job.
  assert.equal(v('haven_server_rpo_breached', { server: 'db01', target: 'dr', haven_job: 'nightly' }), 1);
  assert.equal(v('haven_server_rpo_breached', { server: 'app01', target: 'dr', haven_job: 'hourly' }), 0);
  assert.equal(v('haven_server_rpo_objective_seconds', { server: 'app01', target: 'dr' }), 5400);
  assert.equal(v('haven_server_last_run_success', { server: 'web01', target: 'offsite' }), 0);
  assert.equal(v('haven_server_last_run_sent_bytes', { server: 'app01', target: 'dr' }), 5 * MiB);
  assert.equal(v('haven_job_running', { haven_job: 'hourly' }), 1);
  assert.equal(
    v('haven_job_next_run_timestamp_seconds', { haven_job: 'nightly' }),
    Date.parse('2030-01-01T01:30:00Z') / 1000,
  );
  assert.equal(v('haven_job_last_run_success', { haven_job: 'nightly' }), 0);
  assert.equal(v('haven_open_problems'), 1);

  await t.test('counters never go down when retention deletes runs, and count new runs once', async () => {
    assert.ok(fleet.catalog.runs.prune(new Date(Date.now() + 60_000)) > 0, 'retention deleted runs');
    const failing = fleet.catalog.runs.start({ kind: 'job', job: 'nightly', trigger: 'api' });
    fleet.catalog.runs.recordServer(failing.id, {
      server: 'web01',
      target: 'dr',
      status: 'failed',
      bytesSent: MiB,
      durationMs: 1000,
    });
    fleet.catalog.runs.finish(failing.id, { status: 'failed' });
    const again = parsePrometheus(await metrics.scrape());
    const w = (name: string, labels: Record<string, string>) => sampleValue(again, name, labels);
    assert.equal(w('haven_job_failures_total', { haven_job: 'nightly' }), 3);
    assert.equal(w('haven_job_runs_total', { haven_job: 'hourly', status: 'ok' }), 5);
    assert.equal(w('haven_server_sent_bytes_total', { server: 'web01', target: 'dr' }), 121 * MiB);
    assert.equal(w('haven_drills_total', { drill: 'weekly', server: 'db01', result: 'fail' }), 1);
    assert.equal(w('haven_copy_duration_seconds_count', { target: 'dr' }), 13);
    const third = parsePrometheus(await metrics.scrape());
    assert.equal(
      sampleValue(third, 'haven_job_failures_total', { haven_job: 'nightly' }),
      3,
      'a scrape adds nothing',
    );
  });
});
