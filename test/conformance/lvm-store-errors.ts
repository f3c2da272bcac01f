/**
 * What only the LVM store has (docs/store-lvm.md "Errors", issue 17 item 4), beside the
 * conformance suite: a missing group, an LV of an image's name that is not Haven's, a group that
 * fills up between runs, a thin pool that fills during one, groups that differ from the store's,
 * and the definition's block disks.
 * Like lvm-store-suite.ts it runs inside the Debian test guest (test/long/store-lvm.test.ts)
 * with HAVEN_TEST_LVM naming one thick volume group it may fill, and HAVEN_TEST_LVM_THIN_VG one
 * with room for the small thin pools its thin-pool tests create and fill.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { openLvmStore } from '../../src/store/lvm/index.ts';
import { openStore } from '../../src/store/open.ts';
import { code, disksFor, ServerSim } from './harness.ts';
import { lvmStoreUnderTest } from './lvm-sut.ts';
import { sendExtents, withStaged } from './model.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
const vg = process.env.HAVEN_TEST_LVM ?? '';
if (!/^[A-Za-z0-9_.+-]+$/.test(vg)) throw new Error('HAVEN_TEST_LVM names one thick volume group');
/** A group with room for small thin pools of the tests' own (beside the suite's pool). */
const thinVg = process.env.HAVEN_TEST_LVM_THIN_VG ?? '';
if (!/^[A-Za-z0-9_.+-]+$/.test(thinVg)) throw new Error('HAVEN_TEST_LVM_THIN_VG names a volume group');

async function scratchDir(): Promise<string> {
  await mkdir(root, { recursive: true });
  return mkdtemp(join(root, 'lvm-errors-'));
}

async function lvm(...args: string[]): Promise<string> {
  return (await exec('lvm', args)).stdout;
}

async function fresh(t: { after(fn: () => Promise<void>): void }) {
  const dir = await scratchDir();
  const sut = lvmStoreUnderTest(await openLvmStore(dir, { create: true, volumeGroups: vg }), dir);
  t.after(() => sut.cleanup());
  return { dir, sut };
}

test('a volume group that does not exist: STORE_LVM_NO_VG, and no store is created', async () => {
  const dir = await scratchDir();
  await assert.rejects(
    openLvmStore(dir, { create: true, volumeGroups: 'vg_haven_none' }),
    code('STORE_LVM_NO_VG'),
  );
  assert.equal(existsSync(join(dir, 'haven-store.json')), false);
});

test('other groups than the store was created with: STORE_LVM_CONFLICT; none given opens it by its descriptor', async (t) => {
  const { dir, sut } = await fresh(t);
  await assert.rejects(openStore(dir, { volumeGroups: `${vg},vg_other` }), code('STORE_LVM_CONFLICT'));
  const again = await openStore(dir);
  assert.equal(again.kind, 'lvm');
  assert.equal(again.descriptor.id, sut.store.descriptor.id);
});

test('an LV of an image name that is not Haven’s is refused with STORE_LVM_FOREIGN and left alone', async (t) => {
  const { sut } = await fresh(t);
  const sim = ServerSim.on(sut, { server: 'Web01', disks: disksFor('Web01'), copies: 2, seed: 171 });
  const foreign = 'Web01_Web01_0_incomplete';
  await lvm('lvcreate', '-y', '-q', '-W', 'n', '-L', '4m', '-n', foreign, vg);
  t.after(async () => {
    await exec('lvm', ['lvremove', '-y', '-q', '-f', `${vg}/${foreign}`], { okCodes: [0, 5] });
  });
  await assert.rejects(sim.runDelta(), code('STORE_LVM_FOREIGN'));
  assert.match(await lvm('lvs', '--noheadings', '-o', 'lv_name', vg), new RegExp(`\\b${foreign}\\b`));
  assert.deepEqual(await sut.listImages(), [], 'nothing of the store was created');
  await lvm('lvremove', '-y', '-q', '-f', `${vg}/${foreign}`);
  // The refused run's delta was recorded before its images: the next run continues it.
  const w = await sut.store.openDelta(sim.prepare().meta);
  assert.notEqual(w.resumed, null, 'the refused run is continued');
  await w.discard();
  await sim.runDelta();
  await sim.check('after the foreign LV is gone');
});

test('a volume group that fills up: NO_SPACE before anything changes, earlier generations intact, the run completes once there is room', async (t) => {
  const { sut } = await fresh(t);
  const sim = ServerSim.on(sut, { server: 'Web01', disks: disksFor('Web01'), copies: 2, seed: 172 });
  await sim.runDelta();
  await sim.check('run 1');
  // The second run copies the newest generation into new LVs: fill the group first.
  await lvm('lvcreate', '-y', '-q', '-W', 'n', '-l', '100%FREE', '-n', 'haven_test_filler', vg);
  t.after(async () => {
    await exec('lvm', ['lvremove', '-y', '-q', '-f', `${vg}/haven_test_filler`], { okCodes: [0, 5] });
  });
  const before = await sut.listImages();
  const p = sim.prepare({ writes: 4, zeroRanges: 1 });
  const w = await sut.store.openDelta(p.meta);
  const r = await sendExtents(w, sim.alg, p.content, p.disks, p.extents);
  await w.seal(r.sent);
  await assert.rejects(w.commit(), code('NO_SPACE'));
  await w.close();
  assert.deepEqual(await sut.listImages(), before, 'no image was created, renamed or removed');
  await sim.check('after NO_SPACE');
  // With room, the sealed delta is committed (roll-forward) without the sender sending again.
  await lvm('lvremove', '-y', '-q', '-f', `${vg}/haven_test_filler`);
  await sut.store.recover();
  const newest = (await sut.store.manifest('Web01'))?.generations[0];
  assert.equal(newest?.pointInTime, p.meta.pointInTime, 'the sealed run became the newest generation');
  if (newest) sim.adopt(newest, p);
  await sim.check('run 2, committed once there was room');
  await sim.runDelta();
  await sim.check('run 3');
});

