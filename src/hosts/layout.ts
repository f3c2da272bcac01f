/**
 * ReaR's saved disk layout (/var/lib/rear/layout/disklayout.conf) as far as Haven needs it: the
 * disks a recovery recreates, with their sizes, so a drill gives its VM blank disks as large as
 * the host's, and the runbook can say how large the new machine's disks must be. Lines starting
 * with `#` are what ReaR leaves out (AUTOEXCLUDE_DISKS).
 */
import type { HostDisk } from '../store/host/types.ts';

export function parseLayoutDisks(layout: string): HostDisk[] {
  const disks: HostDisk[] = [];
  for (const line of layout.split('\n')) {
    const m = /^disk\s+\/dev\/(\S+)\s+(\d+)(?:\s+(\S+))?/.exec(line.trim());
    if (!m) continue;
    const size = Number(m[2]);
    if (!Number.isSafeInteger(size) || size <= 0) continue;
    disks.push({
      name: m[1]!.replace(/\//g, '!'),
      size,
      ...(m[3] && m[3] !== 'unknown' ? { label: m[3] } : {}),
    });
  }
  return disks;
}
