/**
 * `haven deactivate`: gives up a DR copy without failing back (an activation by mistake, a
 * drill-like trial run, or a primary restored another way). The copy's changes since activation
 * are thrown away with its overlays; the store's generations were never touched, so replication
 * can continue from them. The primary's guard (guard.ts) is the primary's to clear.
 */
import type { Logger } from '../core/log.ts';
import type { Store } from '../store/types.ts';
import { destroyDomain, domainState, isActiveState, type Virsh, VirtError } from '../virt/index.ts';
import { activeDir } from './activate.ts';
import { notActive, recoveryError } from './errors.ts';
import { holdServer } from './generation.ts';
import { removeDir } from './overlay.ts';

export interface DeactivateResult {
  server: string;
  domain: string;
  /** The copy was still running and was destroyed (with dryRun: would be). */
  destroyed: boolean;
  /** Nothing was changed: the checks passed and this is what would be done. */
  dryRun: boolean;
}

export async function deactivateServer(o: {
  store: Store;
  server: string;
  virsh: Virsh;
  /** Stop the copy if it still runs (its changes are lost). */
  destroy?: boolean;
  /** Check, and say what would be done; change nothing. */
  dryRun?: boolean;
  log: Logger;
}): Promise<DeactivateResult> {
  const m = await o.store.manifest(o.server);
  if (!m?.activeAtDr) throw notActive(o.server);
  const domain = m.activeAtDr.domain ?? o.server;
  let running = false;
  try {
    running = isActiveState((await domainState(o.virsh, domain)).state);
  } catch (e) {
    if (!(e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND')) throw e;
  }
  if (running && !o.destroy) {
    throw recoveryError(
      'RECOVERY_DR_RUNNING',
      'refused',
      `the DR copy of ${o.server} still runs as ${domain}`,
      {
        hint: 'Shut it down first, or give --destroy: its changes since activation are then lost. To keep them, fail back instead.',
        details: { server: o.server, domain },
      },
    );
  }
  if (o.dryRun) return { server: o.server, domain, destroyed: running, dryRun: true };
  const hold = await holdServer(o.store, o.server, 'deactivation', 60_000);
  try {
    if (running) await destroyDomain(o.virsh, domain);
    await o.store.setActiveAtDr(o.server, null);
    await removeDir(activeDir(o.store, o.server));
  } finally {
    await hold.release();
  }
  o.log.info('the DR copy was given up', { server: o.server, domain, destroyed: running });
  return { server: o.server, domain, destroyed: running, dryRun: false };
}
