/**
 * Issue 13.5: damage only the source can repair is sent again from the source. A byte flipped in
 * the only generation that holds a chunk (copies 1) is found before a commit builds on it (the
 * slot check, here told to read on every commit) or by `haven verify`; either way the next `haven protect` does a checksum resync
 * that sends the damaged chunk again, and the new `_1` verifies and equals the guest's disk.
 * `haven protect --resync` asks for the same full comparison on an undamaged store.
 */
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { test } from 'node:test';
import type { ProtectPlan } from '../../src/engine/index.ts';
import { PATTERN_BLOCK_SIZE } from '../fixtures/guest/pattern.ts';
import { havenJson, runHaven } from '../helpers/haven.ts';
import { guestStore } from './guest-store.ts';

const PREFIX = 'haven-t-repair';

async function setup(t: Parameters<typeof guestStore>[0], name: string, config?: string) {
  const s = await guestStore(t, { prefix: PREFIX, name, copies: 1, ...(config ? { config } : {}) });
  /** Flips one byte of `_1` inside pattern block `block` (a chunk the guest holds data in). */
  const flip = async (block: number) => {
    const fh = await open(s.image, 'r+');
    try {
      const b = Buffer.alloc(1);
      const at = block * PATTERN_BLOCK_SIZE + 4321;
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x5a;
      await fh.write(b, 0, 1, at);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };
  const first = await s.write(1, 120);
  assert.equal((await s.protect()).mode, 'full');
  return { ...s, flip, first: [...first] };
}

test('copies 1, a flipped byte found by the slot check: the same run sends the chunk again', async (t) => {
  // Recheck 0: the commit reads its source whole every time, not only once its last check is a day
  // old (the default window, docs/store-format.md), so this flip is found by this run.
  const s = await setup(t, 'slot', 'integrity:\n  recheck: 0\n');
  const changed = await s.write(2, 10);
  const damaged = s.first.find((b) => !changed.has(b))!;
  await s.flip(damaged);
  const r = await s.protect();
  assert.equal(r.attempts, 2, 'the refused commit was followed by a second attempt');
  assert.equal(r.attemptLog[0]?.error, 'STORE_RESEND_NEEDED');
  assert.equal(r.mode, 'resync');
  assert.equal(
    r.attemptLog[1]?.sentBytes,
    (changed.size + 1) * PATTERN_BLOCK_SIZE,
    'the second attempt sent what changed, and the damaged chunk again',
  );
  assert.equal(r.disks[0]!.dataBytes, (2 * changed.size + 1) * PATTERN_BLOCK_SIZE, 'both attempts counted');
  await s.checkCopy('after the repair');
  // Nothing is left marked: the next run is incremental again.
  const again = await s.write(3, 5);
  const next = await s.protect();
  assert.equal(next.mode, 'incremental');
  assert.equal(next.disks[0]!.dataBytes, again.size * PATTERN_BLOCK_SIZE);
  await s.checkCopy('the run after the repair');
});

test('damage found by haven verify: the hint holds, the next run is a checksum resync that repairs it', async (t) => {
  const s = await setup(t, 'verify');
  await s.flip(s.first[3]!);
  const v = await s.verify();
  assert.equal(v.code, 8, 'verify finds the damage');
  assert.match(v.stderr, /checksum resync that sends its damaged chunks again from the source/);
  const plan = await havenJson<ProtectPlan>(s.h, ['protect', s.guest.name, '--to', s.store, '--dry-run']);
  assert.equal(plan.resync, 'target', 'a dry run says the target asks for a checksum resync');
  assert.deepEqual(
    plan.disks.map((d) => d.mode),
    ['resync'],
  );
  const r = await s.protect();
  assert.equal(r.attempts, 1);
  assert.equal(r.mode, 'resync');
  assert.equal(r.disks[0]!.dataBytes, PATTERN_BLOCK_SIZE, 'only the damaged chunk went over the wire');
  await s.checkCopy('after the resync');
});

test('haven protect --resync compares every chunk and sends what differs; --dry-run says so', async (t) => {
  const s = await setup(t, 'operator');
  const changed = await s.write(4, 20);
  const dry = await runHaven(s.h, ['protect', s.guest.name, '--to', s.store, '--resync', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /checksum resync \(--resync\): every chunk would be read and compared/);
  assert.match(dry.stdout, /nothing changed/);
  const r = await s.protect(s.store, '--resync');
  assert.equal(r.mode, 'resync');
  const d = r.disks[0]!;
  assert.equal(d.dataBytes, changed.size * PATTERN_BLOCK_SIZE, 'only what changed was sent');
  assert.ok(d.readBytes >= 120 * PATTERN_BLOCK_SIZE, 'every written chunk was read');
  await s.checkCopy('after --resync');
  const bad = await runHaven(s.h, ['protect', s.guest.name, '--to', s.store, '--resync', '--continuous']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--resync is for one run/);
});
