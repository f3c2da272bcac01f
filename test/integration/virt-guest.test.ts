/**
 * The test guest itself, on real libvirt/QEMU (TCG): its workloads, its control channel, clean
 * and refused shutdowns, and agreement between the guest's pattern and its TypeScript twin.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { domainState, VirtError } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkPatternInFile, PATTERN_BLOCK_SIZE, patternBlocks } from '../fixtures/guest/pattern.ts';
import { testDir, toRaw } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-virt';

test('pattern-write, then pattern-verify across a reboot; the TS twin matches; a damaged block is caught', async (t) => {
  const tmp = await testDir(t, `${PREFIX}-wl`);
  const g = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }],
    workload: { name: 'pattern-write', seed: 11, count: 40 },
  });
  const disk = g.disks[0];
  assert.ok(disk);
  // The workload runs before the guest reports ready.
  const log = await g.serial();
  assert.match(log, /^HAVEN pattern-write done disk=vda seed=11 count=40$/m);
  const reported = [...log.matchAll(/^HAVEN pattern-write disk=vda block=(\d+)$/gm)].map((m) => Number(m[1]));
  const expected = patternBlocks(11, 40, disk.sizeBytes / PATTERN_BLOCK_SIZE);
  assert.deepEqual(reported, expected, 'the guest writes exactly the blocks the TS twin predicts');

  await g.poweroff();
  const raw = await toRaw(disk.path, join(tmp, 'vda.raw'));
  assert.deepEqual((await checkPatternInFile(raw, 11, 40)).bad, [], 'every block matches byte for byte');
  assert.equal((await checkPatternInFile(raw, 12, 40)).bad.length, 40, 'another seed does not match');

  await g.setWorkload({ name: 'pattern-verify', seed: 11, count: 40 });
  await g.start();
  assert.match(await g.serial(), /^HAVEN pattern-verify OK disk=vda seed=11 count=40$/m);

  // Damage 512 bytes in the middle of one written block, from outside, while the guest is off.
  await g.poweroff();
  const victim = expected[17] as number;
  await exec('qemu-io', [
    '-f',
    'qcow2',
    '-c',
    `write -P 0x55 ${victim * PATTERN_BLOCK_SIZE + 4096} 512`,
    disk.path,
  ]);
  await g.start();
  const bad = await g.waitForSerial(
    /^HAVEN pattern-verify BAD disk=vda seed=11 count=40 bad=(\d+) blocks=(\S*)$/m,
    1000,
  );
  assert.equal(bad[1], '1');
  assert.equal(bad[2], String(victim));
});

test('control channel: write/verify on a raw second disk, random writes with checksums, errors', async (t) => {
  const g = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 32 }, { sizeMiB: 16, format: 'raw' }],
  });
  const vdb = g.disks[1];
  assert.ok(vdb);
  assert.match(await g.serial(), /^HAVEN boot .* disks=vda:512,vdb:256 /m);

  await g.writePattern('vdb', 5, 30);
  assert.equal(await g.verifyPattern('vdb', 5, 30), 'OK');
  const wrong = await g.verifyPattern('vdb', 6, 30);
  assert.match(wrong, /^BAD 30 /);
  assert.equal(await g.command('verify-pattern vdz 1 1'), 'error no-such-disk');
  assert.equal(await g.command('write-pattern vda 1 99999'), 'error count-exceeds-disk');
  assert.equal(await g.command('write-pattern vda x 1'), 'error bad-seed');
  assert.equal(await g.command('frobnicate'), 'error unknown-command');
  assert.equal(
    await g.command('write-pattern * 1 1'),
    'error no-such-disk',
    'no glob expansion in the guest',
  );
  assert.equal(await g.command('random stop'), 'error not-running');

  // Random writes on vda: each reported with the MD5 of its 64 KiB.
  const from = (await g.serial()).length;
  assert.equal(await g.command('random start vda 0 12'), 'ok');
  await g.waitForSerial(/^HAVEN random done disk=vda writes=12$/m, 60_000, from);
  assert.equal(await g.command('random stop'), 'ok 12');
  assert.equal(await g.command('sync'), 'ok');
  const writes = [
    ...(await g.serial()).slice(from).matchAll(/^HAVEN random disk=vda block=(\d+) md5=([0-9a-f]{32})$/gm),
  ];
  assert.equal(writes.length, 12);
  await g.poweroff();

  // Last write wins: compare every reported block with the image, read from outside.
  const last = new Map<number, string>();
  for (const w of writes) last.set(Number(w[1]), w[2] as string);
  const tmp = await testDir(t, `${PREFIX}-rnd`);
  const raw = await readFile(await toRaw(g.disks[0]?.path ?? '', join(tmp, 'vda.raw')));
  for (const [block, md5] of last) {
    const bytes = raw.subarray(block * PATTERN_BLOCK_SIZE, (block + 1) * PATTERN_BLOCK_SIZE);
    assert.equal(createHash('md5').update(bytes).digest('hex'), md5, `block ${block}`);
  }
  // The raw disk holds the pattern at the very same offsets.
  assert.deepEqual((await checkPatternInFile(vdb.path, 5, 30)).bad, []);
});

test('ACPI shutdown powers the guest off; a guest ignoring it is reported, not killed', async (t) => {
  const [polite, stubborn] = await Promise.all([
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] }),
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], ignoreAcpi: true, transient: true }),
  ]);
  const r = await polite.shutdown(60_000);
  assert.equal(r.stopped, true);
  assert.equal(r.state, 'shut off');
  assert.match(await polite.serial(), /^HAVEN power-button$/m);

  const s = await stubborn.shutdown(3000);
  assert.equal(s.stopped, false);
  assert.equal(s.state, 'running');
  assert.equal(await stubborn.state(), 'running');
  // A transient domain is gone from libvirt once destroyed.
  await stubborn.destroy();
  await assert.rejects(
    domainState(stubborn.virsh, stubborn.name),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND',
  );
});
