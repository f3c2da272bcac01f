import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import type { Catalog } from './catalog.ts';
import { scratchCatalog } from './test-support.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-cat-ev-');

function hasCode(code: string) {
  return (e: unknown) => e instanceof HavenError && e.code === code;
}

test('events: append and read back every field', (t) => {
  const c = catalog(t);
  const run = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  const e = c.events.append({
    type: 'run.failed',
    severity: 'error',
    message: 'db01 failed: no space',
    server: 'db01',
    job: 'nightly',
    target: 'dr1',
    runId: run.id,
    data: { code: 'NO_SPACE', bytes: 12 },
    dedupKey: 'run:nightly:db01',
    at: new Date(1_234),
  });
  assert.deepEqual(
    { ...e },
    {
      id: e.id,
      at: new Date(1_234),
      severity: 'error',
      type: 'run.failed',
      server: 'db01',
      job: 'nightly',
      target: 'dr1',
      runId: run.id,
      message: 'db01 failed: no space',
      data: { code: 'NO_SPACE', bytes: 12 },
      dedupKey: 'run:nightly:db01',
      alertedAt: null,
    },
  );
  assert.deepEqual(c.events.get(e.id), e);
  assert.equal(c.events.get(e.id + 100), undefined);
  const bare = c.events.append({ type: 'drill.passed', severity: 'info', message: 'ok' });
  assert.equal(bare.data, null);
  assert.equal(bare.server, null);
});

test('events: bad input is refused', (t) => {
  const c = catalog(t);
  const bad = (input: Parameters<Catalog['events']['append']>[0]) =>
    assert.throws(() => c.events.append(input), hasCode('CATALOG_BAD_VALUE'));
  bad({ type: 'RunFailed', severity: 'info', message: 'x' });
  bad({ type: 'run', severity: 'info', message: 'x' });
  bad({ type: 'run.failed', severity: 'fatal' as never, message: 'x' });
  bad({ type: 'run.failed', severity: 'info', message: '' });
  bad({ type: 'run.failed', severity: 'info', message: 'x', dedupKey: '' });
  assert.deepEqual(c.events.list(), []);
});

test('events: list filters, newest first, tailing after an id, paging', (t) => {
  const c = catalog(t);
  const specs = [
    ['run.started', 'info', 'web01', 'nightly', 'dr1'],
    ['run.finished', 'info', 'web01', 'nightly', 'dr1'],
    ['rpo.breached', 'warning', 'db01', 'nightly', 'dr1'],
    ['run.failed', 'error', 'db01', 'offsite', 'dr2'],
    ['cache.problem', 'critical', null, null, null],
    ['drill.passed', 'info', 'web01', 'weekly', null],
  ] as const;
  const ids = specs.map(
    ([type, severity, server, job, target], i) =>
      c.events.append({
        type,
        severity,
        message: `${i}`,
        server: server ?? undefined,
        job: job ?? undefined,
        target: target ?? undefined,
        at: new Date((i + 1) * 1_000),
      }).id,
  );
  const msgs = (f: Parameters<Catalog['events']['list']>[0]) => c.events.list(f).map((e) => e.message);
  assert.deepEqual(msgs({}), ['5', '4', '3', '2', '1', '0']);
  assert.deepEqual(msgs({ afterId: ids[2] }), ['3', '4', '5'], 'tailing is oldest first');
  assert.deepEqual(msgs({ afterId: ids[5] }), []);
  assert.deepEqual(msgs({ minSeverity: 'warning' }), ['4', '3', '2']);
  assert.deepEqual(msgs({ minSeverity: 'error' }), ['4', '3']);
  assert.deepEqual(msgs({ type: 'run.started' }), ['0']);
  assert.deepEqual(msgs({ server: 'web01' }), ['5', '1', '0']);
  assert.deepEqual(msgs({ job: 'nightly', server: 'db01' }), ['2']);
  assert.deepEqual(msgs({ target: 'dr2' }), ['3']);
  assert.deepEqual(msgs({ since: new Date(4_000) }), ['5', '4', '3']);
  assert.deepEqual(msgs({ limit: 2 }), ['5', '4']);
  assert.deepEqual(msgs({ limit: 2, beforeId: ids[4] }), ['3', '2']);
  assert.deepEqual(msgs({ afterId: ids[0], limit: 2, minSeverity: 'warning' }), ['2', '3']);
  assert.throws(() => c.events.list({ minSeverity: 'loud' as never }), hasCode('CATALOG_BAD_VALUE'));
});

