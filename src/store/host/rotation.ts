/**
 * Rotation of a host's generations when a new file arrives (docs/store-format.md, "Host
 * artefacts"): the new file goes in as `_1`, older ones move up a number, and what falls beyond
 * `copies` is deleted, except rescue media that a kept backup archive still needs (an archive is
 * recovered with the media made for its disk layout). Pure planning here; host-store.ts runs the
 * plan under a journal.
 */
import type { HostLayout } from './layout.ts';
import type { BackupGeneration, HostGeneration, HostManifest, RescueGeneration } from './types.ts';

export interface RotationPlan {
  manifest: HostManifest;
  /** File names in the hosts directory to delete first. */
  deletes: string[];
  /** Renames (file names in the hosts directory), in an order where no target is taken. */
  renames: [string, string][];
}

/** The same generations with sequence numbers matching their places (1 = newest). */
function numbered<T extends HostGeneration>(list: T[]): T[] {
  return list.map((g, i) => ({ ...g, seq: i + 1 }));
}

/** Orders moves so that each target name is free when it is renamed into (no cycles: order is kept). */
function orderMoves(moves: [string, string][]): [string, string][] {
  const pending = moves.filter(([from, to]) => from !== to);
  const out: [string, string][] = [];
  while (pending.length > 0) {
    const i = pending.findIndex(([, to]) => !pending.some(([from]) => from === to));
    if (i < 0) throw new Error('host rotation: renames form a cycle');
    out.push(...pending.splice(i, 1));
  }
  return out;
}

export function planRotation(
  layout: HostLayout,
  current: HostManifest,
  added: HostGeneration,
  copies: number,
): RotationPlan {
  const backups: BackupGeneration[] =
    added.kind === 'backup' ? [added, ...current.backup] : [...current.backup];
  const rescues: RescueGeneration[] =
    added.kind === 'rescue' ? [added, ...current.rescue] : [...current.rescue];
  const keptBackups = backups.slice(0, copies);
  const needed = new Set(keptBackups.map((b) => b.rescueId));
  const keptRescues = rescues.filter((r, i) => i < copies || needed.has(r.id));

  const deletes: string[] = [];
  const moves: [string, string][] = [];
  const host = current.host;
  const place = (list: HostGeneration[], kept: HostGeneration[]) => {
    for (const g of list) {
      const at = kept.indexOf(g);
      const from =
        g === added ? layout.fileName(host, g.kind, 'incomplete') : layout.fileName(host, g.kind, g.seq);
      if (at < 0) deletes.push(from);
      else moves.push([from, layout.fileName(host, g.kind, at + 1)]);
    }
  };
  place(backups, keptBackups);
  place(rescues, keptRescues);
  return {
    manifest: { ...current, copies, backup: numbered(keptBackups), rescue: numbered(keptRescues) },
    deletes,
    renames: orderMoves(moves),
  };
}
