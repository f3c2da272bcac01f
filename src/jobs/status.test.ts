import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Catalog } from '../catalog/catalog.ts';
import { scratchCatalog } from '../catalog/test-support.ts';
import { parseConfig } from '../core/config.ts';
import { EventLog } from './events.ts';
import { checkRpo } from './rpo.ts';
import { rpoState, statusRows } from './status.ts';
import { goneProcessPid, recordLanes } from './test-support/lanes.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-jobs-status-');

const config = parseConfig(
  `timezone: UTC
targets:
  dr1: { url: /srv/a }
  dr2: { url: /srv/b }
jobs:
  nightly: { servers: ["web*"], targets: [dr1, dr2], schedule: "30 1 * * *", rpo: 26h }
  hourly: { servers: [web01], target: dr1, schedule: "0 * * * *", rpo: 2h }
  adhoc: { servers: [db01], target: dr1 }
`,
  'haven.yaml',
);

const HOUR = 3_600_000;

function copy(c: Catalog, job: string, server: string, target: string, at: Date, ok = true): void {
  const run = c.runs.start({ kind: 'job', job, trigger: 'schedule', at });
  c.runs.recordServer(run.id, {
    server,
    target,
    status: ok ? 'ok' : 'failed',
    startedAt: at,
    finishedAt: at,
    copyAt: at,
    bytesSent: 100,
    durationMs: 5000,
    ...(ok
      ? { generationId: `gen-${server}-${at.getTime()}` }
      : { errorCode: 'NO_SPACE', errorMessage: 'full' }),
  });
  c.runs.finish(run.id, { status: ok ? 'ok' : 'failed', at });
}

test('rpo state', () => {
  const now = new Date(10 * HOUR);
  assert.equal(rpoState(null, new Date(0), now), 'none');
  assert.equal(rpoState(HOUR, null, now), 'never');
  assert.equal(rpoState(HOUR, new Date(9 * HOUR), now), 'ok');
  assert.equal(rpoState(HOUR, new Date(9 * HOUR - 1), now), 'breached');
});

test('status rows: pairs from selections and the catalog, strictest objective, next run', (t) => {
  const c = catalog(t);
  const now = new Date('2024-05-01T12:00:00Z');
  copy(c, 'hourly', 'web01', 'dr1', new Date(now.getTime() - 3 * HOUR));
  copy(c, 'nightly', 'web02', 'dr2', new Date(now.getTime() - HOUR));
  copy(c, 'manual', 'lab', '/srv/x', new Date(now.getTime() - 50 * HOUR));
  const rows = statusRows({
    config,
    catalog: c,
    selections: new Map([
      ['nightly', ['web01', 'web02']],
      ['hourly', ['web01']],
      ['adhoc', ['db01']],
    ]),
    now,
  });
  const key = (r: { server: string; target: string }) => `${r.server}@${r.target}`;
  assert.deepEqual(rows.map(key), [
    'db01@dr1',
    'lab@/srv/x',
    'web01@dr1',
    'web01@dr2',
    'web02@dr1',
    'web02@dr2',
  ]);
  const by = Object.fromEntries(rows.map((r) => [key(r), r]));
  // web01 → dr1 is in nightly (26h) and hourly (2h): held to 2h, and 3h old is a breach.
  assert.equal(by['web01@dr1']!.job, 'hourly');
  assert.equal(by['web01@dr1']!.rpoMs, 2 * HOUR);
  assert.equal(by['web01@dr1']!.ageMs, 3 * HOUR);
  assert.equal(by['web01@dr1']!.rpo, 'breached');
  assert.equal(
    by['web01@dr1']!.nextRun?.toISOString(),
    '2024-05-01T13:00:00.000Z',
    'the earlier of both jobs',
  );
  assert.equal(by['web02@dr2']!.rpo, 'ok');
  assert.equal(by['web02@dr2']!.nextRun?.toISOString(), '2024-05-02T01:30:00.000Z');
  assert.equal(by['web02@dr1']!.rpo, 'never');
  assert.equal(by['web02@dr1']!.lastRunAt, null);
  assert.equal(by['db01@dr1']!.rpo, 'none', 'no objective');
  assert.equal(by['db01@dr1']!.nextRun, null, 'on demand');
  assert.equal(by['lab@/srv/x']!.job, 'manual');
  assert.equal(by['lab@/srv/x']!.rpo, 'none');
  assert.equal(by['web01@dr1']!.lastBytesSent, 100);
});

