import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import type { Catalog } from './catalog.ts';
import { scratchCatalog } from './test-support.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-cat-runs-');

function hasCode(code: string) {
  return (e: unknown) => e instanceof HavenError && e.code === code;
}

test('runs: start, finish, get', (t) => {
  const c = catalog(t);
  const started = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule', at: new Date(1_000) });
  assert.deepEqual(
    { ...started },
    {
      id: started.id,
      kind: 'job',
      job: 'nightly',
      trigger: 'schedule',
      status: 'running',
      startedAt: new Date(1_000),
      finishedAt: null,
      pid: process.pid,
      summary: null,
      errorCode: null,
      errorMessage: null,
    },
  );
  const finished = c.runs.finish(started.id, {
    status: 'partial',
    summary: { ok: 1, failed: 1, bytes: 10n },
    errorCode: 'NBD_SHORT_REPLY',
    errorMessage: 'db01 failed',
    at: new Date(5_000),
  });
  assert.equal(finished.status, 'partial');
  assert.deepEqual(finished.finishedAt, new Date(5_000));
  assert.deepEqual(finished.summary, { ok: 1, failed: 1, bytes: '10' });
  assert.equal(finished.errorCode, 'NBD_SHORT_REPLY');
  const got = c.runs.get(started.id);
  assert.equal(got?.status, 'partial');
  assert.deepEqual(got?.servers, []);
  assert.equal(c.runs.get(9999), undefined);
});

test('runs: finishing twice, or a run that does not exist, is refused', (t) => {
  const c = catalog(t);
  const r = c.runs.start({ kind: 'protect', trigger: 'manual' });
  c.runs.finish(r.id, { status: 'ok' });
  assert.throws(() => c.runs.finish(r.id, { status: 'failed' }), hasCode('CATALOG_RUN_FINISHED'));
  assert.equal(c.runs.get(r.id)?.status, 'ok');
  assert.throws(() => c.runs.finish(424242, { status: 'ok' }), hasCode('CATALOG_RUN_NOT_FOUND'));
  assert.throws(
    () => c.runs.recordServer(424242, { server: 's', target: 't', status: 'ok' }),
    hasCode('CATALOG_RUN_NOT_FOUND'),
  );
});

test('runs: bad values are CATALOG_BAD_VALUE, and nothing is written', (t) => {
  const c = catalog(t);
  const bad = (fn: () => unknown) => assert.throws(fn, hasCode('CATALOG_BAD_VALUE'));
  bad(() => c.runs.start({ kind: 'backup' as never, trigger: 'manual' }));
  bad(() => c.runs.start({ kind: 'job', trigger: 'cron' as never }));
  bad(() => c.runs.start({ kind: 'job', job: '', trigger: 'manual' }));
  bad(() => c.runs.start({ kind: 'job', trigger: 'manual', at: new Date(Number.NaN) }));
  const r = c.runs.start({ kind: 'job', trigger: 'manual' });
  bad(() => c.runs.finish(r.id, { status: 'running' as never }));
  bad(() => c.runs.recordServer(r.id, { server: 's', target: 't', status: 'done' as never }));
  bad(() => c.runs.recordServer(r.id, { server: 's', target: 't', status: 'ok', mode: 'diff' as never }));
  bad(() => c.runs.recordServer(r.id, { server: 's', target: 't', status: 'ok', bytesSent: -1 }));
  bad(() => c.runs.recordServer(r.id, { server: '', target: 't', status: 'ok' }));
  bad(() => c.runs.list({ limit: 0 }));
  assert.equal(c.runs.list().length, 1);
  assert.deepEqual(c.runs.servers(r.id), []);
});

