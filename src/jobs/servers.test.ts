import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import type { ServerSummary } from '../engine/index.ts';
import { backoffMs, retryable } from './copy.ts';
import { tuningFor } from './runner.ts';
import { orderBySize, selectFrom } from './servers.ts';

const s = (name: string, sizeBytes: number): ServerSummary => ({
  name,
  state: 'running',
  persistent: true,
  disks: [],
  sizeBytes,
});

test('selection: patterns, largest first, ties by name, literal names that do not exist', () => {
  const all = [s('web01', 10), s('web02', 30), s('db01', 30), s('test-web', 99), s('app1', 5)];
  const sel = selectFrom(['web*', 'db01', '!test-*', 'gone01', 'app?'], all);
  assert.deepEqual(
    sel.selected.map((x) => x.name),
    ['db01', 'web02', 'web01', 'app1'],
  );
  assert.deepEqual(sel.missing, ['gone01']);
  assert.deepEqual(selectFrom(['*', '!*'], all).selected, []);
  assert.deepEqual(
    orderBySize([s('b', 1), s('a', 1), s('c', 2)]).map((x) => x.name),
    ['c', 'a', 'b'],
  );
});

test('retries: back-off doubles up to an hour; final kinds are not retried', () => {
  assert.deepEqual(
    [1, 2, 3, 4].map((n) => backoffMs(60_000, n)),
    [60_000, 120_000, 240_000, 480_000],
  );
  assert.equal(backoffMs(60_000, 30), 3_600_000);
  // STORE_DELTA_FAILED carries the kind of the failure it reports: any kind (src/store/error-codes.ts).
  const e = (kind: HavenError['kind']) => new HavenError('STORE_DELTA_FAILED', 'x', { kind });
  assert.equal(retryable(e('unavailable')), true);
  assert.equal(retryable(e('conflict')), true);
  assert.equal(retryable(e('integrity')), true);
  for (const k of ['usage', 'config', 'not-found', 'refused', 'interrupted'] as const)
    assert.equal(retryable(e(k)), false);
});

test('memory budget: reads in flight from the job buffer', () => {
  const job = (buffer: number) => ({ buffer }) as Parameters<typeof tuningFor>[0];
  assert.equal(tuningFor(job(64 * 1024 ** 2)).inflight, 64);
  assert.equal(tuningFor(job(8 * 1024 ** 2)).inflight, 8);
  assert.equal(tuningFor(job(1024 ** 2)).inflight, 1);
  assert.equal(tuningFor(job(4 * 1024 ** 3)).inflight, 64);
});
