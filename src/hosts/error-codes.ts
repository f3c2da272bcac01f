/**
 * The codes of hosts/ (hypervisor hosts through Relax-and-Recover: setup, backups, drills).
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors);
 * docs/hosts.md tells the stories around them.
 */
import type { CodeEntry } from '../core/errors.ts';

export const HOST_CODES = {
  HOST_NOT_CONFIGURED: {
    kind: 'not-found',
    meaning: 'No host of this name is under `hosts:` in the configuration.',
    action: 'Use a host the message lists, or add it under hosts: in haven.yaml (docs/configuration.md).',
  },
  HOST_NO_TARGET: {
    kind: 'usage',
    meaning: 'The host has no target for its rescue media and backups.',
    action: 'Set hosts.<host>.target in haven.yaml, or give `--to TARGET`.',
  },
  HOST_UNREACHABLE: {
    kind: 'unavailable',
    meaning: 'ssh could not log in to the host (what ssh said is in the message).',
    action: 'Check that the host is up and that `ssh` logs in without a password (hosts.<host>.ssh.options).',
  },
  HOST_COMMAND_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'A command on the host did not end in time and was stopped.',
    action: 'Check that the host is responsive, then run again.',
  },
  HOST_REAR_MISSING: {
    kind: 'unavailable',
    meaning: 'ReaR, or a program it needs, is not installed on the host; each is named with its package.',
    action: 'Install the packages the hint names, or run `haven host setup <host> --install`.',
  },
  HOST_NOT_SET_UP: {
    kind: 'refused',
    meaning: 'Haven’s ReaR configuration (/etc/rear/haven.conf) is not on the host.',
    action: 'Run `haven host setup <host>` first.',
  },
  HOST_CONFIG_WRITE_FAILED: {
    kind: 'io',
    meaning: 'Haven’s ReaR configuration could not be written on the host.',
    action: 'Check that the ssh user may write /etc/rear (Haven logs in as root by default).',
  },
  HOST_BUSY: {
    kind: 'conflict',
    meaning: 'Another Haven run drives ReaR on the host.',
    action: 'Wait for it to finish (`haven host show <host>`), then run again.',
  },
  HOST_REAR_FAILED: {
    kind: 'io',
    meaning: 'A ReaR run failed on the host; the end of ReaR’s log is in the message.',
    action:
      'Fix what ReaR’s log names (/var/log/rear/ on the host), then run `haven host backup <host>` again.',
  },
  HOST_MEDIA_MISSING: {
    kind: 'io',
    meaning: '`rear mkrescue` left no ISO where Haven’s configuration puts it.',
    action: 'Read ReaR’s log on the host; ISO_DIR or OUTPUT may be overridden in /etc/rear/local.conf.',
  },
  HOST_TARGET_UNSUPPORTED: {
    kind: 'unavailable',
    meaning: 'The target’s Haven does not store host files.',
    action: 'Update Haven on the target to this version, or choose a filesystem store.',
  },
  HOST_TRANSFER_SHORT: {
    kind: 'io',
    meaning: 'A host file ended before its announced size.',
    action: 'Run `haven host backup <host>` again; nothing stored was changed.',
  },
  HOST_GENERATION_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The store has no backup generation of the host with this number.',
    action: 'Pick one `haven images <host> --store PATH` lists; 1 is the newest.',
  },
  HOST_MEDIA_UNREADABLE: {
    kind: 'integrity',
    meaning: 'The stored rescue media have no bootable rescue entry (or are no ISO 9660 image).',
    action: 'Run `haven verify --store PATH`; make new media with `haven host backup <host>`.',
  },
  HOST_DRILL_UNSUPPORTED: {
    kind: 'refused',
    meaning: 'A drill VM cannot give a disk the name the host uses (not vd*, sd* or hd*).',
    action: 'Recover such hosts on real hardware (docs/host-recovery.md).',
  },
  HOST_DRILL_RECOVER_FAILED: {
    kind: 'integrity',
    meaning: '`rear recover` failed in the drill, or the rescue system stopped before it finished.',
    action: 'Read the console tail in the drill’s report: the same would stop a real recovery.',
  },
  HOST_DRILL_TIMEOUT: {
    kind: 'integrity',
    meaning: 'The rescue boot and `rear recover` took longer than the drill’s recovery_timeout.',
    action: 'Raise recovery_timeout on a slow machine; else the console tail shows where it stopped.',
  },
  HOST_DRILL_NO_MARKER: {
    kind: 'integrity',
    meaning: 'The host was recovered, but the recovered system did not show its boot marker in time.',
    action: 'The console tail in the report shows how far it came; fix the marker or the timeout.',
  },
  HOST_OUTPUT_EXISTS: {
    kind: 'conflict',
    meaning: '`haven host medium` was to write a file that exists already.',
    action: 'Name a new file, or give `--force` to overwrite it.',
  },
  HOST_OUTPUT_INVALID: {
    kind: 'usage',
    meaning:
      'The output is neither a file (new, or existing with --force) nor a block device: a directory, a character device, a path inside the store, or a directory that does not exist.',
    action:
      'Name a file in an existing directory outside the store, or a whole block device (`lsblk` lists them).',
  },
  HOST_DEVICE_MOUNTED: {
    kind: 'refused',
    meaning:
      'The block device, or a partition or volume on it, is mounted or in use as swap: writing it would destroy what is there.',
    action: 'Unmount what the message names (`umount`), or name the right device (`lsblk` lists them).',
  },
  HOST_DEVICE_TOO_SMALL: {
    kind: 'resource',
    meaning:
      'The block device is smaller than what must be written to it (the message says how much that is).',
    action: 'Use a larger USB stick or disk, or write a file (`--to FILE`) and copy it where it fits.',
  },
} as const satisfies Record<string, CodeEntry>;
