/**
 * The stale-checkpoint rule. After each commit the engine deletes the checkpoints no target needs
 * but keeps each target's last delivered one, forever: a target used once, or a server taken out
 * of a job, left a checkpoint (and a persistent bitmap in every qcow2, which QEMU updates on every
 * guest write) behind for good. So, periodically (the daemon, daily; `haven prune`):
 *
 * - a store of a server is *stale* when no job of the configuration copies the server to any name
 *   that reached that store (jobs/pairs.ts) and its last delivery is older than
 *   `retention.unused_checkpoints` (default 30 days). Its last checkpoint no longer counts as
 *   needed, so it is deleted, bitmaps included; the pair stays in `haven status` (its copy at the
 *   target is still there) until `haven forget` removes it, and its next copy there is a checksum
 *   resync. An event `checkpoints.pruned` says so.
 * - anything else no target needs (a deletion that failed, a run that never delivered its
 *   checkpoint and was not resumed for a day) is deleted too.
 *
 * A server with a run in progress is left alone until the next sweep.
 */
import { type Catalog, pidAlive } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { asHavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import {
  type CheckpointCleanup,
  type DomainState,
  deleteCheckpoints,
  serverPresence,
  type Virsh,
} from '../engine/index.ts';
import { jobsCopying } from './pairs.ts';

/** A never-delivered checkpoint not used by an in-flight delta is an orphan after this long. */
const ORPHAN_AFTER_MS = 24 * 3_600_000;

export interface StaleStore {
  store: string;
  /** The names the store was reached under (from the catalog); may be empty for old records. */
  targets: string[];
  lastDeliveredAt: string;
}

export interface ServerSweep {
  server: string;
  domain: DomainState | 'absent';
  stale: StaleStore[];
  /** Checkpoints to delete (all of them, in a dry run: nothing was deleted). */
  checkpoints: string[];
  result: CheckpointCleanup | null;
}

export interface CheckpointSweep {
  servers: ServerSweep[];
  /** Servers left for the next sweep because a run was copying them. */
  busy: string[];
  /** Servers whose sweep failed (libvirt refused); the next sweep tries again. */
  errors: Array<{ server: string; code: string; message: string }>;
}

export interface SweepOptions {
  config: HavenConfig;
  catalog: Catalog;
  virsh: Virsh;
  log: Logger;
  now?: Date;
  dryRun?: boolean;
}

function staleStores(
  o: SweepOptions,
  server: string,
  now: Date,
): { stale: StaleStore[]; honoured: string[] } {
  const unusedMs = o.config.retention.unusedCheckpointsMs;
  const mappings = o.catalog.targetStores.list(server);
  const stale: StaleStore[] = [];
  const honoured: string[] = [];
  for (const s of o.catalog.checkpoints.stores(server)) {
    const targets = mappings.filter((m) => m.storeId === s.target).map((m) => m.target);
    const copied = targets.some((t) => jobsCopying(o.config, server, t).length > 0);
    const old = unusedMs !== null && now.getTime() - s.lastDeliveredAt.getTime() > unusedMs;
    if (!copied && old) {
      stale.push({ store: s.target, targets, lastDeliveredAt: s.lastDeliveredAt.toISOString() });
    } else {
      honoured.push(s.target);
    }
  }
  return { stale, honoured };
}

async function sweepServer(o: SweepOptions, server: string, now: Date): Promise<ServerSweep> {
  const domain = await serverPresence(o.virsh, server);
  const { stale, honoured } = staleStores(o, server, now);
  const unneeded = o.catalog.checkpoints.unneeded(server, {
    targets: honoured,
    olderThan: new Date(now.getTime() - ORPHAN_AFTER_MS),
  });
  const out: ServerSweep = { server, domain, stale, checkpoints: unneeded.map((c) => c.name), result: null };
  if (o.dryRun || unneeded.length === 0) return out;
  const bases = new Map(stale.map((s) => [s.store, o.catalog.checkpoints.lastDelivered(server, s.store)]));
  const result = await deleteCheckpoints(o.virsh, server, unneeded, o.catalog, o.log, {
    absent: domain === 'absent',
  });
  out.result = result;
  const gone = new Set([...result.deleted, ...result.missing]);
  for (const s of stale) {
    const base = bases.get(s.store)?.checkpoint.name;
    if (base === undefined || !gone.has(base)) continue;
    const name = s.targets[0] ?? s.store;
    o.catalog.events.append({
      type: 'checkpoints.pruned',
      severity: 'info',
      server,
      target: name,
      message: `${server} → ${name}: no job copies it and its last copy was ${s.lastDeliveredAt}; its checkpoint was deleted with its bitmaps, so the next copy there is a checksum resync (haven forget ${server} --target ${name} also drops it from haven status)`,
      data: { store: s.store, targets: s.targets, lastDeliveredAt: s.lastDeliveredAt, checkpoint: base },
    });
  }
  return out;
}

/** Applies the stale-checkpoint rule to every server the catalog holds checkpoints of. */
export async function sweepCheckpoints(o: SweepOptions): Promise<CheckpointSweep> {
  const now = o.now ?? new Date();
  const out: CheckpointSweep = { servers: [], busy: [], errors: [] };
  for (const server of o.catalog.checkpoints.servers()) {
    if (o.catalog.runs.inProgress(server).some((r) => r.pid === null || pidAlive(r.pid))) {
      out.busy.push(server);
      continue;
    }
    try {
      const s = await sweepServer(o, server, now);
      if (s.checkpoints.length > 0 || s.stale.length > 0) out.servers.push(s);
    } catch (e) {
      const err = asHavenError(e);
      out.errors.push({ server, code: err.code, message: err.message });
      o.log.warn('the checkpoint sweep of a server failed; the next sweep tries again', { server, err });
      // libvirt down: every other server would fail the same way.
      if (err.code === 'VIRT_NO_LIBVIRTD') break;
    }
  }
  return out;
}
