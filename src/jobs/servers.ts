/**
 * Which servers a job copies, in which order: the job's names and glob patterns applied to the
 * servers libvirt knows, largest first (by the sum of their protected disks), ties by name. A
 * name written literally that libvirt does not know is reported as missing rather than silently
 * dropped: a renamed server must not quietly stop being protected.
 */

import { selectServers } from '../core/config.ts';
import { isLiteralServer } from '../core/config-patterns.ts';
import type { Logger } from '../core/log.ts';
import { inventory, listServerNames, type ServerSummary, type Virsh } from '../engine/index.ts';

export function orderBySize<T extends { name: string; sizeBytes: number }>(servers: readonly T[]): T[] {
  return [...servers].sort(
    (a, b) => b.sizeBytes - a.sizeBytes || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

export interface Selection {
  /** Largest first. */
  selected: ServerSummary[];
  /** Literal names in the job that libvirt does not know. */
  missing: string[];
}

export function selectFrom(patterns: readonly string[], all: readonly ServerSummary[]): Selection {
  const names = new Set(
    selectServers(
      patterns,
      all.map((s) => s.name),
    ),
  );
  const missing = patterns.filter(
    (p) => !p.startsWith('!') && isLiteralServer(p) && !all.some((s) => s.name === p),
  );
  return { selected: orderBySize(all.filter((s) => names.has(s.name))), missing: [...new Set(missing)] };
}

export async function selectJobServers(
  virsh: Virsh,
  patterns: readonly string[],
  log?: Logger,
): Promise<Selection> {
  return selectFrom(patterns, await inventory(virsh, log));
}

/**
 * Which servers each job selects, by name only (no disks read, no order): what the status views
 * need, from one listing of libvirt's domains however many jobs there are.
 */
export async function jobSelections(
  virsh: Virsh,
  jobs: readonly { name: string; servers: readonly string[] }[],
): Promise<Map<string, string[]>> {
  // No job, nothing to select: no virsh process (status and the daemon ask on every look).
  if (jobs.length === 0) return new Map();
  const names = await listServerNames(virsh);
  return new Map(jobs.map((j) => [j.name, selectServers(j.servers, names)]));
}
