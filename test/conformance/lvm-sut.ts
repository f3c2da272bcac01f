/**
 * An LVM store as the conformance suite sees it (harness.ts StoreUnderTest): its images are the
 * LVs carrying its tag, damaged through their block devices; a child process opens it with
 * lvm-opener.ts. Only where LVM runs: inside the Debian test guest (lvm-store-suite.ts).
 */
import { rm, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { exec } from '../../src/core/exec.ts';
import type { LvmStore } from '../../src/store/lvm/index.ts';
import { flipFileBit, type StoreUnderTest } from './harness.ts';

const OPENER = fileURLToPath(new URL('./lvm-opener.ts', import.meta.url));

export function lvmStoreUnderTest(store: LvmStore, dir: string): StoreUnderTest {
  return {
    store,
    cleanup: async () => {
      await store.close();
      // Every LV this store made, by its tag; nothing else in the groups.
      await exec('lvm', ['lvremove', '-y', '-q', '-f', `@haven_store=${store.descriptor.id}`]);
      await rm(dir, { recursive: true, force: true });
    },
    listImages: () => store.images.names(),
    damageImage: async (server, generationId, disk, offset) =>
      flipFileBit(await store.imagePath(server, generationId, disk), offset),
    child: { opener: OPENER, location: dir },
    // The store's own files (digests above all) under its directory; the LVs' data is not counted
    // here (the volumes/ links are not files): thin volumes map only what is written.
    allocatedBytes: async (path) => (await stat(path)).blocks * 512,
  };
}
