/**
 * The store conformance suite against the rbd store, the parts that kill or race a second
 * process: crash at every commit step, readers beside rotations, damage, size bombs (the other
 * parts: rbd-store.test.ts).
 */
import { after } from 'node:test';
import { startCephCluster } from '../fixtures/ceph/index.ts';
import { freshRbdStore, rbdStoreUnderTest } from './rbd-sut.ts';
import { storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
// Started before the suite is declared, held until the file's last test ends.
const ceph = await startCephCluster({ after: (fn) => after(fn) });

storeConformance(
  'rbd',
  async () => {
    const { store, dir, pool } = await freshRbdStore(ceph, root, 'haven-t-rbdk');
    return rbdStoreUnderTest(ceph, store, dir, pool);
  },
  undefined,
  ['crash', 'readers', 'damage', 'size bombs'],
);