test('alerts: one alert per problem, again only on escalation, and after resolution', (t) => {
  const c = catalog(t);
  const key = 'rpo:web01:dr1';
  const breach = (severity: 'warning' | 'error' | 'critical', at: number) =>
    c.events.append({
      type: 'rpo.breached',
      severity,
      message: 'web01 is behind',
      server: 'web01',
      dedupKey: key,
      at: new Date(at),
    });

  // What an alerter does with each event.
  const sent: number[] = [];
  const handle = (id: number) => {
    const e = c.events.get(id)!;
    if (e.dedupKey && c.events.isAlertedAndOpen(e.dedupKey, e.severity)) return;
    sent.push(id);
    c.events.markAlerted(id, new Date(e.at.getTime() + 1));
  };

  assert.equal(c.events.isAlertedAndOpen(key), false);
  const first = breach('warning', 1_000);
  const p0 = c.events.openProblem(key);
  assert.equal(p0?.occurrences, 1);
  assert.equal(p0?.alertedAt, null);
  assert.equal(c.events.isAlertedAndOpen(key), false, 'open but not alerted yet');
  handle(first.id);
  assert.equal(c.events.isAlertedAndOpen(key), true);
  assert.deepEqual(c.events.get(first.id)?.alertedAt, new Date(1_001));

  for (let i = 1; i <= 5; i++) handle(breach('warning', 1_000 + i * 60_000).id);
  assert.deepEqual(sent, [first.id], 'five more minutes of the same problem: no new alert');

  const worse = breach('critical', 400_000);
  handle(worse.id);
  assert.deepEqual(sent, [first.id, worse.id], 'an escalation alerts again');
  handle(breach('warning', 460_000).id);
  assert.equal(sent.length, 2, 'falling back to warning is not news');

  const p = c.events.openProblem(key)!;
  assert.equal(p.occurrences, 8);
  assert.equal(p.severity, 'critical');
  assert.equal(p.alertedSeverity, 'critical');
  assert.equal(p.firstEventId, first.id);
  assert.deepEqual(p.openedAt, new Date(1_000));
  assert.deepEqual(p.lastSeenAt, new Date(460_000));
  assert.deepEqual(
    c.events.openProblems().map((x) => x.dedupKey),
    [key],
  );

  c.events.append({ type: 'rpo.recovered', severity: 'info', message: 'web01 caught up', dedupKey: key });
  assert.equal(c.events.openProblem(key)?.occurrences, 8, 'an info event does not add to the problem');
  const resolved = c.events.resolve(key);
  assert.equal(resolved?.occurrences, 8);
  assert.equal(c.events.resolve(key), undefined);
  assert.equal(c.events.openProblem(key), undefined);
  assert.equal(c.events.isAlertedAndOpen(key), false);

  const again = breach('warning', 900_000);
  handle(again.id);
  assert.deepEqual(sent, [first.id, worse.id, again.id], 'the next occurrence is a new problem');
  assert.equal(c.events.openProblem(key)?.occurrences, 1);

  // Events without a dedup key never open problems, and can be marked alerted.
  const loose = c.events.append({ type: 'verify.failed', severity: 'error', message: 'digest mismatch' });
  assert.equal(c.events.openProblems().length, 1);
  assert.ok(c.events.markAlerted(loose.id).alertedAt);
  assert.throws(() => c.events.markAlerted(999_999), hasCode('CATALOG_EVENT_NOT_FOUND'));
});

test('prune deletes old events; ids keep growing', (t) => {
  const c = catalog(t);
  const a = c.events.append({ type: 'run.started', severity: 'info', message: 'old', at: new Date(1_000) });
  const b = c.events.append({ type: 'run.started', severity: 'info', message: 'new', at: new Date(9_000) });
  assert.equal(c.events.prune(new Date(5_000)), 1);
  assert.equal(c.events.get(a.id), undefined);
  assert.equal(c.events.prune(new Date(10_000)), 1);
  assert.equal(c.events.get(b.id), undefined);
  const next = c.events.append({ type: 'run.started', severity: 'info', message: 'next' });
  assert.ok(next.id > b.id, 'a tailing client never sees an id twice');
});

test('prune keeps the first and last event of an open problem; a dry run only counts', (t) => {
  const c = catalog(t);
  const at = (ms: number) => new Date(ms);
  const first = c.events.append({
    type: 'rpo.breached',
    severity: 'error',
    message: 'first',
    dedupKey: 'rpo:a:dr1',
    at: at(1_000),
  });
  const middle = c.events.append({
    type: 'rpo.breached',
    severity: 'error',
    message: 'middle',
    dedupKey: 'rpo:a:dr1',
    at: at(2_000),
  });
  const last = c.events.append({
    type: 'rpo.breached',
    severity: 'error',
    message: 'last',
    dedupKey: 'rpo:a:dr1',
    at: at(3_000),
  });
  const loose = c.events.append({ type: 'run.started', severity: 'info', message: 'old', at: at(1_500) });
  assert.equal(c.events.prune(at(10_000), { dryRun: true }), 2);
  assert.ok(c.events.get(middle.id), 'a dry run deletes nothing');
  assert.equal(c.events.prune(at(10_000)), 2);
  assert.equal(c.events.get(middle.id), undefined);
  assert.equal(c.events.get(loose.id), undefined);
  assert.ok(c.events.get(first.id));
  assert.ok(c.events.get(last.id));
  assert.equal(c.events.openProblem('rpo:a:dr1')?.occurrences, 3);
  // Once resolved, they age out like any other event.
  c.events.resolve('rpo:a:dr1');
  assert.equal(c.events.prune(at(10_000)), 2);
});
