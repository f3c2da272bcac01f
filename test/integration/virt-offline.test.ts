/**
 * Offline images: a shut-off guest's qcow2 served by qemu-nbd with its persistent bitmap, read
 * from outside with nbdinfo/nbdcopy, and the errors around it.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createCheckpoint, exportImage, VirtError } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkPatternInFile, PATTERN_BLOCK_SIZE, patternBlocks } from '../fixtures/guest/pattern.ts';
import { dirtyBlocks, nbdCopyToFile, nbdList, nbdMap, testDir } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-virt';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('exportImage serves a shut-off guest qcow2 with its bitmap; stop() removes process and socket', async (t) => {
  const dir = await testDir(t, `${PREFIX}-off`);
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 48 }] });
  const disk = g.disks[0];
  assert.ok(disk);
  await g.writePattern('vda', 21, 8);
  await createCheckpoint(g.virsh, g.name, { name: 'off1' });
  await g.writePattern('vda', 22, 12);
  await g.poweroff();

  const socketPath = join(dir, 'img.sock');
  const exp = await exportImage({ path: disk.path, format: 'qcow2', bitmap: 'off1', socketPath });
  t.after(() => exp.stop());
  assert.equal(exp.socketPath, socketPath);
  assert.equal(exp.exportName, disk.storeName);
  assert.equal(exp.bitmapContext, 'qemu:dirty-bitmap:off1');
  const [listed] = await nbdList(socketPath);
  assert.equal(listed?.['export-name'], disk.storeName);
  assert.equal(listed?.['export-size'], disk.sizeBytes);
  assert.equal(listed?.is_read_only, true);
  assert.ok(listed?.contexts?.includes('qemu:dirty-bitmap:off1'));

  // The bitmap holds exactly what was written after the checkpoint.
  const blocks = disk.sizeBytes / PATTERN_BLOCK_SIZE;
  const dirty = dirtyBlocks(await nbdMap(socketPath, exp.exportName, 'qemu:dirty-bitmap:off1'));
  assert.deepEqual(
    dirty,
    [...patternBlocks(22, 12, blocks)].sort((a, b) => a - b),
  );
  // Several clients at once (--shared): two copies in parallel, both complete and right.
  const [c1, c2] = await Promise.all([
    nbdCopyToFile(socketPath, exp.exportName, join(dir, 'c1.raw')),
    nbdCopyToFile(socketPath, exp.exportName, join(dir, 'c2.raw')),
  ]);
  for (const copy of [c1, c2]) {
    assert.deepEqual((await checkPatternInFile(copy, 21, 8)).bad, []);
    assert.deepEqual((await checkPatternInFile(copy, 22, 12)).bad, []);
  }

  await exp.stop();
  assert.equal(existsSync(socketPath), false, 'socket removed');
  assert.equal(alive(exp.pid), false, 'qemu-nbd ended');
  await exp.stop();

  // Without a bitmap, and with the default socket in the run directory.
  const runDir = join(dir, 'run');
  const prev = process.env.HAVEN_RUN_DIR;
  process.env.HAVEN_RUN_DIR = runDir;
  t.after(() => {
    if (prev === undefined) delete process.env.HAVEN_RUN_DIR;
    else process.env.HAVEN_RUN_DIR = prev;
  });
  const plain = await exportImage({ path: disk.path, format: 'qcow2', exportName: 'disk0' });
  assert.ok(plain.socketPath.startsWith(`${runDir}/`));
  assert.equal(plain.bitmapContext, undefined);
  const [only] = await nbdList(plain.socketPath);
  assert.equal(only?.['export-name'], 'disk0');
  assert.equal(
    only?.contexts?.some((c) => c.startsWith('qemu:dirty-bitmap:')),
    false,
  );
  await plain.stop();
});

test('exportImage errors: missing bitmap, missing image, image of a running guest', async (t) => {
  const dir = await testDir(t, `${PREFIX}-offerr`);
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] });
  const path = g.disks[0]?.path ?? '';
  const socketPath = join(dir, 'e.sock');
  await assert.rejects(
    exportImage({ path, format: 'qcow2', socketPath }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_IMAGE_IN_USE' && e.kind === 'conflict',
  );
  await g.poweroff();
  await assert.rejects(
    exportImage({ path, format: 'qcow2', socketPath, bitmap: 'nosuch' }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_BITMAP_INCONSISTENT',
  );
  await assert.rejects(
    exportImage({ path: join(dir, 'gone.qcow2'), format: 'qcow2', socketPath }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_IMAGE_NOT_FOUND',
  );
  await assert.rejects(
    exportImage({ path, format: 'qcow2', socketPath: join(dir, 'x'.repeat(120)) }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_BAD_ARGUMENT',
  );
  assert.equal(existsSync(socketPath), false, 'failed exports leave no socket');
});
