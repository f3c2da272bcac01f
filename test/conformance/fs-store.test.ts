/** The store conformance suite against the filesystem store. */
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { openFsStore } from '../../src/store/fs/index.ts';
import { fsStoreUnderTest } from './fs-sut.ts';
import { storeConformance } from './store-conformance.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

storeConformance('filesystem', async () => {
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, 'fs-store-'));
  return fsStoreUnderTest(await openFsStore(dir, { create: true }), dir);
});
