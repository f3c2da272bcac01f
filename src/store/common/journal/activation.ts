/**
 * An activation at the DR site of a server the store keeps only as a point-in-time journal
 * (`haven activate --at`, docs/continuous.md): `activeAtDr` lives in the server's manifest, as for
 * every activation, so a server without one gets a manifest that holds no generation and only
 * that record. From then on a journal segment for the server is refused (STORE_ACTIVE_AT_DR, as
 * for a delta), and `haven failback` and `haven deactivate` find the activation where they
 * always look. Clearing the record removes such a manifest again: the store is as before.
 */
import type { ActiveAtDr } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { exists, removeIfExists } from '../files.ts';
import { MANIFEST_VERSION, readManifest, withManifestLock, writeManifest } from '../metadata.ts';
import { PitLayout } from './file.ts';

/**
 * Records `active` for a server that has a journal and no manifest; false (nothing done) when
 * the server has a manifest or no journal.
 */
export async function recordJournalActivation(
  ctx: StoreContext,
  server: string,
  active: ActiveAtDr,
): Promise<boolean> {
  if (!(await exists(new PitLayout(ctx, server).file))) return false;
  return withManifestLock(ctx, server, async () => {
    if (await readManifest(ctx, server)) return false;
    await writeManifest(ctx, {
      format: 'haven-manifest',
      version: MANIFEST_VERSION,
      server,
      copies: 1,
      generations: [],
      sourceDefinition: '',
      bootPriority: 100,
      activeAtDr: structuredClone(active),
    });
    return true;
  });
}

/** After an activation's record is cleared: a manifest that held only it goes. */
export async function dropActivationManifest(ctx: StoreContext, server: string): Promise<void> {
  if (!(await exists(new PitLayout(ctx, server).file))) return;
  await withManifestLock(ctx, server, async () => {
    const m = await readManifest(ctx, server);
    if (!m || m.generations.length > 0 || m.activeAtDr) return;
    await removeIfExists(ctx.layout.manifestCopy(server));
    await removeIfExists(ctx.layout.manifest(server));
  });
}
