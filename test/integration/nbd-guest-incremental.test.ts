/**
 * Issue 2's end-to-end check of the foundation: a real guest under libvirt writes known blocks
 * after a checkpoint; a pull-mode incremental backup from that checkpoint is read through
 * Haven's own NBD client; the dirty extents are exactly the blocks the guest reported writing
 * (no other extent is marked dirty), and their bytes are exactly the pattern the guest wrote.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CONTEXT_BASE_ALLOCATION, mapExtents, NBD_STATE_DIRTY, NbdClient } from '../../src/nbd/index.ts';
import { backupBegin, backupEnd } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE, patternBlock, patternBlocks } from '../fixtures/guest/pattern.ts';
import { testDir } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-lead';
const MiB = 1024 * 1024;

test('incremental backup of a live guest: Haven reads exactly the extents the guest changed', async (t) => {
  const dir = await testDir(t, `${PREFIX}-inc`);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 64 }] });
  const socketPath = join(dir, 'nbd.sock');

  // Full backup creating checkpoint c1: the start of the increment.
  await backupBegin(guest.virsh, guest.name, { checkpointName: 'c1', socketPath, scratchDir: dir });
  await backupEnd(guest.virsh, guest.name);

  const seed = 4242;
  const count = 25;
  const from = (await guest.serial()).length;
  await guest.writePattern('vda', seed, count);
  const reported = [
    ...(await guest.serial()).slice(from).matchAll(/^HAVEN pattern-write disk=vda block=(\d+)$/gm),
  ].map((m) => Number(m[1]));
  assert.equal(reported.length, count, 'the guest reports every block it wrote');
  assert.deepEqual(
    [...reported].sort((a, b) => a - b),
    patternBlocks(seed, count, (64 * MiB) / PATTERN_BLOCK_SIZE).sort((a, b) => a - b),
    'the guest wrote the blocks the pattern says',
  );

  const job = await backupBegin(guest.virsh, guest.name, {
    checkpointName: 'c2',
    incrementalFrom: 'c1',
    socketPath,
    scratchDir: dir,
  });
  t.after(() => backupEnd(guest.virsh, guest.name).catch(() => {}));
  const vda = job.exports.find((e) => e.disk === 'vda');
  assert.ok(vda?.bitmapContext, 'the incremental export offers a dirty-bitmap context');

  const client = await NbdClient.connect({
    socketPath,
    exportName: vda.exportName,
    metaContexts: [CONTEXT_BASE_ALLOCATION, vda.bitmapContext],
  });
  t.after(() => client.close().catch(() => {}));
  assert.equal(client.size, 64 * MiB);

  const dirty: number[] = [];
  let covered = 0;
  for await (const e of mapExtents(client, vda.bitmapContext)) {
    assert.equal(e.offset, covered, 'the map covers the export without gaps');
    covered += e.length;
    if (!(e.flags & NBD_STATE_DIRTY)) continue;
    assert.equal(e.offset % PATTERN_BLOCK_SIZE, 0);
    assert.equal(e.length % PATTERN_BLOCK_SIZE, 0);
    for (let off = e.offset; off < e.offset + e.length; off += PATTERN_BLOCK_SIZE) {
      dirty.push(off / PATTERN_BLOCK_SIZE);
    }
  }
  assert.equal(covered, client.size);
  assert.deepEqual(
    dirty,
    [...reported].sort((a, b) => a - b),
    'dirty extents are exactly the blocks the guest reported, and nothing else',
  );

  // The changed extents read through Haven's client carry the guest's bytes (several reads in flight).
  const reads = await Promise.all(dirty.map((b) => client.read(b * PATTERN_BLOCK_SIZE, PATTERN_BLOCK_SIZE)));
  reads.forEach((data, i) => {
    assert.ok(data.equals(patternBlock(seed, dirty[i]!)), `block ${dirty[i]} holds the guest's pattern`);
  });
});