test('runs: list is newest first, filters, limits and pages', (t) => {
  const c = catalog(t);
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) {
    const r = c.runs.start({
      kind: i % 2 ? 'drill' : 'job',
      job: i % 3 ? 'nightly' : 'weekly',
      trigger: i === 9 ? 'missed' : 'schedule',
      at: new Date(1_000 * (i + 1)),
    });
    if (i < 8) c.runs.finish(r.id, { status: i === 4 ? 'failed' : 'ok' });
    ids.push(r.id);
  }
  const all = c.runs.list();
  assert.deepEqual(
    all.map((r) => r.id),
    [...ids].reverse(),
  );
  assert.deepEqual(
    c.runs.list({ kind: 'drill' }).map((r) => r.id),
    [ids[9], ids[7], ids[5], ids[3], ids[1]],
  );
  assert.deepEqual(
    c.runs.list({ job: 'weekly' }).map((r) => r.id),
    [ids[9], ids[6], ids[3], ids[0]],
  );
  assert.deepEqual(
    c.runs.list({ status: 'failed' }).map((r) => r.id),
    [ids[4]],
  );
  assert.deepEqual(
    c.runs.list({ status: 'running' }).map((r) => r.id),
    [ids[9], ids[8]],
  );
  assert.deepEqual(
    c.runs.list({ trigger: 'missed' }).map((r) => r.id),
    [ids[9]],
  );
  assert.deepEqual(
    c.runs.list({ since: new Date(8_000) }).map((r) => r.id),
    [ids[9], ids[8], ids[7]],
  );
  assert.deepEqual(
    c.runs.list({ limit: 3 }).map((r) => r.id),
    [ids[9], ids[8], ids[7]],
  );
  assert.deepEqual(
    c.runs.list({ limit: 3, beforeId: ids[7] }).map((r) => r.id),
    [ids[6], ids[5], ids[4]],
  );
  assert.deepEqual(
    c.runs.list({ kind: 'job', job: 'nightly', status: 'ok' }).map((r) => r.id),
    [ids[2]],
  );
});

test('per-server results: recorded, updated in place, listed with the run', (t) => {
  const c = catalog(t);
  const run = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  const first = c.runs.recordServer(run.id, {
    server: 'web01',
    target: 'ssh://dr1/srv',
    status: 'running',
    mode: 'incremental',
    startedAt: new Date(10_000),
  });
  assert.equal(first.finishedAt, null);
  assert.equal(first.attempts, 1);
  const done = c.runs.recordServer(run.id, {
    server: 'web01',
    target: 'ssh://dr1/srv',
    status: 'ok',
    bytesRead: 1_000_000,
    bytesSent: 250_000,
    durationMs: 4_200,
    generationId: 'gen-7',
    copyAt: new Date(10_500),
    attempts: 2,
    finishedAt: new Date(15_000),
  });
  assert.deepEqual(
    { ...done },
    {
      runId: run.id,
      server: 'web01',
      target: 'ssh://dr1/srv',
      status: 'ok',
      mode: 'incremental',
      startedAt: new Date(10_000),
      finishedAt: new Date(15_000),
      bytesRead: 1_000_000,
      bytesSent: 250_000,
      durationMs: 4_200,
      generationId: 'gen-7',
      copyAt: new Date(10_500),
      errorCode: null,
      errorMessage: null,
      attempts: 2,
      storeTotalBytes: null,
      storeFreeBytes: null,
    },
  );
  c.runs.recordServer(run.id, {
    server: 'db01',
    target: 'ssh://dr1/srv',
    status: 'failed',
    mode: 'full',
    errorCode: 'VIRT_NO_LIBVIRTD',
    errorMessage: 'libvirtd is not running',
    attempts: 3,
  });
  const detail = c.runs.get(run.id);
  assert.deepEqual(
    detail?.servers.map((s) => [s.server, s.status, s.errorCode]),
    [
      ['db01', 'failed', 'VIRT_NO_LIBVIRTD'],
      ['web01', 'ok', null],
    ],
  );
});

