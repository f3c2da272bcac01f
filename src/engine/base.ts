/**
 * The checkpoint an incremental run starts from (docs/design.md §6). The target's newest generation names
 * the checkpoint it came from; the run is incremental from exactly that one when libvirt still has
 * it (or it can be redefined from the catalog) and its bitmaps are consistent. Anything else is a
 * checksum resync, and the log says why.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../core/log.ts';
import type { Generation } from '../store/types.ts';
import {
  type Checkpoint,
  listCheckpoints,
  redefineCheckpoint,
  type Server,
  type Virsh,
  VirtError,
  validateCheckpoint,
} from '../virt/index.ts';
import { checkpointOf } from './points.ts';
import type { BaseCheckpoint } from './source.ts';

export interface BaseOptions {
  catalog: Catalog | undefined;
  log: Logger;
  /** likelyBase's answer, worked out while the receiver started. */
  likely?: Promise<BaseCheckpoint | undefined>;
  /**
   * A dry run: libvirt is not changed. A checkpoint it lost but the catalog can redefine counts
   * as the base (a run would redefine it), with the disks the catalog recorded.
   */
  readOnly?: boolean;
}

/**
 * The checkpoint the target's newest generation came from, if its bitmaps can be trusted.
 * Checkpoint metadata libvirt lost is redefined from the catalog first (docs/design.md §6).
 */
export async function trustedBase(
  virsh: Virsh,
  server: Server,
  newest: Generation | null,
  { catalog, log, likely, readOnly }: BaseOptions,
): Promise<BaseCheckpoint | undefined> {
  const name = checkpointOf(newest?.pointInTime);
  if (!newest) return undefined;
  if (!name) {
    log.warn('the target’s newest copy names no Haven checkpoint: checksum resync', {
      pointInTime: newest.pointInTime,
    });
    return undefined;
  }
  const checked = await likely;
  if (checked?.name === name) {
    log.debug('base checkpoint checked while the receiver started', { checkpoint: name });
    return checked;
  }
  let cp = (await listCheckpoints(virsh, server.name)).find((c) => c.name === name);
  if (!cp) {
    const saved = catalog?.checkpoints.get(server.name, name);
    if (!saved) {
      log.warn('libvirt no longer has the checkpoint of the target’s newest copy: checksum resync', {
        checkpoint: name,
      });
      return undefined;
    }
    if (readOnly) {
      log.verbose('libvirt lost the base checkpoint; a run redefines it from the catalog', {
        checkpoint: name,
      });
      return { name, disks: new Set(saved.disks) };
    }
    try {
      cp = await redefineCheckpoint(virsh, server.name, saved.xml);
      log.info('redefined the checkpoint libvirt had lost, from the catalog', { checkpoint: name });
    } catch (e) {
      if (!(e instanceof VirtError)) throw e;
      log.warn('the lost checkpoint cannot be redefined (its bitmaps are gone): checksum resync', {
        checkpoint: name,
        err: e,
      });
      return undefined;
    }
  }
  const v = await validateCheckpoint(virsh, server.name, name, { log });
  if (!v.ok) {
    log.warn('the checkpoint’s bitmaps are missing or inconsistent: checksum resync', {
      checkpoint: name,
      issues: v.issues,
      message: v.message,
    });
    return undefined;
  }
  return baseOf(cp);
}

function baseOf(cp: Checkpoint): BaseCheckpoint {
  return {
    name: cp.name,
    disks: new Set(cp.disks.filter((d) => d.checkpoint === 'bitmap').map((d) => d.name)),
  };
}

/**
 * trustedBase's answer for the checkpoint the target most likely holds its newest copy from (the
 * newest one this catalog saw delivered anywhere), worked out while the receiver starts: the
 * sender waits about a third of a second for its first answer, and the libvirt checks take a
 * quarter of that. Only a checkpoint that exists and whose bitmaps check out is returned; when the
 * target names another, or anything is wrong, trustedBase checks again and says why. Never rejects.
 */
export async function likelyBase(
  virsh: Virsh,
  server: Server,
  catalog: Catalog,
): Promise<BaseCheckpoint | undefined> {
  try {
    const name = catalog.checkpoints
      .list(server.name)
      .find((c) => catalog.checkpoints.deliveries(server.name, c.name).length > 0)?.name;
    if (!name) return undefined;
    const cp = (await listCheckpoints(virsh, server.name)).find((c) => c.name === name);
    if (!cp) return undefined;
    const v = await validateCheckpoint(virsh, server.name, name);
    return v.ok ? baseOf(cp) : undefined;
  } catch {
    return undefined;
  }
}
