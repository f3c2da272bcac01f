/**
 * The VM of a host drill (docs/hosts.md, "Drills"): blank disks as large as the host's,
 * named as the host names them (vd* on virtio, sd* on virtio-scsi, hd* on IDE), no network
 * interface, its console in a file, BIOS or UEFI firmware as the host has. The rescue phase
 * boots the stored media's kernel and initrd with the media's own command line plus
 * `unattended`, the backup medium attached after the host's disks, and ends at ReaR's reboot
 * (`on_reboot` destroy); the second phase boots the recovered disks alone.
 */
import { join } from 'node:path';
import type { HostVmConfig } from '../core/config.ts';
import type { HostDisk, HostFacts } from '../store/host/types.ts';
import { escapeXml as esc } from '../virt/xml.ts';
import { hostError } from './errors.ts';
import type { IsoImage } from './iso9660.ts';
import { DRILL_KERNEL_OPTION } from './rear-config.ts';

export interface RescueBoot {
  kernel: string;
  initrd: string;
  cmdline: string;
}

/**
 * The `rear` entry of the media's isolinux.cfg: its kernel, initrd and command line, the files
 * copied into `dir` for libvirt's direct kernel boot.
 */
export async function rescueBootFrom(iso: IsoImage, dir: string): Promise<RescueBoot> {
  const cfgEntry = (await iso.find('isolinux/isolinux.cfg')) ?? (await iso.find('isolinux/syslinux.cfg'));
  if (!cfgEntry) throw mediaError(iso.path, 'no isolinux/isolinux.cfg');
  const cfg = await iso.readText(cfgEntry);
  const entry = bootEntry(cfg);
  if (!entry) throw mediaError(iso.path, 'isolinux.cfg has no entry that boots the rescue system');
  const files: Record<'kernel' | 'initrd', string> = { kernel: entry.kernel, initrd: entry.initrd };
  const out = { kernel: join(dir, 'rescue-kernel'), initrd: join(dir, 'rescue-initrd') };
  for (const which of ['kernel', 'initrd'] as const) {
    const name = files[which].replace(/^\//, '');
    const e = (await iso.find(name.includes('/') ? name : `isolinux/${name}`)) ?? (await iso.find(name));
    if (!e || e.directory)
      throw mediaError(iso.path, `${which} ${files[which]} named in isolinux.cfg is missing`);
    await iso.extract(e, out[which]);
  }
  return { ...out, cmdline: `${entry.append} unattended ${DRILL_KERNEL_OPTION}`.trim() };
}

function mediaError(path: string, why: string): Error {
  return hostError(
    'HOST_MEDIA_UNREADABLE',
    'integrity',
    `the rescue media ${path} cannot boot a drill: ${why}`,
    {
      hint: 'Run `haven verify` on the store; make new media with `haven host backup` if they are damaged.',
      details: { path },
    },
  );
}

/** The `rear` label of an isolinux configuration (else the first label with an initrd). */
export function bootEntry(cfg: string): { kernel: string; initrd: string; append: string } | null {
  const entries: { label: string; kernel?: string; append?: string }[] = [];
  for (const raw of cfg.split('\n')) {
    const line = raw.trim();
    const m = /^(label|kernel|linux|append)\s+(.*)$/i.exec(line);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === 'label') entries.push({ label: m[2]!.trim() });
    else if (entries.length > 0) entries.at(-1)![key === 'append' ? 'append' : 'kernel'] = m[2]!.trim();
  }
  const withInitrd = entries.filter((e) => e.kernel && /(^|\s)initrd=/.test(e.append ?? ''));
  const e = withInitrd.find((x) => x.label.toLowerCase() === 'rear') ?? withInitrd[0];
  if (!e) return null;
  const words = (e.append ?? '').split(/\s+/).filter(Boolean);
  const initrd = words.find((w) => w.startsWith('initrd='))!.slice('initrd='.length);
  // The mode is the drill's to choose.
  const append = words.filter((w) => !/^(initrd=|auto_recover$|automatic$|unattended$)/.test(w)).join(' ');
  return { kernel: e.kernel!, initrd, append };
}

export interface DrillDisk {
  /** The host's name for it (vda, sda). */
  target: string;
  path: string;
  format: 'qcow2' | 'raw';
  readonly?: boolean;
}

/** The bus a host's disk name belongs to, so the drill VM names it the same. */
export function busFor(disk: Pick<HostDisk, 'name'>): 'virtio' | 'scsi' | 'ide' {
  if (/^vd[a-z]+$/.test(disk.name)) return 'virtio';
  if (/^sd[a-z]+$/.test(disk.name)) return 'scsi';
  if (/^hd[a-z]+$/.test(disk.name)) return 'ide';
  throw hostError(
    'HOST_DRILL_UNSUPPORTED',
    'refused',
    `a drill VM cannot give a disk the name ${disk.name}`,
    {
      hint: 'Drills recreate vd*, sd* and hd* disks; recover hosts with other disk names on real hardware (docs/hosts.md).',
      details: { disk: disk.name },
    },
  );
}

/** The next free name on `bus` after the host's disks (for the backup medium). */
export function nextDiskName(disks: DrillDisk[], bus: 'virtio' | 'scsi' | 'ide'): string {
  const prefix = bus === 'virtio' ? 'vd' : bus === 'scsi' ? 'sd' : 'hd';
  for (let i = 0; i < 26; i++) {
    const name = `${prefix}${String.fromCharCode(97 + i)}`;
    if (!disks.some((d) => d.target === name)) return name;
  }
  throw hostError('HOST_DRILL_UNSUPPORTED', 'refused', 'no free disk name for the backup medium');
}

export interface DrillVmSpec {
  name: string;
  uuid: string;
  vm: HostVmConfig & { virtType: 'kvm' | 'qemu' };
  firmware: HostFacts['firmware'];
  disks: DrillDisk[];
  console: string;
  /** The rescue phase: direct kernel boot, and the domain ends at the guest's reboot. */
  rescue?: RescueBoot;
  nvram?: string;
}

export function drillDomainXml(s: DrillVmSpec): string {
  const disks = s.disks.map((d) => {
    const bus = busFor({ name: d.target });
    return `<disk type='file' device='disk'><driver name='qemu' type='${d.format}'/><source file='${esc(d.path)}'/><target dev='${d.target}' bus='${bus}'/>${d.readonly ? '<readonly/>' : ''}</disk>`;
  });
  const scsi = s.disks.some((d) => busFor({ name: d.target }) === 'scsi')
    ? "<controller type='scsi' model='virtio-scsi'/>"
    : '';
  const boot = s.rescue
    ? `<kernel>${esc(s.rescue.kernel)}</kernel><initrd>${esc(s.rescue.initrd)}</initrd><cmdline>${esc(s.rescue.cmdline)}</cmdline>`
    : "<boot dev='hd'/>";
  const efi = s.firmware === 'uefi';
  return `<domain type='${s.vm.virtType}'>
  <name>${esc(s.name)}</name>
  <uuid>${s.uuid}</uuid>
  <memory unit='KiB'>${Math.floor(s.vm.memoryBytes / 1024)}</memory>
  <vcpu>${s.vm.vcpus}</vcpu>
  <os${efi ? " firmware='efi'" : ''}>
    <type arch='x86_64' machine='pc'>hvm</type>
    ${efi && s.nvram ? `<nvram>${esc(s.nvram)}</nvram>` : ''}
    ${boot}
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>${s.rescue ? 'destroy' : 'restart'}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    ${scsi}
    ${disks.join('\n    ')}
    <serial type='file'><source path='${esc(s.console)}'/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}
