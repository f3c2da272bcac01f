/**
 * Deleting a checkpoint of a shut-off server: libvirt 9.0 refuses ("cannot delete checkpoint for
 * inactive domain"), so deleteCheckpoint removes the bitmap from the qcow2 itself and then
 * libvirt's metadata. The checkpoints after it stay valid and an offline read from them works.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createCheckpoint,
  deleteCheckpoint,
  getCheckpoint,
  listCheckpoints,
  qemuImgInfo,
  validateCheckpoint,
} from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';

const PREFIX = 'haven-t-virtdel';

test('deleteCheckpoint on a shut-off guest removes the bitmap and the metadata, keeps the rest valid', async (t) => {
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }, { sizeMiB: 32 }] });
  await createCheckpoint(g.virsh, g.name, { name: 'k1' });
  await g.writePattern('vda', 1, 4);
  await createCheckpoint(g.virsh, g.name, { name: 'k2' });
  await g.writePattern('vdb', 2, 4);
  await createCheckpoint(g.virsh, g.name, { name: 'k3' });
  await g.poweroff();
  const bitmapsOf = async (i: number) =>
    (await qemuImgInfo(g.disks[i]!.path)).bitmaps.map((b) => b.name).sort();
  assert.deepEqual(await bitmapsOf(0), ['k1', 'k2', 'k3']);

  await deleteCheckpoint(g.virsh, g.name, 'k2');
  for (const i of [0, 1]) assert.deepEqual(await bitmapsOf(i), ['k1', 'k3'], `disk ${i}`);
  assert.deepEqual(
    (await listCheckpoints(g.virsh, g.name)).map((c) => c.name),
    ['k1', 'k3'],
  );
  // libvirt re-parented k3 onto k1; both still validate against the images.
  assert.equal((await getCheckpoint(g.virsh, g.name, 'k3')).parent, 'k1');
  for (const k of ['k1', 'k3']) assert.equal((await validateCheckpoint(g.virsh, g.name, k)).ok, true, k);

  // With its children: k1 and k3 go together.
  await deleteCheckpoint(g.virsh, g.name, 'k1', { children: true });
  assert.deepEqual(await listCheckpoints(g.virsh, g.name), []);
  for (const i of [0, 1]) assert.deepEqual(await bitmapsOf(i), [], `disk ${i}`);
});
