/**
 * Issue 13, item 11: Ctrl-C (SIGINT) or SIGTERM during a run ends it as docs/exit-codes.md says:
 * exit 130 with `[INTERRUPTED]`, never `[INTERNAL]`, after releasing what it held: no backup job
 * left on the domain, no NBD socket or scratch file, no receiver process, the catalog's run
 * `cancelled`. What the receiver staged is kept, and the next run completes the copy. The same
 * for `haven job run`, and for a drill (whose domain goes).
 */
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import { activeBackup } from '../../src/virt/index.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { type HavenEnv, type HavenResult, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { waitFor, withCatalog, writeConfig } from './jobs-helpers.ts';
import { domainsLike, protect, site } from './recovery-helpers.ts';

const PREFIX = 'haven-t-signal';

/** Resolves once a delta of `server` in `store` holds staged data: the run is mid-transfer. */
function midTransfer(store: string, server: string): Promise<unknown> {
  const deltas = join(store, '.haven', 'servers', server, 'deltas');
  return waitFor(
    'staged data',
    async () => {
      for (const d of await readdir(deltas)) {
        if (((await stat(join(deltas, d, 'data')).catch(() => undefined))?.size ?? 0) > 0) return true;
      }
      return undefined;
    },
    120_000,
    50,
  );
}

async function assertReleased(h: HavenEnv, guest: TestGuest, store: string, why: string): Promise<void> {
  assert.equal(await activeBackup(guest.virsh, guest.name), null, `${why}: the backup job ended`);
  const run = h.env.HAVEN_RUN_DIR!;
  assert.deepEqual(await readdir(join(run, 'nbd')).catch(() => []), [], `${why}: no NBD socket left`);
  assert.deepEqual(await readdir(join(run, 'scratch')).catch(() => []), [], `${why}: no scratch file left`);
  const receivers = await exec('pgrep', ['-f', `receive --stdio --store ${store}`], { okCodes: [0, 1] });
  assert.equal(receivers.stdout.trim(), '', `${why}: no receiver left running`);
}

function assertInterrupted(r: HavenResult, what: RegExp, signal: string): void {
  assert.equal(r.code, 130, `exit 130 after ${signal}: ${r.stderr}`);
  assert.match(r.stderr, what);
  assert.doesNotMatch(r.stderr, /\[INTERNAL\]|a bug in Haven/);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} during protect: exit 130, everything released, the next run completes`, async (t) => {
    const dir = await testDir(t, `${PREFIX}-${signal.toLowerCase()}`);
    const h = await havenEnv(dir, { HAVEN_RECEIVE_CHECKPOINT_INTERVAL: '300ms' });
    const store = join(dir, 'store');
    const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
    const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
    const image = join(store, `${guest.name}_${guest.disks[0]!.storeName}_1.raw`);
    const protect = ['protect', guest.name, '--to', store, '--copies', '2'];
    await guest.writePattern('vda', 1, 16);
    await model.writePattern(1, 16);
    await havenJson(h, protect);

    await guest.writePattern('vda', 2, 96);
    await model.writePattern(2, 96);
    const r = await runHaven(h, [...protect, '--bwlimit', '2MiB/s'], {
      killOn: midTransfer(store, guest.name),
      killSignal: signal,
    });
    assertInterrupted(r, new RegExp(`\\[INTERRUPTED\\]: protect ${guest.name} stopped by ${signal}`), signal);
    await assertReleased(h, guest, store, signal);
    const runs = withCatalog(h.stateDir, (c) => c.runs.list({ kind: 'protect' }));
    assert.equal(runs[0]?.status, 'cancelled', 'the run is recorded as cancelled');

    const next = await havenJson<ProtectResult>(h, protect);
    assert.equal(await firstDifference(image, model.path), -1, 'the next run completed the copy');
    assert.ok(next.attemptLog[0]!.stagedBytes > 0, 'it continued from what the stopped run had staged');
  });
}

test('SIGTERM during a job run: exit 130, the run cancelled, nothing left', async (t) => {
  const dir = await testDir(t, `${PREFIX}-job`);
  const store = join(dir, 'store');
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  const config = await writeConfig(
    dir,
    `targets:\n  dr:\n    url: ${store}\n    bandwidth: 2MiB/s\njobs:\n  nightly:\n    servers: [${guest.name}]\n    target: dr\n`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config, HAVEN_RECEIVE_CHECKPOINT_INTERVAL: '300ms' });
  // A first copy, so the job's is a staged delta (midTransfer watches staged data).
  await guest.writePattern('vda', 3, 8);
  await havenJson(h, ['protect', guest.name, '--to', 'dr']);
  await guest.writePattern('vda', 4, 96);
  const r = await runHaven(h, ['job', 'run', 'nightly'], {
    killOn: midTransfer(store, guest.name),
    killSignal: 'SIGTERM',
  });
  assertInterrupted(r, /\[INTERRUPTED\]: job nightly cancelled/, 'SIGTERM');
  await assertReleased(h, guest, store, 'job run');
  const run = withCatalog(h.stateDir, (c) => c.runs.list({ kind: 'job' })[0]);
  assert.equal(run?.status, 'cancelled');
});

test('SIGINT during a drill: exit 130, its domain removed', async (t) => {
  const s = await site(t, 'signal-drill');
  await s.guest.writePattern('vda', 4, 8);
  await protect(s, 1);
  const drillDomain = `${s.guest.name}-drill`;
  const booted = waitFor(
    'the drill domain',
    async () => (await domainsLike(drillDomain)).length > 0,
    120_000,
  );
  // A marker the guest never prints: the drill waits until stopped.
  const r = await runHaven(
    s.h,
    ['drill', s.guest.name, '--store', s.store, '--marker', 'NEVER PRINTED', '--timeout', '5m'],
    { killOn: booted.then(() => new Promise((ok) => setTimeout(ok, 1000))), killSignal: 'SIGINT' },
  );
  assertInterrupted(r, /\[INTERRUPTED\]: drill stopped by SIGINT/, 'SIGINT');
  assert.deepEqual(await domainsLike(drillDomain), [], 'the drill domain is gone');
  const run = withCatalog(s.h.stateDir, (c) => c.runs.list({ kind: 'drill' })[0]);
  assert.equal(run?.status, 'cancelled');
});
