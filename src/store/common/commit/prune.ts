/**
 * Removing what no generation needs any more (after a commit, and by recover()): committed deltas
 * other than the producers of `_1` … `_N-1`, digests of generations that left the manifest, delta
 * directories a crash left without a record.
 */

import { join } from 'node:path';
import type { Logger } from '../../../core/log.ts';
import type { StoreContext } from '../context.ts';
import { deleteDelta, listDeltaRecords } from '../deltas.ts';
import { exists, listDir, removeTree } from '../files.ts';
import { readManifest } from '../metadata.ts';
import { generationsNeedingProducers } from '../rotation-plan.ts';

/** The caller holds the server lock and no journal exists. Returns what was removed. */
export async function prune(ctx: StoreContext, server: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  const manifest = await readManifest(ctx, server);
  const ids = manifest?.generations.map((g) => g.id) ?? [];
  const copies = manifest?.copies ?? 1;
  // Kept deltas only serve replays onto the oldest generation, which a cloning store never does.
  const keep = new Set(
    generationsNeedingProducers(ids, copies, await ctx.images.rotationClones(copies, log)),
  );
  for (const r of await listDeltaRecords(ctx, server)) {
    if (r.state === 'committed' && !keep.has(r.generationId)) {
      await deleteDelta(ctx, r, log);
      done.push(`${server}: removed delta ${r.id} (no generation needs it)`);
    }
  }
  const deltasDir = ctx.layout.deltasDir(server);
  for (const name of await listDir(deltasDir)) {
    if (!(await exists(join(deltasDir, name, 'delta.json')))) {
      await removeTree(join(deltasDir, name));
      await ctx.mirror?.removed(join(deltasDir, name));
      done.push(`${server}: removed delta directory ${name} left without a record`);
    }
  }
  const digestsRoot = ctx.layout.digestsRoot(server);
  for (const name of await listDir(digestsRoot)) {
    if (!ids.includes(name)) {
      await removeTree(join(digestsRoot, name));
      await ctx.mirror?.removed(join(digestsRoot, name));
      done.push(`${server}: removed digests of retired generation ${name}`);
    }
  }
  return done;
}
