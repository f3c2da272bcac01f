/**
 * Cache drive discovery and mounting against real loop devices (docs/design.md §4.6): only filesystems
 * with the signature at their root, mounted or not; largest first, equal sizes by device path;
 * free space of an unmounted drive as the mounted filesystem will report it; Haven mounts what is
 * not mounted under its run directory (read-write) and unmounts it when the last user is done,
 * and uses an operator's mount where it is without unmounting it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { discoverCacheDrives, useDrive } from '../../src/jobs/index.ts';
import { loopDrive, mountsOf, scratchDir } from './jobs-helpers.ts';

test('discovery: signed filesystems only, mounted or not, largest first, ties by device path', async (t) => {
  const scratch = await scratchDir(t, 'haven-t-jobs-drives');
  const dir = scratch.dir;
  const signature = `.dr_cache_${randomBytes(4).toString('hex')}`;
  const runDir = join(dir, 'run');
  // Made in this order, so loop device numbers (and paths) grow: a < b < c < d < e.
  const a = await loopDrive(scratch, 'a', { sizeMiB: 48, signature });
  const b = await loopDrive(scratch, 'b', { sizeMiB: 64, signature, mount: true });
  const c = await loopDrive(scratch, 'c', { sizeMiB: 64, signature });
  const d = await loopDrive(scratch, 'd', { sizeMiB: 96, signature: null });
  const e = await loopDrive(scratch, 'e', { sizeMiB: 32, signature: '.dr_cache_of_someone_else' });
  const byPath = [b.device, c.device].sort();

  const found = await discoverCacheDrives({ signature, runDir });
  const mine = found.drives.filter((x) => [a, b, c, d, e].some((y) => y.device === x.device));
  assert.deepEqual(
    mine.map((x) => x.device),
    [...byPath, a.device],
    'largest first, the two 64 MiB drives by device path, unsigned and foreign-signed ones left out',
  );
  const mb = mine.find((x) => x.device === b.device)!;
  const mc = mine.find((x) => x.device === c.device)!;
  assert.equal(mb.mountpoint, b.mountpoint, 'a mounted drive is found where it is mounted');
  assert.equal(mc.mountpoint, undefined);
  assert.equal(mb.totalBytes, 64 * 1024 * 1024);
  assert.equal(mc.totalBytes, 64 * 1024 * 1024, 'size is the device size whether mounted or not');
  assert.deepEqual(await mountsOf(c.device), [], 'discovery mounted nothing');

  // The unmounted drive's free space is what its filesystem reports once mounted.
  const m = await useDrive(mc, runDir);
  scratch.onCleanup(() => m.release());
  assert.equal(m.managed, true);
  assert.equal(m.path, join(runDir, 'cache', mc.uuid!));
  const fs = await statfs(m.path);
  assert.equal(mc.freeBytes, fs.bavail * fs.bsize);
  assert.deepEqual(await mountsOf(c.device), [m.path]);
  await writeFile(join(m.path, 'probe'), 'writable');

  // A second user (another process would do the same) shares the mount; the last one unmounts.
  const again = await useDrive(mc, runDir);
  assert.equal(again.path, m.path);
  await m.release();
  assert.deepEqual(await mountsOf(c.device), [m.path], 'still mounted for the other user');
  await again.release();
  assert.deepEqual(await mountsOf(c.device), [], 'unmounted by the last user');
  assert.equal(existsSync(m.path), false);

  // An operator's mount is used where it is and left mounted.
  const ob = await useDrive(mb, runDir);
  assert.equal(ob.path, b.mountpoint);
  assert.equal(ob.managed, false);
  await ob.release();
  assert.deepEqual(await mountsOf(b.device), [b.mountpoint]);
});
