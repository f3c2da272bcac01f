import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Catalog } from '../catalog/catalog.ts';
import { scratchCatalog } from '../catalog/test-support.ts';
import { parseConfig } from '../core/config.ts';
import { EventLog } from './events.ts';
import { checkRpo } from './rpo.ts';
import { rpoState, statusRows } from './status.ts';

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
