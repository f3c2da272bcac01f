/** The store conformance suite against the filesystem store. */
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openFsStore } from '../../src/store/fs/index.ts';
import { storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

storeConformance('filesystem', async () => {
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, 'fs-store-'));
  const store = await openFsStore(dir, { create: true });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
    listImages: async () => (await readdir(dir)).filter((f) => f.endsWith('.raw')).map((f) => f.slice(0, -4)),
    child: { opener: fileURLToPath(new URL('./fs-opener.ts', import.meta.url)), location: dir },
    allocatedBytes: async (path) => (await stat(path)).blocks * 512,
  };
});
