/**
 * The store conformance suite against the in-memory test store the protocol's unit tests use
 * (src/protocol/test-support/memory-store.ts), so that what those tests rely on is the contract
 * every real store meets. It lives in one process: the suite's crash injection does not apply.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryStore } from '../../src/protocol/test-support/memory-store.ts';
import { storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

storeConformance(
  'in-memory test store',
  async () => {
    await mkdir(root, { recursive: true });
    // Definitions are files by contract (recovery/ reads them): the one thing it keeps on disk.
    const definitionsDir = await mkdtemp(join(root, 'memory-store-'));
    const store = new MemoryStore({ definitionsDir });
    return {
      store,
      cleanup: () => rm(definitionsDir, { recursive: true, force: true }),
      listImages: async () => store.imageNames(),
      damageImage: async (server, generationId, disk, offset) =>
        store.damage(server, generationId, disk, offset),
    };
  },
  { crashInjection: false, slotCheck: false },
);
