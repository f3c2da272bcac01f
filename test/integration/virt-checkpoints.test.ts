/**
 * Checkpoints on a real guest: create, list, dumpxml, delete (normal and metadata only),
 * redefine from saved XML followed by a working incremental backup, and validation of the
 * bitmaps behind them, running (libvirt) and shut off (qemu-img).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import {
  assertCheckpointValid,
  backupBegin,
  backupEnd,
  bitmapAdd,
  bitmapClear,
  bitmapRemove,
  checkpointXml,
  createCheckpoint,
  deleteCheckpoint,
  getCheckpoint,
  listCheckpoints,
  needsResync,
  qemuImgInfo,
  redefineCheckpoint,
  type Virsh,
  VirtError,
  validateCheckpoint,
} from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE, patternBlocks } from '../fixtures/guest/pattern.ts';
import { dirtyBlocks, nbdMap, testDir } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-virt';

const code = (c: string) => (e: unknown) => e instanceof HavenError && e.code === c;

/** Drops a bitmap inside the running QEMU, behind libvirt's back (what a lost bitmap looks like). */
async function dropBitmapInQemu(virsh: Virsh, domain: string, image: string, bitmap: string): Promise<void> {
  const nodes = JSON.parse(
    await virsh.run([
      'qemu-monitor-command',
      '--domain',
      domain,
      '{"execute":"query-named-block-nodes","arguments":{"flat":true}}',
    ]),
  ) as { return: Array<{ 'node-name': string; drv: string; file: string }> };
  const node = nodes.return.find((n) => n.drv === 'qcow2' && n.file === image);
  assert.ok(node, 'the qcow2 node of the image');
  await virsh.run([
    'qemu-monitor-command',
    '--domain',
    domain,
    JSON.stringify({
      execute: 'block-dirty-bitmap-remove',
      arguments: { node: node['node-name'], name: bitmap },
    }),
  ]);
}

test('checkpoints: create, list, dumpxml, delete metadata, redefine, then an incremental backup from it', async (t) => {
  const dir = await testDir(t, `${PREFIX}-cp`);
  const g = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }, { sizeMiB: 16, format: 'raw' }],
    cdrom: 'iso',
  });
  const { virsh, name } = g;
  const blocks = (g.disks[0]?.sizeBytes ?? 0) / PATTERN_BLOCK_SIZE;

  const k1 = await createCheckpoint(virsh, name, { name: 'k1', description: 'first' });
  assert.equal(k1.name, 'k1');
  assert.equal(k1.parent, undefined);
  assert.equal(k1.description, 'first');
  assert.ok(Math.abs(k1.creationTime.getTime() - Date.now()) < 10 * 60_000, 'a plausible creation time');
  assert.deepEqual(
    k1.disks.map((d) => [d.name, d.checkpoint, d.bitmap]),
    [
      ['vda', 'bitmap', 'k1'],
      ['vdb', 'no', undefined],
      ['hdc', 'no', undefined],
    ],
  );
  await assert.rejects(
    createCheckpoint(virsh, name, { name: 'k9', disks: ['vdb'] }),
    code('VIRT_BAD_ARGUMENT'),
  );
  await assert.rejects(createCheckpoint(virsh, name, { name: '../k9' }), code('BAD_NAME'));

  await g.writePattern('vda', 4, 10);
  const k2 = await createCheckpoint(virsh, name, { name: 'k2' });
  assert.equal(k2.parent, 'k1');
  assert.deepEqual(
    (await listCheckpoints(virsh, name)).map((c) => c.name),
    ['k1', 'k2'],
  );
  // libvirt's size estimate: exactly the ten 64 KiB blocks written since k1.
  const sized = await getCheckpoint(virsh, name, 'k1', { size: true });
  assert.equal(sized.disks.find((d) => d.name === 'vda')?.size, 10 * PATTERN_BLOCK_SIZE);
  await assert.rejects(getCheckpoint(virsh, name, 'nosuch'), code('VIRT_CHECKPOINT_NOT_FOUND'));

  const saved = await checkpointXml(virsh, name, 'k1');
  assert.match(saved, /<domaincheckpoint>/);
  assert.match(
    saved,
    new RegExp(`<domain type='qemu'[^>]*>\\s*<name>${name}</name>`),
    'the domain is embedded',
  );

  assert.deepEqual(await validateCheckpoint(virsh, name, 'k1'), {
    checkpoint: 'k1',
    ok: true,
    method: 'libvirt',
    issues: [],
  });

  // Metadata only: libvirt forgets k1, the bitmap stays in QEMU.
  await deleteCheckpoint(virsh, name, 'k1', { metadataOnly: true });
  const left = await listCheckpoints(virsh, name);
  assert.deepEqual(
    left.map((c) => [c.name, c.parent]),
    [['k2', undefined]],
  );
  const socketPath = join(dir, 'nbd.sock');
  await assert.rejects(
    backupBegin(virsh, name, { incrementalFrom: 'k1', socketPath, scratchDir: dir }),
    code('VIRT_CHECKPOINT_NOT_FOUND'),
  );

  const back = await redefineCheckpoint(virsh, name, saved);
  assert.equal(back.name, 'k1');
  assert.equal(back.creationTime.getTime(), k1.creationTime.getTime());
  assert.deepEqual(
    (await listCheckpoints(virsh, name)).map((c) => c.name),
    ['k1', 'k2'],
  );

  // An incremental backup from the redefined checkpoint sees exactly what changed since k1.
  await g.writePattern('vda', 5, 6);
  const job = await backupBegin(virsh, name, {
    incrementalFrom: 'k1',
    checkpointName: 'k3',
    socketPath,
    scratchDir: dir,
  });
  const vda = job.exports.find((e) => e.disk === 'vda');
  assert.equal(vda?.bitmapContext, 'qemu:dirty-bitmap:backup-vda');
  const expected = [...new Set([...patternBlocks(4, 10, blocks), ...patternBlocks(5, 6, blocks)])].sort(
    (a, b) => a - b,
  );
  assert.deepEqual(dirtyBlocks(await nbdMap(socketPath, 'vda', 'qemu:dirty-bitmap:backup-vda')), expected);
  await backupEnd(virsh, name);

  // A normal delete removes the checkpoint and its bitmap; a validation of what is left passes.
  await deleteCheckpoint(virsh, name, 'k2');
  assert.deepEqual(
    (await listCheckpoints(virsh, name)).map((c) => c.name),
    ['k1', 'k3'],
  );
  await assertCheckpointValid(virsh, name, 'k3');
});

