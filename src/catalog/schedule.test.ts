import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import type { Catalog } from './catalog.ts';
import { scratchCatalog } from './test-support.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-cat-sched-');

test('schedule state: partial updates keep what is not given, null clears', (t) => {
  const c = catalog(t);
  assert.equal(c.schedule.get('job', 'nightly'), undefined);
  const s1 = c.schedule.update('job', 'nightly', { nextRunAt: new Date(10_000) });
  assert.deepEqual(
    { ...s1, updatedAt: null },
    {
      kind: 'job',
      name: 'nightly',
      lastRunAt: null,
      lastFireAt: null,
      nextRunAt: new Date(10_000),
      lastRunId: null,
      updatedAt: null,
    },
  );
  const run = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  c.schedule.update('job', 'nightly', {
    lastRunAt: new Date(10_050),
    lastFireAt: new Date(10_000),
    lastRunId: run.id,
  });
  const s2 = c.schedule.update('job', 'nightly', { nextRunAt: new Date(96_400_000) });
  assert.deepEqual(s2.lastRunAt, new Date(10_050));
  assert.deepEqual(s2.lastFireAt, new Date(10_000));
  assert.equal(s2.lastRunId, run.id);
  assert.deepEqual(s2.nextRunAt, new Date(96_400_000));

  const s3 = c.schedule.update('job', 'nightly', { nextRunAt: null });
  assert.equal(s3.nextRunAt, null, 'null clears (the job lost its schedule)');
  assert.deepEqual(s3.lastRunAt, new Date(10_050));
  assert.deepEqual(c.schedule.get('job', 'nightly'), s3);

  c.schedule.update('drill', 'nightly', { nextRunAt: new Date(1) });
  c.schedule.update('drill', 'weekly', { lastFireAt: new Date(2) });
  assert.deepEqual(
    c.schedule.list().map((s) => `${s.kind}:${s.name}`),
    ['drill:nightly', 'drill:weekly', 'job:nightly'],
  );
  assert.equal(c.schedule.forget('drill', 'nightly'), true);
  assert.equal(c.schedule.forget('drill', 'nightly'), false);
  assert.equal(c.schedule.list().length, 2);
  assert.throws(
    () => c.schedule.update('task' as never, 'x', {}),
    (e: unknown) => e instanceof HavenError && e.code === 'CATALOG_BAD_VALUE',
  );
});
