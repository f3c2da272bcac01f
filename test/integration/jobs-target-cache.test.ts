/**
 * Target-side cache drives (issue 4, Build 3; docs/design.md §4.2, §4.6): a target with `staging: auto`
 * runs `haven receive --staging auto`, which stages every delta on the largest signed cache drive
 * of the target host, mounting it under Haven's run directory and unmounting it when the session
 * ends. The deltas a store keeps for rotation stay on that drive, at the same path every session,
 * so the next runs can apply them: every generation stays byte-exact.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenJson } from '../helpers/haven.ts';
import { loopDrive, scratchDir, stagingJob } from './jobs-helpers.ts';

const PREFIX = 'haven-t-jobs';

test('receive --staging auto: deltas on the largest target cache drive, mounted only while needed', async (t) => {
  const scratch = await scratchDir(t, `${PREFIX}-tcache`);
  const { dir } = scratch;
  const store = join(dir, 'store');
  const signature = `.dr_cache_${randomBytes(4).toString('hex')}`;
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  const smaller = await loopDrive(scratch, 'tsmall', { sizeMiB: 40, signature });
  const larger = await loopDrive(scratch, 'tlarge', { sizeMiB: 56, signature });
  const { h, snapshots, run } = await stagingJob({
    dir,
    url: store,
    guest,
    model,
    signature,
    drives: [smaller, larger],
  });
  const image = (seq: number) => join(store, `${guest.name}_${guest.disks[0]!.storeName}_${seq}.raw`);

  await run(1, 31, 40); // a first copy goes straight into the images: nothing staged
  const second = await run(2, 32, 24);
  assert.equal(second.servers[0]!.mode, 'incremental');

  // The incremental delta was staged on the larger drive, at a stable path under the run dir.
  const look = join(dir, 'look');
  await mkdir(look);
  const staged = async (device: string) => {
    await exec('mount', ['-o', 'ro', device, look]);
    try {
      const root = join(look, 'haven-staging');
      if (!existsSync(root)) return [];
      const out: string[] = [];
      for (const storeId of await readdir(root)) {
        for (const server of await readdir(join(root, storeId))) {
          for (const id of await readdir(join(root, storeId, server))) out.push(`${server}/${id}`);
        }
      }
      return out;
    } finally {
      await exec('umount', [look]);
    }
  };
  const onLarger = await staged(larger.device);
  assert.equal(onLarger.length, 1, 'one staged delta on the larger drive');
  assert.ok(onLarger[0]!.startsWith(`${guest.name}/`));
  assert.deepEqual(await staged(smaller.device), [], 'nothing on the smaller drive');
  const deltaId = onLarger[0]!.split('/')[1]!;
  const record = JSON.parse(
    await readFile(join(store, '.haven', 'servers', guest.name, 'deltas', deltaId, 'delta.json'), 'utf8'),
  ) as { dataDir: string };
  assert.ok(
    record.dataDir.startsWith(join(dir, 'run', 'cache')),
    `the store records the drive's path under the run directory: ${record.dataDir}`,
  );

  // A third run rotates: the oldest generation is brought up to date with the delta kept on the
  // drive, which Haven mounts again at the same path.
  await run(3, 33, 16);
  for (const [seq, expected] of [
    [1, snapshots[2]!],
    [2, snapshots[1]!],
  ] as const) {
    const diff = await firstDifference(image(seq), expected);
    assert.equal(diff, -1, `generation _${seq} differs at byte ${diff}`);
  }
  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    '--store',
    store,
  ]);
  assert.deepEqual([verify.ok, verify.checkedGenerations], [true, 2]);
});
