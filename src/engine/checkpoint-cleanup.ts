/**
 * Deleting Haven's checkpoints that no target needs any more: from libvirt (with their bitmaps in
 * every qcow2, running or shut off: virt/checkpoints.ts deleteCheckpoint) and then from the
 * catalog. Used after each commit (engine/replicate.ts), by `haven forget` and by the periodic
 * stale-checkpoint sweep (jobs/forget.ts, jobs/stale-checkpoints.ts).
 *
 * The catalog row goes only after libvirt's checkpoint did, so a failure leaves the checkpoint
 * listed as unneeded and the next prune tries again. Checkpoints of other tools are never
 * touched: only names Haven makes (points.ts).
 */
import type { Catalog, CheckpointRecord } from '../catalog/catalog.ts';
import { asHavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import {
  activeBackup,
  backupEnd,
  type DomainState,
  deleteCheckpoint,
  domainState,
  listCheckpoints,
  type Virsh,
  VirtError,
} from '../virt/index.ts';
import { isHavenCheckpoint } from './points.ts';

export interface CheckpointCleanup {
  /** Deleted from libvirt (bitmaps included) and from the catalog. */
  deleted: string[];
  /** libvirt no longer had them (or the server is gone): removed from the catalog only. */
  missing: string[];
  /** Left in place: libvirt refused or could not be asked; a later prune tries again. */
  failed: Array<{ name: string; code: string; message: string }>;
}

/** The server's state, or 'absent' when libvirt does not know it. Other errors propagate. */
export async function serverPresence(virsh: Virsh, server: string): Promise<DomainState | 'absent'> {
  try {
    return (await domainState(virsh, server)).state;
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') return 'absent';
    throw e;
  }
}

/** Names of the checkpoints Haven made that libvirt has for the server, oldest first. */
export async function havenCheckpoints(virsh: Virsh, server: string): Promise<string[]> {
  return (await listCheckpoints(virsh, server)).map((c) => c.name).filter(isHavenCheckpoint);
}

/**
 * Deletes `checkpoints` of `server` (each one Haven made) from libvirt, then from the catalog.
 * With `absent`, libvirt is not asked: the server no longer exists there.
 */
export async function deleteCheckpoints(
  virsh: Virsh,
  server: string,
  checkpoints: ReadonlyArray<Pick<CheckpointRecord, 'name'>>,
  catalog: Catalog,
  log: Logger,
  options: { absent?: boolean } = {},
): Promise<CheckpointCleanup> {
  const out: CheckpointCleanup = { deleted: [], missing: [], failed: [] };
  for (const cp of checkpoints) {
    if (!isHavenCheckpoint(cp.name)) continue;
    try {
      if (options.absent) {
        out.missing.push(cp.name);
      } else {
        await deleteCheckpoint(virsh, server, cp.name, { log });
        out.deleted.push(cp.name);
      }
      catalog.checkpoints.forget(server, cp.name);
      log.verbose('deleted a checkpoint no target needs', { server, checkpoint: cp.name });
    } catch (e) {
      if (
        e instanceof VirtError &&
        (e.code === 'VIRT_CHECKPOINT_NOT_FOUND' || e.code === 'VIRT_DOMAIN_NOT_FOUND')
      ) {
        catalog.checkpoints.forget(server, cp.name);
        out.missing.push(cp.name);
        continue;
      }
      const err = asHavenError(e);
      out.failed.push({ name: cp.name, code: err.code, message: err.message });
      log.warn('could not delete an old checkpoint; a later prune tries again', {
        server,
        checkpoint: cp.name,
        err,
      });
    }
  }
  return out;
}

/**
 * Deletes every checkpoint of `server` that no target needs (catalog.checkpoints.unneeded with
 * the same options): what replicate.ts does after each commit, and the sweep for a server.
 */
export async function pruneUnneededCheckpoints(
  virsh: Virsh,
  server: string,
  catalog: Catalog,
  log: Logger,
  options: { targets?: string[]; olderThan?: Date; absent?: boolean } = {},
): Promise<CheckpointCleanup> {
  const unneeded = catalog.checkpoints.unneeded(server, {
    targets: options.targets,
    olderThan: options.olderThan,
  });
  return deleteCheckpoints(virsh, server, unneeded, catalog, log, { absent: options.absent });
}

/**
 * Ends the backup job a killed run left on the server for a delta that is being forgotten, so its
 * checkpoints can go. Only the job serving `socketPath`: another run's job is left alone.
 */
export async function endLeftBackup(
  virsh: Virsh,
  server: string,
  socketPath: string,
  log: Logger,
): Promise<boolean> {
  const job = await activeBackup(virsh, server);
  if (!job || job.socketPath !== socketPath) return false;
  await backupEnd(virsh, server);
  log.info('ended the backup job a stopped run had left for the forgotten delta', { server, socketPath });
  return true;
}
