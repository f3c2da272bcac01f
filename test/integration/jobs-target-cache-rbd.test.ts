/**
 * Issue 18: target-side cache drives with an rbd store. A target with `staging: auto` names a
 * store whose images live in the Ceph test cluster (test/fixtures/ceph); `haven receive --staging
 * auto` stages each delta on the host's signed cache drive (mounted for the session only) and
 * writes it into the cluster from there. Every generation equals the guest's disk at its run,
 * read back from the cluster, and the rotation's older generation stays a clone of the newest.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startCephCluster } from '../fixtures/ceph/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenJson } from '../helpers/haven.ts';
import { loopDrive, scratchDir, stagingJob } from './jobs-helpers.ts';

const PREFIX = 'haven-t-jobs';

test('receive --staging auto into an rbd store: deltas staged on the cache drive, every generation exact', async (t) => {
  const ceph = await startCephCluster(t);
  const pool = await ceph.createPool(`${PREFIX}-rbd-${randomBytes(4).toString('hex')}`);
  const scratch = await scratchDir(t, `${PREFIX}-rcache`);
  const { dir } = scratch;
  const store = join(dir, 'store');
  const signature = `.dr_cache_${randomBytes(4).toString('hex')}`;
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  const drive = await loopDrive(scratch, 'rdrive', { sizeMiB: 40, signature });
  const location = `rbd://admin@ceph/${pool}?conf=${ceph.conf}&keyring=${ceph.keyring}`;
  const { h, snapshots, run } = await stagingJob({
    dir,
    url: `file://${store}?rbd=${encodeURIComponent(location)}`,
    guest,
    model,
    signature,
    drives: [drive],
  });
  const image = (seq: number) => `${guest.name}_${guest.disks[0]!.storeName}_${seq}`;
  const stagedOnDrive = async () => {
    const logs = await readdir(join(dir, 'log'));
    let text = '';
    for (const f of logs.filter((n) => n.startsWith('receive')))
      text += await readFile(join(dir, 'log', f), 'utf8');
    return text.split('\n').filter((l) => l.includes('staging deltas on the cache drive')).length;
  };

  await run(1, 31, 40);
  const second = await run(2, 32, 24);
  assert.equal(second.servers[0]!.mode, 'incremental');
  // The incremental delta was staged on the drive: its record names a path on it (Haven mounts
  // the drive under its run directory).
  const deltas = join(store, '.haven', 'servers', guest.name, 'deltas');
  const records = await readdir(deltas).catch(() => [] as string[]);
  for (const id of records) {
    const record = JSON.parse(await readFile(join(deltas, id, 'delta.json'), 'utf8')) as { dataDir: string };
    assert.ok(record.dataDir.startsWith(join(dir, 'run', 'cache')), `staged on the drive: ${record.dataDir}`);
  }
  assert.ok((await stagedOnDrive()) >= 2, 'every receiving session staged on the cache drive');

  // A third run rotates by the cluster: the older generation becomes a clone of the newest.
  await run(3, 33, 16);
  for (const [seq, expected] of [
    [1, snapshots[2]!],
    [2, snapshots[1]!],
  ] as const) {
    const copy = join(dir, `${image(seq)}.export`);
    await ceph.rbd(['export', '--no-progress', `${pool}/${image(seq)}`, copy]);
    const diff = await firstDifference(copy, expected);
    await rm(copy, { force: true });
    assert.equal(diff, -1, `generation _${seq} differs at byte ${diff}`);
  }
  const info = JSON.parse((await ceph.rbd(['info', '--format', 'json', `${pool}/${image(2)}`])).stdout) as {
    parent?: { image: string };
  };
  assert.equal(info.parent?.image, image(1));
  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    '--store',
    store,
  ]);
  assert.deepEqual([verify.ok, verify.checkedGenerations], [true, 2]);
});
