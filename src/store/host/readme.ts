/**
 * `hosts/<host>.txt`: a plain-text description of a host's files in the store, rewritten at
 * every commit, for whoever opens the store's directory on the worst day without Haven at hand
 * (docs/host-recovery.md has the full runbook). The manifest remains what Haven trusts.
 */
import { formatBytes } from '../../core/units.ts';
import type { HostLayout } from './layout.ts';
import type { HostManifest } from './types.ts';

export function hostReadme(m: HostManifest, layout: HostLayout): string {
  const rescue = m.rescue[0];
  const lines = [
    `Host ${m.host}: rescue media and backup archives kept by Haven (Relax-and-Recover 2.x).`,
    '',
    'Backup archives (newest first) and the rescue media that recover each:',
  ];
  for (const b of m.backup) {
    const r = m.rescue.find((x) => x.id === b.rescueId);
    lines.push(
      `  ${layout.fileName(m.host, 'backup', b.seq)}  ${formatBytes(b.size)}  taken ${b.takenAt}  -> ${r ? layout.fileName(m.host, 'rescue', r.seq) : '(rescue media missing)'}`,
    );
  }
  lines.push('', 'Rescue media:');
  for (const r of m.rescue) {
    lines.push(`  ${layout.fileName(m.host, 'rescue', r.seq)}  ${formatBytes(r.size)}  made ${r.takenAt}`);
  }
  if (rescue) {
    const f = rescue.facts;
    lines.push(
      '',
      `The host as the newest rescue media know it: ${f.hostname}, ${f.os}, kernel ${f.kernel}, ${f.firmware.toUpperCase()} firmware, ${formatBytes(f.memoryBytes)} of memory, ReaR ${f.rearVersion}.`,
      `Disks (the new machine needs disks at least this large): ${f.disks.map((d) => `${d.name} ${formatBytes(d.size)}`).join(', ')}.`,
    );
  }
  lines.push(
    '',
    'To rebuild the host on new hardware:',
    '  1. haven verify --store <this store>    (digests of every file, including these)',
    `  2. haven host medium ${m.host} --store <this store> --output /dev/<usb stick>    (the archive, labelled HAVEN-BACKUP)`,
    '  3. boot the rescue media (the .iso named above for the archive) with that medium attached,',
    '     choose "Recover", log in as root and run: rear recover',
    '  4. reboot into the recovered host, then bring its servers back: haven activate',
    'The full runbook: docs/host-recovery.md in Haven.',
    '',
  );
  return lines.join('\n');
}