test('status: a good copy sets the newest good time; failures keep it and record the error', (t) => {
  const c = catalog(t);
  const r1 = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  c.runs.recordServer(r1.id, { server: 'web01', target: 'dr1', status: 'running' });
  assert.equal(c.status.get('web01', 'dr1'), undefined, 'a running result does not count yet');
  c.runs.recordServer(r1.id, {
    server: 'web01',
    target: 'dr1',
    status: 'ok',
    mode: 'full',
    bytesRead: 100,
    bytesSent: 60,
    durationMs: 900,
    generationId: 'g1',
    copyAt: new Date(50_000),
    finishedAt: new Date(51_000),
  });
  assert.deepEqual(
    { ...c.status.get('web01', 'dr1') },
    {
      server: 'web01',
      target: 'dr1',
      job: 'nightly',
      lastGoodAt: new Date(50_000),
      lastGoodGeneration: 'g1',
      lastRunId: r1.id,
      lastRunAt: new Date(51_000),
      lastResult: 'ok',
      lastMode: 'full',
      lastBytesRead: 100,
      lastBytesSent: 60,
      lastDurationMs: 900,
      lastErrorCode: null,
      lastErrorMessage: null,
    },
  );

  const r2 = c.runs.start({ kind: 'protect', trigger: 'manual' });
  c.runs.recordServer(r2.id, {
    server: 'web01',
    target: 'dr1',
    status: 'failed',
    errorCode: 'NO_SPACE',
    errorMessage: 'no space left',
    bytesSent: 5,
    finishedAt: new Date(90_000),
  });
  const s = c.status.get('web01', 'dr1');
  assert.equal(s?.lastResult, 'failed');
  assert.equal(s?.lastErrorCode, 'NO_SPACE');
  assert.equal(s?.lastBytesSent, 5);
  assert.equal(s?.job, null);
  assert.deepEqual(s?.lastGoodAt, new Date(50_000), 'the newest good copy is still the first');
  assert.equal(s?.lastGoodGeneration, 'g1');

  // A late result of an older copy does not move the newest good copy back.
  const r3 = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'api' });
  c.runs.recordServer(r3.id, {
    server: 'web01',
    target: 'dr1',
    status: 'ok',
    generationId: 'g0',
    copyAt: new Date(40_000),
  });
  assert.deepEqual(c.status.get('web01', 'dr1')?.lastGoodAt, new Date(50_000));
  assert.equal(c.status.get('web01', 'dr1')?.lastGoodGeneration, 'g1');

  // Drills and verifies do not copy: they leave the status alone.
  const drill = c.runs.start({ kind: 'drill', job: 'weekly', trigger: 'schedule' });
  c.runs.recordServer(drill.id, {
    server: 'web01',
    target: 'dr1',
    status: 'failed',
    errorCode: 'DRILL_NO_BOOT_MARKER',
  });
  assert.equal(c.status.get('web01', 'dr1')?.lastErrorCode, null);

  c.runs.recordServer(r3.id, { server: 'db01', target: 'dr1', status: 'skipped' });
  c.runs.recordServer(r3.id, { server: 'web01', target: 'dr2', status: 'ok' });
  assert.deepEqual(
    c.status.list().map((x) => [x.server, x.target, x.lastResult, x.lastGoodAt === null]),
    [
      ['db01', 'dr1', 'skipped', true],
      ['web01', 'dr1', 'ok', false],
      ['web01', 'dr2', 'ok', false],
    ],
  );
  assert.deepEqual(
    c.status.list({ server: 'web01' }).map((x) => x.target),
    ['dr1', 'dr2'],
  );
  assert.equal(c.status.forget('web01', 'dr2'), 1);
  assert.equal(c.status.forget('web01'), 1);
  assert.deepEqual(
    c.status.list().map((x) => x.server),
    ['db01'],
  );
});

test('abandonStale closes runs whose process is gone, and their unfinished copies', (t) => {
  const c = catalog(t);
  const alive = c.runs.start({ kind: 'job', job: 'a', trigger: 'schedule', pid: 111 });
  const dead = c.runs.start({ kind: 'job', job: 'b', trigger: 'schedule', pid: 222 });
  const done = c.runs.start({ kind: 'job', job: 'c', trigger: 'schedule', pid: 222 });
  c.runs.finish(done.id, { status: 'ok' });
  c.runs.recordServer(dead.id, { server: 'web01', target: 'dr1', status: 'running' });
  c.runs.recordServer(dead.id, { server: 'db01', target: 'dr1', status: 'ok', generationId: 'g' });

  const closed = c.runs.abandonStale((pid) => pid === 111, new Date(77_000));
  assert.deepEqual(
    closed.map((r) => [r.id, r.status, r.errorCode]),
    [[dead.id, 'failed', 'RUN_ABANDONED']],
  );
  assert.equal(c.runs.get(alive.id)?.status, 'running');
  assert.equal(c.runs.get(done.id)?.status, 'ok');
  const servers = c.runs.get(dead.id)?.servers ?? [];
  assert.deepEqual(
    servers.map((s) => [s.server, s.status, s.errorCode]),
    [
      ['db01', 'ok', null],
      ['web01', 'failed', 'RUN_ABANDONED'],
    ],
  );
  assert.equal(c.status.get('web01', 'dr1')?.lastErrorCode, 'RUN_ABANDONED');
  assert.deepEqual(
    c.runs.abandonStale((pid) => pid === 111),
    [],
    'a second pass finds nothing more to close',
  );
});

