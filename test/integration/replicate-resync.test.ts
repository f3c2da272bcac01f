/**
 * Issue 3: lost change tracking. When libvirt's checkpoint metadata is gone, or the guest was
 * killed so its dirty bitmap is inconsistent, the next run notices and does a checksum resync:
 * it reads everything but sends only chunks whose digests differ from the target's newest
 * generation, and the result verifies and equals the guest's disk. When only libvirt's metadata
 * is gone but the catalog kept the checkpoint's XML and the bitmap is intact, Haven redefines
 * the checkpoint and stays incremental (docs/design.md §6).
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { deleteCheckpoint, listCheckpoints, waitForState } from '../../src/virt/index.ts';
import type { TestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE } from '../fixtures/guest/pattern.ts';
import { guestStore } from './guest-store.ts';

const PREFIX = 'haven-t-resync';

async function setup(t: Parameters<typeof guestStore>[0], name: string) {
  const s = await guestStore(t, { prefix: PREFIX, name, copies: 2 });
  await s.write(1, 120);
  const first = await s.protect();
  assert.equal(first.mode, 'full');
  return s;
}

async function currentCheckpoint(guest: TestGuest): Promise<string> {
  const cps = await listCheckpoints(guest.virsh, guest.name);
  assert.ok(cps.length > 0, 'Haven left a checkpoint for the next run');
  return cps[cps.length - 1]!.name;
}

test('checkpoint metadata deleted, catalog intact: redefined from the catalog, still incremental', async (t) => {
  const s = await setup(t, 'redefine');
  await deleteCheckpoint(s.guest.virsh, s.guest.name, await currentCheckpoint(s.guest), {
    metadataOnly: true,
  });
  assert.equal((await listCheckpoints(s.guest.virsh, s.guest.name)).length, 0);
  const changed = await s.write(2, 30);
  const r = await s.protect();
  assert.equal(r.mode, 'incremental');
  assert.equal(r.disks[0]!.dataBytes, changed.size * PATTERN_BLOCK_SIZE);
  await s.checkCopy('after redefinition');
});

test('checkpoint metadata deleted and the catalog lost: checksum resync sends only what differs', async (t) => {
  const s = await setup(t, 'meta');
  await deleteCheckpoint(s.guest.virsh, s.guest.name, await currentCheckpoint(s.guest), {
    metadataOnly: true,
  });
  await rm(join(s.h.stateDir, 'catalog.sqlite'), { force: true });
  await rm(join(s.h.stateDir, 'catalog.sqlite-wal'), { force: true });
  await rm(join(s.h.stateDir, 'catalog.sqlite-shm'), { force: true });
  const changed = await s.write(3, 40);
  const r = await s.protect();
  assert.equal(r.mode, 'resync');
  const d = r.disks[0]!;
  assert.equal(d.dataBytes, changed.size * PATTERN_BLOCK_SIZE, 'only the changed chunks went over the wire');
  assert.ok(d.readBytes >= 120 * PATTERN_BLOCK_SIZE, 'the source was read in full');
  assert.ok(d.skippedBytes > d.dataBytes, 'most chunks were found unchanged');
  await s.checkCopy('after resync');
  // And the chain is whole again: the next run is incremental.
  const again = await s.write(4, 10);
  const next = await s.protect();
  assert.equal(next.mode, 'incremental');
  assert.equal(next.disks[0]!.dataBytes, again.size * PATTERN_BLOCK_SIZE);
  await s.checkCopy('the run after the resync');
});

test('guest killed (QEMU SIGKILLed): the inconsistent bitmap is noticed, checksum resync', async (t) => {
  const s = await setup(t, 'killed');
  const changed = await s.write(5, 50);
  const pid = Number((await readFile(`/run/libvirt/qemu/${s.guest.name}.pid`, 'utf8')).trim());
  process.kill(pid, 'SIGKILL');
  await waitForState(s.guest.virsh, s.guest.name, 'shut off', { timeoutMs: 30_000 });
  await s.guest.start();
  const r = await s.protect();
  assert.equal(r.mode, 'resync', 'a bitmap left in use by a killed QEMU is not trusted');
  assert.equal(r.disks[0]!.dataBytes, changed.size * PATTERN_BLOCK_SIZE);
  await s.checkCopy('after the guest was killed');
});

test('two stores in turn: each incremental starts from its own store’s checkpoint', async (t) => {
  // The sender checks the checkpoint delivered last (to any store) while the receiver starts
  // (engine/replicate.ts, likelyBase). Here that is the other store's: using it for this store
  // would leave out what changed between the two copies, and the copy would differ.
  const s = await setup(t, 'two-stores');
  const between = await s.write(6, 25);
  const other = join(s.store, '..', 'other-store');
  const toOther = await s.protect(other);
  assert.equal(toOther.mode, 'full');
  const after = await s.write(7, 20);
  const r = await s.protect();
  assert.equal(r.mode, 'incremental');
  const expected = new Set([...between, ...after]);
  assert.equal(
    r.disks[0]!.dataBytes,
    expected.size * PATTERN_BLOCK_SIZE,
    'both changes went to the first store',
  );
  await s.checkCopy('the first store, after a copy to the other');
  // And the other store's next incremental starts from its own checkpoint too.
  const last = await s.write(8, 15);
  const again = await s.protect(other);
  assert.equal(again.mode, 'incremental');
  assert.equal(again.disks[0]!.dataBytes, new Set([...after, ...last]).size * PATTERN_BLOCK_SIZE);
});
