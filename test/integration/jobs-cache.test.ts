/**
 * Issue 4, first must-show: primary cache drives (docs/design.md §4.6) with real guests and loop devices.
 *
 * Run 1: three servers, one cache drive (not mounted) too small for all three together: staging
 * goes one at a time, largest first (each server staged, sent and removed before the next one's
 * point in time), Haven mounts the drive under its run directory and unmounts it afterwards.
 * Run 2: a second, larger drive that the operator mounted: everything fits, so all three are
 * staged before any is sent, on the larger drive, which stays mounted where it was.
 *
 * The job is `consistency: shutdown`: each server is running again when its network transfer
 * starts. After each run every generation verifies and equals, byte for byte, an independent
 * model of the guest's disk at that run.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { JobRunResult } from '../../src/jobs/index.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { loopDrive, mountsOf, scratchDir, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-jobs';

interface Box {
  guest: TestGuest;
  model: DiskModel;
  writes: Array<[number, number]>;
}

function t0(s: string | undefined): number {
  assert.ok(s, 'timestamp recorded');
  return new Date(s).getTime();
}

async function checkGeneration(store: string, b: Box, seq: number, expected: string): Promise<void> {
  const image = join(store, `${b.guest.name}_${b.guest.disks[0]!.storeName}_${seq}.raw`);
  const diff = await firstDifference(image, expected);
  assert.equal(diff, -1, `${b.guest.name} _${seq} differs from the model at byte ${diff}`);
}

test('cache staging: one at a time when they do not fit together, all at once when they do', async (t) => {
  const scratch = await scratchDir(t, `${PREFIX}-cache`);
  const { dir } = scratch;
  const store = join(dir, 'store');
  const signature = `.dr_cache_${randomBytes(4).toString('hex')}`;

  // ~30, ~10 and ~8 MiB of data: about 55 MiB to stage with metadata, on a 64 MiB drive.
  const boxes: Box[] = [];
  for (const [sizeMiB, seed, count] of [
    [128, 11, 480],
    [64, 12, 160],
    [48, 13, 128],
  ] as const) {
    const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB }] });
    const model = await DiskModel.create(join(dir, `${guest.name}.model`), guest.disks[0]!.sizeBytes);
    await guest.writePattern('vda', seed, count);
    await model.writePattern(seed, count);
    boxes.push({ guest, model, writes: [[seed, count]] });
  }
  const [big, mid, small] = boxes as [Box, Box, Box];
  const small64 = await loopDrive(scratch, 'cache64', { sizeMiB: 64, signature });

  const config = await writeConfig(
    dir,
    `targets:
  dr:
    url: ${store}
    copies: 2
jobs:
  staged:
    servers: [${small.guest.name}, ${big.guest.name}, ${mid.guest.name}]
    target: dr
    consistency: shutdown
    cache: true
    parallel: 2
    retries: 0
cache:
  signature: ${signature}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const names = boxes.map((b) => b.guest.name);

  // ---- run 1: one at a time
  const expect1 = await Promise.all(boxes.map((b) => b.model.snapshot(`${b.model.path}.run1`)));
  const r1 = await runHaven(h, ['job', 'run', 'staged', '--json']);
  assert.equal(r1.code, 0, r1.stderr);
  const run1 = JSON.parse(r1.stdout) as JobRunResult;
  assert.equal(run1.status, 'ok');
  const st1 = run1.staging[0]!;
  assert.equal(st1.mode, 'one-at-a-time');
  const estimate = (n: string) => st1.estimates[n]!;
  const drive1 = st1.drives.find((d) => d.device === small64.device)!;
  assert.ok(drive1, 'the loop drive was discovered');
  assert.equal(drive1.mountpoint, null, 'it was not mounted');
  assert.ok(names.reduce((n, s) => n + estimate(s), 0) > drive1.freeBytes, 'the three together do not fit');
  assert.ok(estimate(big.guest.name) > 30 * 1024 * 1024 && estimate(big.guest.name) < drive1.freeBytes);
  for (const n of names) assert.equal(st1.assignments[n], small64.device);

  // Largest first, and each staged only after the previous one was sent.
  const servers1 = run1.servers;
  assert.deepEqual(
    servers1.map((s) => s.server),
    names,
    'largest first',
  );
  for (const s of servers1) {
    const st = s.staging!;
    assert.equal(st.fallback, undefined, `${s.server} staged without falling back`);
    assert.ok(st.stagedBytes! > 0);
    assert.ok(t0(st.stagedAt) <= t0(st.sendStartedAt), 'staged before the transfer');
    assert.equal(st.stateWhenSending, 'running', `${s.server} runs again before its network transfer`);
  }
  for (let i = 1; i < servers1.length; i++) {
    assert.ok(
      t0(servers1[i]!.staging!.stageStartedAt) >= t0(servers1[i - 1]!.finishedAt),
      `${servers1[i]!.server} is staged only after ${servers1[i - 1]!.server} was sent`,
    );
  }
  assert.ok(servers1[0]!.staging!.stagedBytes! >= 30 * 1024 * 1024);
  assert.deepEqual(await mountsOf(small64.device), [], 'Haven unmounted the drive it mounted');

  const verify1 = await havenJson<{ ok: boolean; checkedServers: number }>(h, ['verify', '--store', store]);
  assert.deepEqual([verify1.ok, verify1.checkedServers], [true, 3]);
  for (const [i, b] of boxes.entries()) await checkGeneration(store, b, 1, expect1[i]!);

  // Nothing staged is left on the drive.
  const look = join(dir, 'look');
  await mkdir(look);
  await exec('mount', ['-o', 'ro', small64.device, look]);
  try {
    assert.deepEqual(await readdir(join(look, 'haven-primary')), []);
  } finally {
    await exec('umount', [look]);
  }

  // ---- run 2: a larger drive the operator mounted; all three fit: all at once
  const large = await loopDrive(scratch, 'cache160', { sizeMiB: 160, signature, mount: true });
  for (const [i, b] of boxes.entries()) {
    const seed = 21 + i;
    await b.guest.writePattern('vda', seed, 40);
    await b.model.writePattern(seed, 40);
  }
  const expect2 = await Promise.all(boxes.map((b) => b.model.snapshot(`${b.model.path}.run2`)));
  const r2 = await runHaven(h, ['job', 'run', 'staged', '--json']);
  assert.equal(r2.code, 0, r2.stderr);
  const run2 = JSON.parse(r2.stdout) as JobRunResult;
  assert.equal(run2.status, 'ok');
  const st2 = run2.staging[0]!;
  assert.equal(st2.mode, 'all-at-once');
  assert.deepEqual(
    st2.drives.map((d) => d.device),
    [large.device, small64.device],
    'largest drive first',
  );
  assert.equal(st2.drives[0]!.mountpoint, large.mountpoint);
  for (const n of names) assert.equal(st2.assignments[n], large.device, 'all on the larger drive');
  const staged2 = run2.servers.map((s) => s.staging!);
  for (const [i, s] of staged2.entries()) {
    assert.equal(s.fallback, undefined);
    assert.equal(run2.servers[i]!.mode, 'incremental');
    assert.equal(s.stateWhenSending, 'running');
  }
  const lastStaged = Math.max(...staged2.map((s) => t0(s.stagedAt)));
  const firstSend = Math.min(...staged2.map((s) => t0(s.sendStartedAt)));
  assert.ok(lastStaged <= firstSend, 'every server is staged before any is sent');
  const stageStarts = run2.servers
    .map((s) => ({ server: s.server, at: t0(s.staging!.stageStartedAt) }))
    .sort((a, b) => a.at - b.at)
    .map((x) => x.server);
  assert.deepEqual(stageStarts, names, 'staged largest first');
  assert.deepEqual(
    await mountsOf(large.device),
    [large.mountpoint],
    'the operator’s mount is left as it was',
  );
  assert.deepEqual(await mountsOf(small64.device), []);

  const verify2 = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    '--store',
    store,
  ]);
  assert.deepEqual([verify2.ok, verify2.checkedGenerations], [true, 6]);
  for (const [i, b] of boxes.entries()) {
    await checkGeneration(store, b, 1, expect2[i]!);
    await checkGeneration(store, b, 2, expect1[i]!);
  }
  assert.deepEqual(await readdir(join(large.mountpoint!, 'haven-primary')), []);
});
