import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { scratchDir } from '../core/test-support/scratch.ts';
import { type Catalog, openCatalog } from './catalog.ts';
import { MIGRATIONS } from './schema.ts';

const dir = (t: TestContext): string => scratchDir('haven-t-cat-hist-', t);

function catalog(t: TestContext): Catalog {
  const c = openCatalog(join(dir(t), 'catalog.sqlite'));
  t.after(() => c.close());
  return c;
}

const at = (min: number) => new Date(Date.UTC(2026, 11, 5, 0, min));

function copy(
  c: Catalog,
  o: { job?: string; server: string; target: string; min: number; ok?: boolean; free?: number },
) {
  const run = c.runs.start({
    kind: o.job ? 'job' : 'protect',
    job: o.job,
    trigger: 'manual',
    at: at(o.min - 1),
  });
  c.runs.recordServer(run.id, {
    server: o.server,
    target: o.target,
    status: o.ok === false ? 'failed' : 'ok',
    startedAt: at(o.min - 1),
    finishedAt: at(o.min),
    bytesRead: 1000 * o.min,
    bytesSent: 100 * o.min,
    durationMs: 60_000,
    ...(o.ok === false ? {} : { copyAt: at(o.min - 1), generationId: `g-${o.min}` }),
    ...(o.free === undefined ? {} : { storeTotalBytes: 1_000_000, storeFreeBytes: o.free }),
  });
  c.runs.finish(run.id, { status: o.ok === false ? 'failed' : 'ok', at: at(o.min) });
  return run.id;
}

test('history: copies, drills and capacity by finish time, oldest first, filtered', (t) => {
  const c = catalog(t);
  copy(c, { job: 'nightly', server: 'web', target: 'dr', min: 10, free: 900_000 });
  copy(c, { job: 'nightly', server: 'db', target: 'dr', min: 20 });
  copy(c, { job: 'nightly', server: 'web', target: 'dr', min: 30, ok: false });
  copy(c, { server: 'web', target: '/srv/store', min: 40, free: 800_000 });
  const drill = c.runs.start({ kind: 'drill', job: 'weekly', trigger: 'schedule', at: at(49) });
  c.runs.recordServer(drill.id, {
    server: 'web',
    target: '/srv/store',
    status: 'ok',
    durationMs: 4200,
    finishedAt: at(50),
  });
  c.runs.finish(drill.id, { status: 'ok', at: at(50) });
  const running = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'api', at: at(60) });
  c.runs.recordServer(running.id, { server: 'web', target: 'dr', status: 'running' });

  const all = c.history.copies({ since: at(0) });
  assert.deepEqual(
    all.map((r) => [r.server, r.target, r.status, r.kind, r.job, r.finishedAt?.getTime()]),
    [
      ['web', 'dr', 'ok', 'job', 'nightly', at(10).getTime()],
      ['db', 'dr', 'ok', 'job', 'nightly', at(20).getTime()],
      ['web', 'dr', 'failed', 'job', 'nightly', at(30).getTime()],
      ['web', '/srv/store', 'ok', 'protect', null, at(40).getTime()],
    ],
    'final copy results only (no drill, nothing running), oldest first',
  );
  assert.deepEqual(
    c.history.copies({ since: at(15), server: 'web' }).map((r) => r.finishedAt?.getTime()),
    [at(30).getTime(), at(40).getTime()],
  );
  assert.deepEqual(
    c.history.copies({ since: at(0), limit: 2 }).map((r) => r.server),
    ['web', 'web'],
    'the limit keeps the newest',
  );
  const drills = c.history.drills({ since: at(0) });
  assert.deepEqual(
    drills.map((d) => [d.server, d.target, d.job, d.status, d.durationMs]),
    [['web', '/srv/store', 'weekly', 'ok', 4200]],
  );
  assert.deepEqual(
    c.history.capacity({ since: at(0) }).map((r) => [r.target, r.storeTotalBytes, r.storeFreeBytes]),
    [
      ['dr', 1_000_000, 900_000],
      ['/srv/store', 1_000_000, 800_000],
    ],
  );
  assert.deepEqual(
    c.history.goodCopiesBefore(at(35)).map((g) => [g.server, g.target, g.goodAt.getTime()]),
    [
      ['db', 'dr', at(19).getTime()],
      ['web', 'dr', at(9).getTime()],
    ].sort(),
    'the failed copy at 30 is no good copy',
  );
  const runs = c.history.runsAfter(0);
  assert.equal(runs.length, 6);
  assert.deepEqual(
    runs.map((r) => [r.status, r.servers.length]),
    [
      ['ok', 1],
      ['ok', 1],
      ['failed', 1],
      ['ok', 1],
      ['ok', 1],
      ['running', 1],
    ],
  );
  assert.deepEqual(
    c.history.runsAfter(runs[3]!.id, 1).map((r) => r.id),
    [runs[4]!.id],
  );
});

test('migration 3: results from before it have no capacity; an update never forgets a reported one', (t) => {
  const path = join(dir(t), 'catalog.sqlite');
  const db = new Database(path);
  for (const m of MIGRATIONS.slice(0, 2)) {
    db.exec(m.sql);
    db.pragma(`user_version = ${m.version}`);
  }
  db.prepare(
    `INSERT INTO runs (kind, job, trigger, status, started_at) VALUES ('job', 'nightly', 'manual', 'ok', 1)`,
  ).run();
  db.prepare(
    `INSERT INTO run_servers (run_id, server, target, status, started_at, finished_at) VALUES (1, 'web', 'dr', 'ok', 1, 2)`,
  ).run();
  db.close();
  const c = openCatalog(path);
  t.after(() => c.close());
  const [old] = c.runs.servers(1);
  assert.equal(old?.storeTotalBytes, null);
  assert.equal(old?.storeFreeBytes, null);
  const run = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'manual' });
  c.runs.recordServer(run.id, {
    server: 'web',
    target: 'dr',
    status: 'running',
    storeTotalBytes: 10,
    storeFreeBytes: 4,
  });
  const later = c.runs.recordServer(run.id, { server: 'web', target: 'dr', status: 'failed' });
  assert.deepEqual([later.storeTotalBytes, later.storeFreeBytes], [10, 4]);
});
