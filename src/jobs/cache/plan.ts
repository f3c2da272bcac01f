/**
 * Which cache drive each server of a job is staged on, and whether all at once (docs/design.md §4.6):
 *
 * - drives are used largest first, equal sizes by device path in alphabetical order;
 * - when every server fits (first fit, largest server first, onto the drives in that order), all
 *   are staged before any is sent: "all at once";
 * - otherwise servers go one at a time, each on the first drive it fits on by itself; a server
 *   larger than every drive is copied without staging.
 *
 * Pure: sizes in, decisions out.
 */

export interface DriveSpace {
  device: string;
  totalBytes: number;
  /** Bytes Haven may fill (free space minus a safety margin). */
  usableBytes: number;
}

export interface StageCandidate {
  server: string;
  /** Upper bound of what staging this server writes (engine's estimateStaging). */
  bytes: number;
}

export type StagingMode = 'all-at-once' | 'one-at-a-time';

export interface StagingPlan {
  mode: StagingMode;
  /** Server → drive device, or null: does not fit any drive, copied directly. */
  assignments: Map<string, string | null>;
}

/** Largest first, ties by device path. */
export function orderDrives<T extends { device: string; totalBytes: number }>(drives: readonly T[]): T[] {
  return [...drives].sort(
    (a, b) => b.totalBytes - a.totalBytes || (a.device < b.device ? -1 : a.device > b.device ? 1 : 0),
  );
}

/** What Haven leaves free on a cache drive: 1% of it, so the filesystem never runs completely full. */
export function usableBytes(totalBytes: number, freeBytes: number): number {
  return Math.max(0, freeBytes - Math.ceil(totalBytes / 100));
}

export function planStaging(
  candidates: readonly StageCandidate[],
  drives: readonly DriveSpace[],
): StagingPlan {
  const ordered = orderDrives(drives);
  const bySize = [...candidates].sort((a, b) => b.bytes - a.bytes || a.server.localeCompare(b.server));
  const left = new Map(ordered.map((d) => [d.device, d.usableBytes]));
  const together = new Map<string, string | null>();
  for (const c of bySize) {
    const drive = ordered.find((d) => (left.get(d.device) ?? 0) >= c.bytes);
    if (!drive) break;
    left.set(drive.device, (left.get(drive.device) ?? 0) - c.bytes);
    together.set(c.server, drive.device);
  }
  if (together.size === candidates.length) return { mode: 'all-at-once', assignments: together };
  const alone = new Map<string, string | null>();
  for (const c of candidates) {
    alone.set(c.server, ordered.find((d) => d.usableBytes >= c.bytes)?.device ?? null);
  }
  return { mode: 'one-at-a-time', assignments: alone };
}
