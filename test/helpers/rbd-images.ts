/** What a pool of the test cluster holds, read with the rbd tool (the rbd store's tests). */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CephCluster } from '../fixtures/ceph/index.ts';

/** The sha256 of each of the pool's images, each exported from the cluster into `scratch`. */
export async function imageHashes(
  ceph: CephCluster,
  pool: string,
  scratch: string,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const image of (await ceph.rbd(['ls', pool])).stdout.split('\n').filter(Boolean)) {
    const copy = join(scratch, `${image}.export`);
    await rm(copy, { force: true });
    await ceph.rbd(['export', '--no-progress', `${pool}/${image}`, copy]);
    out.set(
      image,
      createHash('sha256')
        .update(await readFile(copy))
        .digest('hex'),
    );
    await rm(copy, { force: true });
  }
  return out;
}