test('RPO checks: raised once per problem, resolved once when back within the objective', (t) => {
  const c = catalog(t);
  const events = new EventLog(c, undefined);
  const t0 = new Date('2024-05-01T12:00:00Z').getTime();
  copy(c, 'hourly', 'web01', 'dr1', new Date(t0 - 3 * HOUR));
  copy(c, 'hourly', 'web01', 'dr2', new Date(t0), false);
  const rows = (now: Date) =>
    statusRows({ config, catalog: c, selections: new Map([['hourly', ['web01']]]), now }).filter(
      (r) => r.job === 'hourly',
    );
  const first = checkRpo(rows(new Date(t0)), events, new Date(t0));
  assert.deepEqual(first.raised.sort(), ['rpo:web01:dr1']);
  // Tried and never copied is a breach too, for the pair that has a run (dr2 is not in hourly).
  const again = checkRpo(rows(new Date(t0 + 60_000)), events, new Date(t0 + 60_000));
  assert.deepEqual(again, { raised: [], resolved: [] }, 'not raised again while open');
  const breaches = c.events.list({ type: 'rpo.breached' });
  assert.equal(breaches.length, 1);
  assert.equal(breaches[0]!.severity, 'error');
  assert.match(
    breaches[0]!.message,
    /web01 → dr1: the newest good copy is 3h old, beyond the objective of 2h/,
  );

  copy(c, 'hourly', 'web01', 'dr1', new Date(t0 + 120_000));
  const back = checkRpo(rows(new Date(t0 + 180_000)), events, new Date(t0 + 180_000));
  assert.deepEqual(back.resolved, ['rpo:web01:dr1']);
  assert.equal(c.events.list({ type: 'rpo.recovered' }).length, 1);
  assert.equal(c.events.openProblem('rpo:web01:dr1'), undefined);
  assert.deepEqual(checkRpo(rows(new Date(t0 + 240_000)), events, new Date(t0 + 240_000)).resolved, []);
});

test('a pair that was tried and never copied breaches; one never tried does not', (t) => {
  const c = catalog(t);
  const events = new EventLog(c, undefined);
  const now = new Date('2024-05-01T12:00:00Z');
  copy(c, 'hourly', 'web01', 'dr1', now, false);
  const rows = statusRows({
    config,
    catalog: c,
    selections: new Map([
      ['nightly', ['web09']],
      ['hourly', ['web01']],
    ]),
    now,
  });
  const r = checkRpo(rows, events, now);
  assert.deepEqual(r.raised, ['rpo:web01:dr1']);
  assert.match(
    c.events.list({ type: 'rpo.breached' })[0]!.message,
    /no good copy yet \(objective 2h\); last result failed/,
  );
});

