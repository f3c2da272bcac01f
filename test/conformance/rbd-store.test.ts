/**
 * The store conformance suite against the rbd store, on the one-node test cluster
 * (test/fixtures/ceph): a pool per test, the contract unchanged. The suite takes 12 minutes here,
 * close to the test runner's per-file limit (15), so it is split in two files:
 * this one runs the parts in one process, rbd-store-child.test.ts those that need a second one.
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
    const { store, dir, pool } = await freshRbdStore(ceph, root, 'haven-t-rbdc');
    return rbdStoreUnderTest(ceph, store, dir, pool);
  },
  undefined,
  ['rotation', 'writing', 'resume', 'refusals', 'records', 'bitrot'],
);
