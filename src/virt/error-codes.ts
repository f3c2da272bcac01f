/**
 * The codes of virt/ (libvirt through virsh, qemu-img, qemu-nbd, the guest agent). `action` is also
 * the default hint of a VirtError. docs/errors.md is generated from this and the other components'
 * catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

export const VIRT_CODES = {
  VIRT_NO_LIBVIRTD: {
    kind: 'unavailable',
    meaning: 'libvirtd is not running or cannot be reached at the configured URI.',
    action:
      'Start libvirtd (`systemctl start libvirtd`, or `libvirtd -d` without systemd) and check the URI; `haven doctor` shows what is wrong.',
  },
  VIRT_DOMAIN_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'libvirt knows no domain (server) of this name.',
    action: 'Check the server name with `haven servers` (or `virsh list --all`).',
  },
  VIRT_DOMAIN_EXISTS: {
    kind: 'conflict',
    meaning: 'A domain with this name or UUID is already defined.',
    action: 'A domain with this name or UUID is already defined; pick another name or undefine the old one.',
  },
  VIRT_DOMAIN_NOT_RUNNING: {
    kind: 'conflict',
    meaning: 'The operation needs the server running, and it is not.',
    action: 'Start the server first, or use the offline path for a shut-off server.',
  },
  VIRT_DOMAIN_RUNNING: {
    kind: 'conflict',
    meaning: 'The operation needs the server shut off, and it runs.',
    action: 'The server is running; shut it down first if this operation needs it off.',
  },
  VIRT_CHECKPOINT_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'libvirt has no checkpoint of this name for the server.',
    action:
      'libvirt has no such checkpoint: redefine it from the saved checkpoint XML, or start over with a full copy.',
  },
  VIRT_BITMAP_INCONSISTENT: {
    kind: 'integrity',
    meaning: 'The dirty bitmap behind a checkpoint is missing or inconsistent.',
    action:
      'The dirty bitmap cannot be trusted; the next run falls back to a checksum resync (only differing chunks are sent).',
  },
  VIRT_BACKUP_ACTIVE: {
    kind: 'conflict',
    meaning: 'A libvirt backup job already runs on the server.',
    action:
      'A backup job already runs on this server: wait for it, or end it with `virsh domjobabort <server>` if it was left behind.',
  },
  VIRT_NO_BACKUP_JOB: {
    kind: 'not-found',
    meaning: 'No libvirt backup job runs on the server.',
    action: 'No backup job runs on this server; start one first.',
  },
  VIRT_AGENT_UNAVAILABLE: {
    kind: 'unavailable',
    meaning: 'The QEMU guest agent is not configured, not connected or not responding.',
    action:
      'Install and start qemu-guest-agent in the guest and give the domain an org.qemu.guest_agent.0 channel.',
  },
  VIRT_UNSUPPORTED: {
    kind: 'unavailable',
    meaning: 'This libvirt or QEMU does not support the operation.',
    action: 'This libvirt/QEMU does not support the operation; run `haven doctor` to see versions.',
  },
  VIRT_XML_INVALID: {
    kind: 'usage',
    meaning: 'libvirt rejected an XML document (domain, checkpoint or backup).',
    action: 'The XML was rejected by libvirt; the message says which element.',
  },
  VIRT_BAD_ARGUMENT: {
    kind: 'usage',
    meaning: 'An argument passed to libvirt, qemu-img or qemu-nbd is invalid.',
    action: 'Fix the argument named in the message.',
  },
  VIRT_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'libvirt (or the guest agent) did not answer in time.',
    action: 'libvirt did not answer in time; another job may hold the domain. Try again, or check libvirtd.',
  },
  VIRT_IMAGE_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'A disk image does not exist.',
    action: 'Check the disk image path in the domain definition.',
  },
  VIRT_IMAGE_IN_USE: {
    kind: 'conflict',
    meaning: 'A disk image is locked by a running QEMU.',
    action:
      'The image is open by a running QEMU; use a live backup (backup-begin) or shut the server down first.',
  },
  VIRT_QEMU_IMG_FAILED: {
    kind: 'io',
    meaning: 'qemu-img failed.',
    action: 'See the message from qemu-img; check the image with `qemu-img check`.',
  },
  VIRT_QEMU_NBD_FAILED: {
    kind: 'unavailable',
    meaning: 'qemu-nbd failed.',
    action: 'See the message from qemu-nbd; check the image path, format and the run directory.',
  },
  VIRT_COMMAND_FAILED: {
    kind: 'io',
    meaning: 'virsh failed in a way no more specific code describes.',
    action: 'See the message from virsh; the libvirtd log may say more.',
  },
} as const satisfies Record<string, CodeEntry>;
