/**
 * An LVM store as the conformance suite sees it (harness.ts StoreUnderTest): its images are the
 * LVs carrying its tag, damaged through their block devices; a child process opens it with
 * lvm-opener.ts. Only where LVM runs: inside the Debian test guest (lvm-store-suite.ts).
 */
import { readlink, rm, stat } from 'node:fs/promises';
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
    // As an operator would, with lvm itself: the LVs go, their volumes/ links are left dangling.
    removeImage: async (server, generationId, disk) => {
      const link = await readlink(await store.imagePath(server, generationId, disk));
      await exec('lvm', ['lvremove', '-y', '-q', '-f', link.slice('/dev/'.length)]);
    },
    removeServerImages: async (server) => {
      const { stdout } = await exec('lvm', [
        'lvs',
        '--noheadings',
        '--separator=/',
        '-o',
        'vg_name,lv_name',
        `@haven_store=${store.descriptor.id}`,
      ]);
      for (const lv of stdout.split('\n').map((l) => l.trim())) {
        if (lv.split('/')[1]?.startsWith(`${server}_`)) await exec('lvm', ['lvremove', '-y', '-q', '-f', lv]);
      }
    },
    damageImage: async (server, generationId, disk, offset) =>
      flipFileBit(await store.imagePath(server, generationId, disk), offset),
    child: { opener: OPENER, location: dir, timeoutMs: 300_000 },
    // The store's own files (digests above all) under its directory; the LVs' data is not counted
    // here (the volumes/ links are not files): thin volumes map only what is written.
    allocatedBytes: async (path) => (await stat(path)).blocks * 512,
  };
}