test('abandonStale with the real process table: this process is alive, a finished child is not', async (t) => {
  const c = catalog(t);
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['-e', '']);
  const childPid = child.pid!;
  await new Promise((resolve) => child.on('exit', resolve));
  const mine = c.runs.start({ kind: 'protect', trigger: 'manual' });
  const gone = c.runs.start({ kind: 'protect', trigger: 'manual', pid: childPid });
  const closed = c.runs.abandonStale();
  assert.deepEqual(
    closed.map((r) => r.id),
    [gone.id],
  );
  assert.equal(c.runs.get(mine.id)?.status, 'running');
});

test('prune deletes old finished runs and their results, never running ones', (t) => {
  const c = catalog(t);
  const old = c.runs.start({ kind: 'job', job: 'j', trigger: 'schedule', at: new Date(1_000) });
  c.runs.recordServer(old.id, { server: 's', target: 't', status: 'ok' });
  c.runs.finish(old.id, { status: 'ok' });
  const oldRunning = c.runs.start({ kind: 'job', job: 'j', trigger: 'schedule', at: new Date(2_000) });
  const recent = c.runs.start({ kind: 'job', job: 'j', trigger: 'schedule', at: new Date(9_000) });
  c.runs.recordServer(recent.id, { server: 's', target: 't', status: 'ok' });
  c.runs.finish(recent.id, { status: 'ok' });
  assert.equal(c.runs.prune(new Date(5_000), { dryRun: true }), 1);
  assert.ok(c.runs.get(old.id), 'a dry run deletes nothing');
  assert.equal(c.runs.prune(new Date(5_000)), 1);
  assert.equal(c.runs.get(old.id), undefined);
  assert.deepEqual(c.runs.servers(old.id), []);
  assert.ok(c.runs.get(oldRunning.id));
  assert.ok(c.runs.get(recent.id));
  // Ids are not reused after pruning.
  const next = c.runs.start({ kind: 'job', trigger: 'manual' });
  assert.ok(next.id > recent.id);
});

test('prune keeps old runs that something points at: a pair’s last run, a schedule’s, an in-flight delta’s, a job’s newest', (t) => {
  const c = catalog(t);
  const at = (ms: number) => new Date(ms);
  const finished = (job: string | undefined, ms: number) => {
    const r = c.runs.start({ kind: job ? 'job' : 'protect', job, trigger: 'manual', at: at(ms) });
    return r;
  };
  // The pair (a, dr1) was last copied by run 1: haven status links to it.
  const pairLast = finished(undefined, 1_000);
  c.runs.recordServer(pairLast.id, { server: 'a', target: 'dr1', status: 'ok' });
  c.runs.finish(pairLast.id, { status: 'ok' });
  // Two runs of job j: the older one goes, the newer is j's newest and stays.
  const jOld = finished('j', 2_000);
  c.runs.finish(jOld.id, { status: 'failed' });
  const jNew = finished('j', 3_000);
  c.runs.finish(jNew.id, { status: 'ok' });
  // A schedule's last run, and a run whose delta is still in flight.
  const sched = finished(undefined, 4_000);
  c.runs.finish(sched.id, { status: 'ok' });
  c.schedule.update('drill', 'd', { lastRunId: sched.id });
  const inflight = finished(undefined, 5_000);
  c.runs.finish(inflight.id, { status: 'failed' });
  c.inflight.set({ server: 'b', target: 'store-1', deltaId: 'd1', checkpoint: 'cp', runId: inflight.id });
  const plain = finished(undefined, 6_000);
  c.runs.finish(plain.id, { status: 'ok' });

  assert.equal(c.runs.prune(at(100_000)), 2);
  assert.equal(c.runs.get(jOld.id), undefined);
  assert.equal(c.runs.get(plain.id), undefined);
  for (const kept of [pairLast, jNew, sched, inflight]) assert.ok(c.runs.get(kept.id), `run ${kept.id} kept`);
});