test('continuous lanes: each state with its lag and backlog; a lane whose protector is gone is stopped', (t) => {
  const c = catalog(t);
  const now = new Date(Date.now() + 1000);
  const ago = (ms: number) => new Date(now.getTime() - ms);
  const MiB = 1024 * 1024;
  recordLanes(c, 'web01', 'nightly', [
    { target: 'dr1', state: 'syncing', lastPointAt: ago(2000) },
    { target: 'dr2', state: 'behind', lastPointAt: ago(14_000), pendingBytes: 3 * MiB },
  ]);
  recordLanes(c, 'web02', 'nightly', [
    { target: 'dr1', state: 'resyncing', lastPointAt: ago(90_000), pendingBytes: 64 * MiB },
    { target: 'dr2', state: 'disconnected', lastPointAt: ago(40_000), pendingBytes: MiB },
  ]);
  recordLanes(c, 'web03', 'nightly', [
    {
      target: 'dr1',
      state: 'refused',
      lastPointAt: ago(600_000),
      error: { code: 'CONTINUOUS_DR_NEWER', message: 'the server runs at the DR site' },
    },
    // Connecting, before its first point: no status row yet, the lane makes the pair.
    { target: 'dr2', state: 'connecting' },
  ]);
  // A protector killed while syncing: its record still says so, but nothing replicates.
  const gone = goneProcessPid();
  recordLanes(c, 'db01', 'adhoc', [{ target: 'dr1', state: 'syncing', lastPointAt: ago(300_000) }], gone);
  recordLanes(c, 'db02', 'adhoc', [{ target: 'dr1', state: 'stopped', lastPointAt: ago(5000) }], gone);
  copy(c, 'nightly', 'web09', 'dr1', ago(HOUR));

  const rows = statusRows({ config, catalog: c, now });
  const by = Object.fromEntries(rows.map((r) => [`${r.server}@${r.target}`, r]));
  const lane = (key: string) => {
    const l = by[key]?.lane;
    assert.ok(l, `${key} has its lane`);
    return l;
  };
  assert.equal(by['web09@dr1']!.lane, null, 'a periodic pair has no lane');
  assert.deepEqual(
    [
      lane('web01@dr1').state,
      lane('web01@dr1').lagMs,
      lane('web01@dr1').pendingBytes,
      lane('web01@dr1').stale,
    ],
    ['syncing', 2000, 0, false],
  );
  assert.deepEqual(
    [lane('web01@dr2').state, lane('web01@dr2').lagMs, lane('web01@dr2').pendingBytes],
    ['behind', 14_000, 3 * MiB],
  );
  assert.deepEqual([lane('web02@dr1').state, lane('web02@dr1').lagMs], ['resyncing', 90_000]);
  assert.deepEqual([lane('web02@dr2').state, lane('web02@dr2').pendingBytes], ['disconnected', MiB]);
  assert.equal(lane('web03@dr1').state, 'refused');
  assert.equal(lane('web03@dr1').errorCode, 'CONTINUOUS_DR_NEWER');
  assert.equal(lane('web03@dr1').errorMessage, 'the server runs at the DR site');
  assert.equal(lane('web03@dr2').state, 'connecting');
  assert.equal(lane('web03@dr2').lagMs, null, 'no point yet: no lag');
  assert.equal(by['web03@dr2']!.job, 'nightly', 'the job of the lane’s protector');
  assert.equal(by['web03@dr2']!.lastGoodAt, null);

  const dead = lane('db01@dr1');
  assert.deepEqual(
    [dead.state, dead.recordedState, dead.stale, dead.pid],
    ['stopped', 'syncing', true, gone],
  );
  assert.equal(dead.lagMs, 300_000, 'the lag keeps growing from its last point');
  assert.deepEqual(
    [lane('db02@dr1').state, lane('db02@dr1').stale],
    ['stopped', false],
    'stopped cleanly is not stale',
  );

  // Each record says when it was written (this test wrote them all a moment ago).
  for (const r of rows.filter((x) => x.lane)) {
    assert.ok(Math.abs(r.lane!.updatedAt.getTime() - Date.now()) < 60_000, `${r.server}: updatedAt`);
  }

  // JSON (`haven status --json`, /api/status) carries the lane as it is.
  const json = JSON.parse(JSON.stringify(by['db01@dr1'])) as { lane: Record<string, unknown> };
  assert.equal(json.lane.state, 'stopped');
  assert.equal(json.lane.recordedState, 'syncing');
  assert.equal(json.lane.lagMs, 300_000);
  assert.equal(typeof json.lane.updatedAt, 'string');
});