test('lost or broken bitmaps are detected, running and shut off, and answered with the resync code', async (t) => {
  const dir = await testDir(t, `${PREFIX}-bm`);
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const { virsh, name } = g;
  const image = g.disks[0]?.path ?? '';
  await createCheckpoint(virsh, name, { name: 'b1' });
  await createCheckpoint(virsh, name, { name: 'b2' });

  // Running: the bitmap disappears inside QEMU while libvirt still lists the checkpoint.
  await dropBitmapInQemu(virsh, name, image, 'b1');
  const v = await validateCheckpoint(virsh, name, 'b1');
  assert.equal(v.ok, false);
  assert.equal(v.method, 'libvirt');
  assert.deepEqual(v.issues, [{ disk: 'vda', bitmap: 'b1', problem: 'inconsistent' }]);
  assert.match(v.message ?? '', /b1/);
  assert.equal((await listCheckpoints(virsh, name)).length, 2, 'validation does not drop the checkpoint');
  await assert.rejects(assertCheckpointValid(virsh, name, 'b1'), (e: unknown) => needsResync(e));
  await assert.rejects(
    backupBegin(virsh, name, { incrementalFrom: 'b1', socketPath: join(dir, 's.sock'), scratchDir: dir }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_BITMAP_INCONSISTENT' && e.kind === 'integrity',
  );
  assert.equal((await validateCheckpoint(virsh, name, 'b2')).ok, true);

  // Shut off: qemu-img reads the bitmaps QEMU saved at exit.
  await g.poweroff();
  const info = await qemuImgInfo(image);
  assert.equal(info.format, 'qcow2');
  assert.deepEqual(
    info.bitmaps.map((b) => [b.name, b.flags, b.granularity]),
    [['b2', ['auto'], 65536]],
  );
  const off = await validateCheckpoint(virsh, name, 'b2');
  assert.deepEqual(off, { checkpoint: 'b2', ok: true, method: 'qemu-img', issues: [] });
  assert.deepEqual((await validateCheckpoint(virsh, name, 'b1')).issues, [
    { disk: 'vda', bitmap: 'b1', problem: 'missing' },
  ]);

  // Bitmap maintenance on the offline image.
  await bitmapAdd(image, 'extra', { disabled: true });
  await bitmapClear(image, 'b2');
  assert.deepEqual(
    (await qemuImgInfo(image)).bitmaps.map((b) => [b.name, b.flags]),
    [
      ['b2', ['auto']],
      ['extra', []],
    ],
  );
  await bitmapRemove(image, 'b2');
  assert.deepEqual((await validateCheckpoint(virsh, name, 'b2')).issues, [
    { disk: 'vda', bitmap: 'b2', problem: 'missing' },
  ]);
  await assert.rejects(bitmapRemove(image, 'b2'), (e: unknown) => needsResync(e));
  await assert.rejects(
    qemuImgInfo(join(dir, 'nope.qcow2')),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_IMAGE_NOT_FOUND',
  );
});
