/**
 * The store conformance suite against the LVM store (docs/store-lvm.md), unchanged. LVM needs
 * device-mapper, which only the Debian test guest has: test/integration/store-lvm.test.ts copies
 * this tree into a guest and runs this file there with HAVEN_TEST_LVM naming the store's groups
 * (`vg_thick`, or `vg_thin/pool0` for thin volumes). Not a `.test.ts`: on a host without LVM it
 * has nothing to run against.
 */
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { openLvmStore } from '../../src/store/lvm/index.ts';
import { lvmStoreUnderTest } from './lvm-sut.ts';
import { EVERY_CAPABILITY, storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
const groups = process.env.HAVEN_TEST_LVM;
if (!groups) throw new Error('HAVEN_TEST_LVM names the volume groups to test (vg, or vg/pool)');

storeConformance(
  `lvm ${groups}`,
  async () => {
    await mkdir(root, { recursive: true });
    const dir = await mkdtemp(join(root, 'lvm-store-'));
    return lvmStoreUnderTest(await openLvmStore(dir, { create: true, volumeGroups: groups }), dir);
  },
  // LV names are the volume group's: the stores of concurrent tests would share them.
  { ...EVERY_CAPABILITY, sharedImageNames: true },
);