test('the definition names the newest generation as block disks through the volumes/ links', async (t) => {
  const { dir, sut } = await fresh(t);
  const sim = ServerSim.on(sut, { server: 'Web01', disks: disksFor('Web01'), copies: 1, seed: 173 });
  await sim.runDelta();
  const xml = await readFile(sut.store.definitionPath('Web01'), 'utf8');
  for (const disk of ['Web01_0', 'Web01_1']) {
    const link = join(dir, 'volumes', `Web01_${disk}_1`);
    assert.match(xml, new RegExp(`<disk type="block" device="disk">[\\s\\S]*?<source dev="${link}"/>`));
    assert.equal(await readlink(link), `/dev/${vg}/Web01_${disk}_1`);
  }
  assert.doesNotMatch(xml, /installer\.iso/, 'the optical drive is ejected');
});

/** Bytes a thin pool can still map. */
async function poolFreeBytes(pool: string): Promise<number> {
  const out = await lvm(
    'lvs',
    '--noheadings',
    '--units',
    'b',
    '--nosuffix',
    '-o',
    'lv_size,data_percent',
    pool,
  );
  const [size, pct] = out.trim().split(/\s+/).map(Number);
  return Math.floor(((size ?? 0) * (100 - (pct ?? 0))) / 100);
}

for (const [label, whenFull, directIo] of [
  ['past the page cache (ENOSPC), from a pool that holds writes for 60 s first (LVM’s default)', 'n', true],
  ['through the page cache (EIO at fsync), from a pool that errors when full', 'y', false],
] as const) {
  test(`a thin pool that fills during a run, ${label}: NO_SPACE naming the pool, another server intact, the run resumes once there is room`, async (t) => {
    const pool = `pool_full_${directIo ? 'direct' : 'cached'}`;
    const filler = 'haven_test_filler';
    let sut: ReturnType<typeof lvmStoreUnderTest> | undefined;
    t.after(async () => {
      await sut?.cleanup();
      await exec('lvm', ['lvremove', '-y', '-q', '-f', `${thinVg}/${filler}`], { okCodes: [0, 5] });
      await exec('lvm', ['lvremove', '-y', '-q', '-f', `${thinVg}/${pool}`], { okCodes: [0, 5] });
    });
    await lvm('lvcreate', '-y', '-q', '--type', 'thin-pool', '-L', '8m', '-n', pool, thinVg);
    // A new pool queues when full (LVM's default); lvchange refuses to set what is set.
    if (whenFull === 'y') await lvm('lvchange', '-q', '--errorwhenfull', 'y', `${thinVg}/${pool}`);
    const dir = await scratchDir();
    sut = lvmStoreUnderTest(
      await openLvmStore(dir, { create: true, volumeGroups: `${thinVg}/${pool}`, directIo }),
      dir,
    );
    const other = ServerSim.on(sut, { server: 'Db01', disks: disksFor('Db01'), copies: 2, seed: 174 });
    await other.runDelta();
    // Another tenant of the pool takes all but 512 KiB; the run below needs about 1.5 MiB.
    await lvm('lvcreate', '-y', '-q', '-W', 'n', '-V', '16m', '--thin', '-n', filler, `${thinVg}/${pool}`);
    const take = Math.floor(((await poolFreeBytes(`${thinVg}/${pool}`)) - (512 << 10)) / (64 << 10));
    await exec('dd', [
      'if=/dev/urandom',
      `of=/dev/${thinVg}/${filler}`,
      'bs=64k',
      `count=${take}`,
      'oflag=direct',
    ]);

    const sim = ServerSim.on(sut, { server: 'Web01', disks: disksFor('Web01'), copies: 2, seed: 175 });
    const p = sim.prepare();
    const w1 = await sut.store.openDelta(p.meta);
    const failed = (async () => {
      const r = await sendExtents(w1, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 2 });
      await w1.seal(r.sent);
    })();
    await assert.rejects(failed, (e: unknown) => {
      code('NO_SPACE')(e);
      assert.match(
        String((e as Error).message),
        new RegExp(`thin pool ${thinVg}/${pool} is full \\(data\\)`),
      );
      return true;
    });
    await w1.close();
    assert.equal(await sut.store.manifest('Web01'), null, 'no generation of the failed first run');
    await other.check('the other server after its pool filled');

    // Room again: the run continues from its last checkpoint, without sending that part again.
    await lvm('lvremove', '-y', '-q', '-f', `${thinVg}/${filler}`);
    const w2 = await sut.store.openDelta(p.meta);
    assert.ok(w2.resumed, 'the failed run is continued');
    const rest = await sendExtents(w2, sim.alg, p.content, p.disks, p.extents, {
      from: w2.resumed.watermarks,
    });
    await w2.seal(withStaged(rest.sent, w2.resumed.staged));
    sim.adopt(await w2.commit(), p);
    await sim.check('the resumed run');
    await sim.runDelta({ writes: 4, zeroRanges: 1 });
    await sim.check('the next run');
    await other.check('the other server at the end');
  });
}
