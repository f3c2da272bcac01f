import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HistoryResult } from '../catalog/catalog.ts';
import { scratchCatalog } from '../catalog/test-support.ts';
import type { LaneState } from '../engine/continuous/index.ts';
import { laneStatus, type StatusRow } from '../jobs/index.ts';
import { recordLanes } from '../jobs/test-support/lanes.ts';
import { ageSeries, historyView, pairState, summary } from './history.ts';
import { fleetCatalog } from './test-support/fleet.ts';

const T = (s: number) => new Date(s * 1000);

function copy(finished: number, copyAt: number | null, status: 'ok' | 'failed' = 'ok'): HistoryResult {
  return {
    runId: finished,
    server: 'web',
    target: 'dr',
    status,
    mode: 'incremental',
    startedAt: T(finished - 10),
    finishedAt: T(finished),
    bytesRead: 0,
    bytesSent: 0,
    durationMs: 10_000,
    generationId: null,
    copyAt: copyAt === null ? null : T(copyAt),
    errorCode: null,
    errorMessage: null,
    attempts: 1,
    storeTotalBytes: null,
    storeFreeBytes: null,
    kind: 'job',
    job: 'nightly',
  };
}

test('the age series: a sawtooth from the copy before the window, drops at good copies only', () => {
  const round = (ps: Array<[number, number]>) =>
    ps.map(([x, y]) => [Math.round(x * 1000) / 1000, Math.round(y * 1000) / 1000]);
  const points = round(
    ageSeries(
      T(50),
      [copy(120, 100), copy(200, null, 'failed'), copy(300, 290), copy(400, 250)],
      T(100),
      T(500),
    ),
  );
  assert.deepEqual(points, [
    [100, 50], // the window opens: the copy of t=50 is 50 s old
    [119.999, 69.999],
    [120, 20], // copy of t=100 finished at 120
    [299.999, 199.999], // the failed run at 200 changes nothing
    [300, 10],
    [399.999, 109.999],
    [400, 110], // a copy finishing later but showing an older point in time does not make it younger
    [500, 210],
  ]);
  assert.deepEqual(ageSeries(null, [], T(0), T(10)), [], 'never copied: no line');
});

function row(o: Partial<StatusRow>): StatusRow {
  return {
    server: 'web',
    target: 'dr',
    job: 'nightly',
    lastGoodAt: T(0),
    lastGoodGeneration: 'g',
    rpoMs: 100_000,
    ageMs: 10_000,
    rpo: 'ok',
    nextRun: null,
    lastResult: 'ok',
    lastRunAt: T(0),
    lastRunId: 1,
    lastMode: 'full',
    lastBytesSent: 0,
    lastDurationMs: 0,
    lastErrorCode: null,
    lastErrorMessage: null,
    lane: null,
    ...o,
  };
}

test('pair states: failing beyond the objective or never copied; at risk on a failed copy or 80 % used', () => {
  assert.equal(pairState(row({})).state, 'protected');
  assert.equal(pairState(row({ rpo: 'breached' })).state, 'failing');
  assert.equal(pairState(row({ rpo: 'never', lastGoodAt: null })).state, 'failing');
  assert.equal(pairState(row({ rpo: 'none', rpoMs: null, lastGoodAt: null })).state, 'failing');
  assert.equal(pairState(row({ rpo: 'none', rpoMs: null })).state, 'protected');
  assert.equal(pairState(row({ lastResult: 'failed' })).state, 'at-risk');
  assert.equal(pairState(row({ ageMs: 81_000 })).state, 'at-risk');
  assert.equal(pairState(row({ ageMs: 79_000 })).state, 'protected');
});

test('pair states of a continuous pair: at risk while its lane does not replicate', (t) => {
  const c = scratchCatalog(t, 'haven-t-daemon-history-');
  const now = new Date(Date.now() + 1000);
  const states: LaneState[] = [
    'syncing',
    'behind',
    'resyncing',
    'connecting',
    'disconnected',
    'refused',
    'stopped',
  ];
  recordLanes(
    c,
    'web',
    'nightly',
    states.map((state) => ({ target: state, state, lastPointAt: new Date(now.getTime() - 5000) })),
  );
  const lanes = c.continuous.lanes('web');
  const of = (state: LaneState) => {
    const l = lanes.find((x) => x.target === state)!;
    return pairState(row({ target: state, lane: laneStatus(l, now) }));
  };
  for (const s of ['syncing', 'behind', 'resyncing', 'connecting'] as const)
    assert.equal(of(s).state, 'protected', s);
  for (const s of ['disconnected', 'refused', 'stopped'] as const)
    assert.deepEqual(of(s), { state: 'at-risk', reason: `continuous replication ${s}` });
  assert.equal(
    pairState(row({ rpo: 'breached', lane: laneStatus(lanes[0]!, now) })).state,
    'failing',
    'beyond the objective it fails, whatever the lane',
  );
});

test('history and summary of a fleet: every pair, run, drill and target report', (t) => {
  const fleet = fleetCatalog();
  t.after(() => fleet.close());
  const rows = [
    row({ server: 'web01', target: 'dr' }),
    row({ server: 'db01', target: 'dr', rpo: 'breached' }),
    row({ server: 'db01', target: 'offsite' }),
    row({ server: 'app01', target: 'dr', lastResult: 'failed' }),
  ];
  const now = fleet.now;
  const view = historyView({
    catalog: fleet.catalog,
    rows,
    from: new Date(now.getTime() - 14 * 86_400_000),
    now,
  });
  const pairs = (xs: Array<{ server: string; target?: string; store?: string }>) =>
    xs.map((x) => `${x.server}→${x.target ?? x.store}`).sort();
  assert.deepEqual(pairs(view.rpo), [
    'app01→/mnt/usb/haven',
    'app01→dr',
    'db01→dr',
    'db01→offsite',
    'web01→dr',
    'web01→offsite',
  ]);
  assert.equal(view.runs.find((r) => r.server === 'app01' && r.target === 'dr')?.points.length, 6);
  const web = view.runs.find((r) => r.server === 'web01' && r.target === 'dr')!;
  assert.deepEqual(
    web.points.map((p) => [p.status, p.bytesSent / 1024 / 1024, (p.throughput! * 120) / 1024 / 1024]),
    [
      ['ok', 100, 100],
      ['ok', 20, 20],
      ['failed', 0, 0],
    ],
  );
  assert.deepEqual(pairs(view.drills), ['app01→/srv/haven', 'db01→/srv/haven', 'web01→/srv/haven']);
  assert.deepEqual(
    view.drills.find((d) => d.server === 'db01')?.points.map((p) => [p.drill, p.result, p.recoverySeconds]),
    [
      ['weekly', 'pass', 25],
      ['weekly', 'fail', 300],
      ['monthly', 'pass', 31],
    ],
  );
  assert.deepEqual(view.capacity.map((c) => [c.target, c.points.length]).sort(), [
    ['/mnt/usb/haven', 1],
    ['dr', 9],
    ['offsite', 3],
  ]);

  const s = summary({ catalog: fleet.catalog, rows, running: 1, now });
  assert.deepEqual(s.servers, { total: 3, protected: 1, atRisk: 1, failing: 1 }, 'db01 by its worst target');
  assert.equal(s.openProblems, 1);
  assert.equal(s.running, 1);
  assert.deepEqual(s.drills, { passing: 3, failing: 1 }, 'the last of each drill and server');
  assert.equal(s.targets.find((x) => x.target === 'dr')?.freeBytes, (899_000 - 5) * 1024 * 1024);
});
