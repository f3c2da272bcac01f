/**
 * Issue 3: bad input end to end through `haven protect`. A target filesystem that fills up (a
 * small loop-mounted ext4) fails the run with NO_SPACE (exit 9) and leaves the earlier
 * generation intact and verifying; once space is freed the next run completes. A server whose
 * name would not be safe in the store is refused with BAD_NAME (exit 2) before anything is
 * written. (Malformed frames are refused by the receiver: test/integration/protocol-fs-store.)
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import { createTestGuest, TEST_ROOT } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { DiskModel, firstDifference } from '../helpers/disk-model.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';

const PREFIX = 'haven-t-refuse';

test('a target filesystem that fills up: NO_SPACE, earlier generation intact, then completes', async (t) => {
  // The small filesystem lives outside testDir: after hooks run in order, and the directory's
  // removal must not reach into a mounted filesystem.
  const fsDir = await mkdtemp(join(TEST_ROOT, `${PREFIX}-fs-`));
  const fsImage = join(fsDir, 'fs.img');
  const mnt = join(fsDir, 'mnt');
  await mkdir(mnt);
  await exec('truncate', ['-s', '96M', fsImage]);
  await exec('mkfs.ext4', ['-q', '-F', fsImage]);
  await exec('mount', ['-o', 'loop', fsImage, mnt]);
  t.after(async () => {
    await exec('umount', [mnt]).catch(() => exec('umount', ['-l', mnt]));
    await rm(fsDir, { recursive: true, force: true });
  });
  const dir = await testDir(t, `${PREFIX}-full`);
  const store = join(mnt, 'store');
  const h = await havenEnv(dir);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  const model = await DiskModel.create(join(dir, 'model.raw'), guest.disks[0]!.sizeBytes);
  const image = join(store, `${guest.name}_${guest.disks[0]!.storeName}_1.raw`);
  const protect = ['protect', guest.name, '--to', store, '--copies', '1'];

  await guest.writePattern('vda', 1, 80);
  await model.writePattern(1, 80);
  await havenJson<ProtectResult>(h, protect);
  const before = await model.snapshot(join(dir, 'gen1.raw'));

  // Fill the filesystem, leaving less than the next delta needs.
  const { stdout } = await exec('df', ['-B1', '--output=avail', mnt]);
  const avail = Number(stdout.trim().split('\n').pop());
  await exec('fallocate', ['-l', String(avail - 1024 * 1024), join(mnt, 'filler')]);

  await guest.writePattern('vda', 2, 60);
  await model.writePattern(2, 60);
  const failed = await runHaven(h, protect);
  assert.equal(failed.code, 9, `exit code 9 (resource): ${failed.stderr}`);
  assert.match(failed.stderr, /\[NO_SPACE\]/);
  assert.equal(await firstDifference(image, before), -1, 'the earlier generation is untouched');
  const v = await havenJson<{ ok: boolean }>(h, ['verify', '--store', store]);
  assert.equal(v.ok, true, 'the store verifies after the failed run');

  await rm(join(mnt, 'filler'));
  const r = await havenJson<ProtectResult>(h, protect);
  assert.equal(r.generation.seq, 1);
  assert.equal(
    await firstDifference(image, model.path),
    -1,
    'the run after freeing space is complete and right',
  );
});

test('a server name that is not safe in a store: BAD_NAME, nothing written', async (t) => {
  const dir = await testDir(t, `${PREFIX}-name`);
  const h = await havenEnv(dir);
  const store = join(dir, 'store');
  for (const name of ['../etc', 'web 01', '.hidden']) {
    const r = await runHaven(h, ['protect', name, '--to', store]);
    assert.equal(r.code, 2, `${name}: exit 2 (usage): ${r.stderr}`);
    assert.match(r.stderr, /\[BAD_NAME\]/);
  }
  assert.deepEqual(await readdir(dir).then((f) => f.includes('store')), false, 'no store was created');
});
