/** A filesystem store as the conformance suite sees it (harness.ts StoreUnderTest). */
import { readdir, rm, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FsStore } from '../../src/store/fs/index.ts';
import { flipFileBit, type StoreUnderTest } from './harness.ts';

const OPENER = fileURLToPath(new URL('./fs-opener.ts', import.meta.url));

/**
 * `store` in directory `dir`: its images are the `.raw` files there, a child process opens it
 * with fs-opener.ts, and allocated bytes are st_blocks unless `allocatedBytes` says otherwise.
 * Cleanup closes the store and removes the directory.
 */
export function fsStoreUnderTest(
  store: FsStore,
  dir: string,
  options: { allocatedBytes?: (path: string) => Promise<number> } = {},
): StoreUnderTest {
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
    listImages: async () => (await readdir(dir)).filter((f) => f.endsWith('.raw')).map((f) => f.slice(0, -4)),
    damageImage: async (server, generationId, disk, offset) =>
      flipFileBit(await store.imagePath(server, generationId, disk), offset),
    child: { opener: OPENER, location: dir },
    allocatedBytes: options.allocatedBytes ?? (async (path) => (await stat(path)).blocks * 512),
  };
}
