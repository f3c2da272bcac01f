/**
 * The space a server's files take in the store (issue 13.2, quotas): the blocks its images
 * allocate (every generation, `_incomplete` too) and the data its deltas have staged. Holes cost
 * nothing, so a disk declared huge and barely written counts what it holds. Block-device stores
 * count what their volumes report as allocated (images.ts `allocated`).
 */
import { stat } from 'node:fs/promises';
import type { StoreContext } from './context.ts';
import { listDeltaRecords, stagedFiles } from './deltas.ts';
import { isErrno } from './files.ts';
import { readManifest } from './metadata.ts';

export async function serverSpaceUsed(ctx: StoreContext, server: string): Promise<number> {
  const disks = new Set<string>();
  const manifest = await readManifest(ctx, server).catch(() => null);
  for (const g of manifest?.generations ?? []) for (const d of g.disks) disks.add(d.name);
  const deltas = await listDeltaRecords(ctx, server);
  for (const r of deltas) for (const d of r.meta.disks) disks.add(d.name);
  let used = 0;
  for (const disk of disks) {
    for (const seq of await ctx.images.list(server, disk))
      used += await ctx.images.allocated(server, disk, seq);
  }
  for (const r of deltas) {
    if (r.kind !== 'staged') continue;
    const files = stagedFiles(r.dataDir);
    used += (await allocated(files.data)) + (await allocated(files.index));
  }
  return used;
}

async function allocated(path: string): Promise<number> {
  try {
    return (await stat(path)).blocks * 512;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return 0;
    throw e;
  }
}
