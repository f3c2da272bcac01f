/**
 * docs/design.md §4.2 step 4, the journal's phase `committing`: the manifest (what readers trust), then
 * `_incomplete` → `_1`, the delta marked committed (or removed), the journal removed, what no
 * generation needs pruned. Order of durability: data, delta record (seal), manifest, rename.
 */
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { storeError } from '../../errors.ts';
import type { Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { deleteDelta, stagedFiles, writeDeltaRecord } from '../deltas.ts';
import { fsyncDir, removeIfExists } from '../files.ts';
import { readManifest, removeJournal, withManifestLock, writeManifest } from '../metadata.ts';
import { imageName } from '../names.ts';
import type { DeltaRecord, Journal } from '../records.ts';
import { nextManifest } from './manifest.ts';
import { prune } from './prune.ts';

export async function publishGeneration(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
  log: Logger,
): Promise<Generation> {
  const server = journal.server;
  const generation = await withManifestLock(ctx, server, async () => {
    const current = await readManifest(ctx, server);
    const done = current?.generations.find((g) => g.id === journal.generationId);
    if (done) return done;
    const next = nextManifest(journal, delta, current);
    await writeManifest(ctx, next.manifest);
    return next.generation;
  });
  crashPoint('after-manifest');

  for (const d of delta.meta.disks) {
    const moved = await ctx.images.rename(server, d.name, 'incomplete', 1);
    if (!moved && !(await ctx.images.exists(server, d.name, 1))) {
      throw storeError(
        'STORE_IMAGE_MISSING',
        'integrity',
        `${imageName(server, d.name, 'incomplete')} vanished before it became _1`,
        {
          hint: 'Run `haven verify`; the previous generations are intact.',
        },
      );
    }
  }
  await ctx.images.syncNames();
  crashPoint('after-final-rename');

  await markCommitted(ctx, delta, log);
  await endJournal(ctx, server, log);
  log.info('generation committed', {
    server,
    generationId: generation.id,
    deltaBytes: generation.deltaBytes,
  });
  return generation;
}

/** The journal is done with: removed durably, and what no generation needs pruned. */
export async function endJournal(ctx: StoreContext, server: string, log: Logger): Promise<void> {
  await removeJournal(ctx, server);
  await fsyncDir(ctx.layout.serverDir(server));
  await prune(ctx, server, log);
}

export async function markCommitted(ctx: StoreContext, delta: DeltaRecord, log: Logger): Promise<void> {
  if (delta.kind === 'direct') {
    // A first run's delta has nothing to replay later: its images became the generation.
    delta.state = 'committed';
    await deleteDelta(ctx, delta, log);
    return;
  }
  if (delta.state !== 'committed') {
    delta.state = 'committed';
    delta.committedAt = new Date().toISOString();
    await writeDeltaRecord(ctx, delta);
  }
  // The positional digest cache only served expectedDigests while the delta was open.
  for (const d of delta.meta.disks) await removeIfExists(stagedFiles(delta.dataDir).sums(d.name));
}
