/**
 * An rbd store as the conformance suite sees it (harness.ts StoreUnderTest): a pool of its own in
 * the shared one-node test cluster (test/fixtures/ceph), its images the pool's RBD images,
 * damaged through QEMU's rbd driver (qemu-io), a child process opening it with rbd-opener.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../../src/core/exec.ts';
import { openRbdStore, type RbdStore } from '../../src/store/rbd/index.ts';
import type { CephCluster } from '../fixtures/ceph/index.ts';
import type { StoreUnderTest } from './harness.ts';

const OPENER = fileURLToPath(new URL('./rbd-opener.ts', import.meta.url));

/** The location of `pool` for the cluster's admin user (its configuration file and keyring). */
export function rbdLocation(ceph: CephCluster, pool: string): string {
  return `rbd://admin@ceph/${pool}?conf=${ceph.conf}&keyring=${ceph.keyring}`;
}

/** A fresh pool and store directory; cleanup removes both. */
export async function freshRbdStore(
  ceph: CephCluster,
  root: string,
  prefix: string,
): Promise<{ store: RbdStore; dir: string; pool: string }> {
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, `${prefix}-`));
  const pool = await ceph.createPool(`${prefix}-${randomBytes(4).toString('hex')}`);
  const store = await openRbdStore(dir, { create: true, rbd: rbdLocation(ceph, pool) });
  return { store, dir, pool };
}

export function rbdStoreUnderTest(
  ceph: CephCluster,
  store: RbdStore,
  dir: string,
  pool: string,
): StoreUnderTest {
  return {
    store,
    cleanup: async () => {
      await store.close();
      await ceph.ceph(['osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it']);
      await rm(dir, { recursive: true, force: true });
    },
    listImages: () => store.images.names(),
    damageImage: async (server, generationId, disk, offset) => {
      const path = await store.imagePath(server, generationId, disk);
      const image = path.slice(`rbd:${pool}/`.length);
      const byte = Buffer.alloc(1);
      const reader = await store.images.openReaderOf(image, path);
      if (!reader) throw new Error(`${path} is missing`);
      try {
        await reader.read(byte, 1, offset);
      } finally {
        await reader.close();
      }
      const flipped = ((byte[0] ?? 0) ^ 0x40).toString(16);
      await exec('qemu-io', [
        '-f',
        'raw',
        '-c',
        `write -P 0x${flipped} ${offset} 1`,
        ceph.qemuRbd(pool, image),
      ]);
    },
    removeImage: async (server, generationId, disk) => {
      // As `rbd rm` would, or `rbd trash mv` where the image's snapshots still have clones.
      const path = await store.imagePath(server, generationId, disk);
      await store.images.removeImage(path.slice(`rbd:${pool}/`.length));
    },
    removeServerImages: async (server) => {
      for (const image of await store.images.names()) {
        if (image.startsWith(`${server}_`)) await store.images.removeImage(image);
      }
    },
    child: { opener: OPENER, location: dir },
    // The store's own files (digests above all) under its directory. No allocatedBytes for images:
    // the cluster keeps them sparse (BlueStore allocates what is written; a pool's `stored` shows
    // it, test/integration/store-rbd.test.ts), but gives no figure per image: `rbd diff` and
    // `rbd du` report the extent of every object written, holes inside it included.
    fileBytes: async (path) => (await stat(path)).blocks * 512,
  };
}
