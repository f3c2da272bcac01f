/**
 * Multi-server job runs through the real `haven job run` (issue 4, Build 2 and 7): servers in
 * order of size, largest first; at most `parallel` at once; a server that fails does not stop
 * the others; a failure that passes is retried after the back-off; a result per server in the
 * catalog, `haven runs`, `haven events` and `haven status`; the generations verify.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Run, ServerResult } from '../../src/catalog/catalog.ts';
import type { JobRunResult, StatusRow } from '../../src/jobs/index.ts';
import { backupBegin, backupEnd } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { scratchDir, waitFor, withCatalog, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-jobs';

test('a job of four servers: largest first, two at a time, one missing, one retried', async (t) => {
  const { dir, onCleanup } = await scratchDir(t, `${PREFIX}-run`);
  const store = join(dir, 'store');
  const big = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 96 }] });
  const mid = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 64 }] });
  const small = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  await big.writePattern('vda', 1, 40);
  await mid.writePattern('vda', 2, 20);
  await small.writePattern('vda', 3, 10);
  const missing = `${PREFIX}-nosuch-${Date.now() % 100000}`;
  const config = await writeConfig(
    dir,
    `targets:
  dr:
    url: ${store}
    copies: 2
jobs:
  nightly:
    servers: [${small.name}, ${missing}, ${mid.name}, ${big.name}]
    target: dr
    parallel: 2
    retries: 2
    retry_backoff: 2s
    rpo: 1h
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });

  // Another tool's backup job on the smallest server: its first attempt fails (retryable).
  const foreign = await backupBegin(small.virsh, small.name, {
    socketPath: join(dir, 'foreign.sock'),
    scratchDir: dir,
  });
  assert.ok(foreign.socketPath);
  onCleanup(() => backupEnd(small.virsh, small.name).catch(() => {}));

  const running = runHaven(h, ['job', 'run', 'nightly', '--json']);
  // Once the retry is announced, the other tool finishes.
  const retry = await waitFor(
    'the retry of the smallest server',
    () =>
      withCatalog(h.stateDir, (c) =>
        c.events.list({ type: 'server.retry', server: small.name, limit: 1 }).at(0),
      ),
    300_000,
  );
  assert.match(retry.message, /attempt 1 failed \(ENGINE_FOREIGN_BACKUP\); trying again in 2\.0s/);
  await backupEnd(small.virsh, small.name);

  const r = await running;
  assert.equal(r.code, 12, `partial run exits 12:\n${r.stderr}`);
  assert.match(r.stderr, /\[JOB_FAILED\]: job nightly partial: 1 of 4 copies failed/);
  const result = JSON.parse(r.stdout) as JobRunResult;
  assert.equal(result.status, 'partial');
  const by = Object.fromEntries(result.servers.map((s) => [s.server, s]));
  for (const g of [big, mid, small]) assert.equal(by[g.name]?.status, 'ok', `${g.name} copied`);
  assert.equal(by[missing]?.status, 'failed');
  assert.equal(by[missing]?.error?.code, 'JOB_SERVER_NOT_FOUND');
  assert.equal(by[small.name]?.attempts, 2, 'the smallest server succeeded on its second attempt');
  assert.equal(by[big.name]?.attempts, 1);
  assert.equal(by[big.name]?.mode, 'full');

  // Largest first, never more than two at once (from the catalog's own timestamps).
  const results = withCatalog(h.stateDir, (c) => c.runs.get(result.runId!)!.servers);
  const copied = results.filter((s) => s.status === 'ok');
  const started = [...copied].sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime());
  assert.deepEqual(
    started
      .slice(0, 2)
      .map((s) => s.server)
      .sort(),
    [big.name, mid.name].sort(),
    'the two largest start first',
  );
  const smallRow = copied.find((s) => s.server === small.name)!;
  const firstDone = Math.min(
    ...copied.filter((s) => s.server !== small.name).map((s) => s.finishedAt!.getTime()),
  );
  assert.ok(smallRow.startedAt.getTime() >= firstDone, 'the third waits for a free slot');
  for (const s of copied) {
    const overlapping = copied.filter(
      (o) =>
        o.startedAt.getTime() <= s.startedAt.getTime() && o.finishedAt!.getTime() > s.startedAt.getTime(),
    );
    assert.ok(overlapping.length <= 2, `at most 2 at once (at the start of ${s.server})`);
  }

  // What the operator sees.
  const runs = await havenJson<Array<Run & { servers: ServerResult[] }>>(h, ['runs']);
  assert.equal(runs.length, 1);
  assert.equal(runs[0]!.status, 'partial');
  assert.equal(runs[0]!.job, 'nightly');
  assert.equal(runs[0]!.trigger, 'manual');
  assert.equal(runs[0]!.servers.length, 4);
  const table = await runHaven(h, ['runs', String(result.runId)]);
  assert.equal(table.code, 0, table.stderr);
  assert.ok(table.stdout.includes(missing) && table.stdout.includes('JOB_SERVER_NOT_FOUND'), table.stdout);

  const events = await havenJson<Array<{ type: string; server: string | null; severity: string }>>(h, [
    'events',
  ]);
  const types = events.map((e) => `${e.type}:${e.server ?? ''}`);
  assert.ok(types.includes(`server.failed:${missing}`));
  assert.ok(types.includes(`server.retry:${small.name}`));
  assert.ok(types.includes('run.started:') && types.includes('run.finished:'));
  assert.equal(events.find((e) => e.type === 'server.failed')?.severity, 'error');

  const status = await havenJson<StatusRow[]>(h, ['status']);
  for (const g of [big, mid, small]) {
    const row = status.find((s) => s.server === g.name && s.target === 'dr');
    assert.ok(row, `status row for ${g.name}`);
    assert.equal(row.rpo, 'ok');
    assert.equal(row.lastResult, 'ok');
    assert.ok(row.lastGoodAt && row.nextRun === null);
  }
  const text = await runHaven(h, ['status']);
  assert.match(
    text.stdout,
    /server\s+.*target\s+.*newest copy\s+.*rpo age \/ objective\s+.*next run\s+.*last result/,
  );

  const verify = await havenJson<{ ok: boolean; checkedServers: number; checkedGenerations: number }>(h, [
    'verify',
    '--store',
    store,
  ]);
  assert.equal(verify.ok, true);
  assert.equal(verify.checkedServers, 3);

  // `haven job list` shows the job with its last run.
  const jobs = await havenJson<Array<{ name: string; lastRun: { id: number; status: string } | null }>>(h, [
    'job',
    'list',
  ]);
  assert.equal(jobs[0]?.lastRun?.status, 'partial');
});
