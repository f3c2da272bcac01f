/** The DR definition, written at a server's first commit (docs/design.md §4.5): when missing, never overwritten. */
import type { Logger } from '../../../core/log.ts';
import type { StoreContext } from '../context.ts';
import { createFileOnce, ensureDir, exists } from '../files.ts';
import type { DeltaRecord } from '../records.ts';

/** What writing the definition needs of a delta (or of a journal segment). */
export type DefinitionSource = Pick<DeltaRecord, 'server'> & {
  meta: Pick<DeltaRecord['meta'], 'sourceDefinition' | 'disks'>;
};

export async function ensureDefinition(
  ctx: StoreContext,
  delta: DefinitionSource,
  log: Logger,
): Promise<void> {
  const path = ctx.layout.definition(delta.server);
  if (await exists(path)) return;
  // Imported when needed: the XML parser is not loaded at a receiver's start (store-base.ts).
  const { buildDrDefinition } = await import('../definition.ts');
  const xml = buildDrDefinition(
    delta.meta.sourceDefinition,
    delta.meta.disks.map((d) => d.name),
    (disk) => ctx.images.path(delta.server, disk, 1),
    log.child({ server: delta.server }),
    {
      server: delta.server,
      storeRoot: ctx.layout.root,
      rules: await ctx.definitionRules?.(),
      blockDevices: ctx.images.blockDevices,
      ...(ctx.images.diskSource
        ? { diskSource: (disk) => ctx.images.diskSource?.(delta.server, disk, 1) }
        : {}),
    },
  );
  await ensureDir(ctx.layout.definitionsDir);
  if (await createFileOnce(path, xml)) {
    await ctx.mirror?.saved(path);
    log.info('definition written', { server: delta.server, path });
  }
}
