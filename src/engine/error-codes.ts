/**
 * The codes of engine/ (replicating one server: its disks, the source, the run's lock).
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

export const ENGINE_CODES = {
  ENGINE_NO_DISKS: {
    kind: 'usage',
    meaning: 'The server has no disk to protect.',
    action:
      'Check the server’s definition (`virsh dumpxml <server>`); a server without disks needs no DR copy.',
  },
  ENGINE_DISK_UNSUPPORTED: {
    kind: 'usage',
    meaning: 'A disk of the server has no local image Haven can name (a network disk, say).',
    action:
      'Haven protects file, block and volume disks; leave the server out of the job or move the disk to one of those.',
  },
  ENGINE_DISK_NAME_CLASH: {
    kind: 'usage',
    meaning: 'Two disks of the server would be stored under the same name (their image file names agree).',
    action: 'Rename one of the images; store names come from image file names (docs/store-format.md).',
  },
  ENGINE_FOREIGN_BACKUP: {
    kind: 'conflict',
    meaning: 'Another tool runs a libvirt backup job on the server.',
    action: 'Wait for it to finish (`virsh domjobinfo <server>`), then run again.',
  },
  ENGINE_SERVER_BUSY: {
    kind: 'conflict',
    meaning: 'Another run on this host replicates the server right now (one run per server at a time).',
    action: 'Wait for that run to finish (`haven runs` lists it) or stop it, then run again.',
  },
  ENGINE_RESYNC_NEEDED: {
    kind: 'integrity',
    meaning:
      'The target asked for a checksum resync (its newest generation holds damaged chunks only the source can repair), and the run’s staged copy holds only what changed.',
    action: 'Run `haven protect <server>` again: the next run stages and compares every chunk.',
  },
  ENGINE_SHUTDOWN_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'For a shutdown-consistent copy the guest was asked to shut down but kept running.',
    action: 'Check why the guest ignores the shutdown request (ACPI, its agent), or use consistency: live.',
  },
  ENGINE_TRANSIENT_SHUTDOWN: {
    kind: 'refused',
    meaning:
      'A shutdown-consistent copy of a transient server was refused: shutting it down would remove it.',
    action: 'Use consistency: live for transient servers, or define the server persistently.',
  },
  ENGINE_SOURCE_CHANGED: {
    kind: 'conflict',
    meaning: 'The server’s disks changed while its backup was running.',
    action: 'Run again.',
  },
  CONTINUOUS_DR_NEWER: {
    kind: 'refused',
    meaning:
      'Continuous protection refused a target that was written at the DR site after this primary’s lineage (it runs or ran there).',
    action:
      'Keep the DR site’s writes with `haven failback`, or discard them with `haven deactivate <server> --store <store> --destroy`; the commands in the message are exact.',
  },
  CONTINUOUS_SPLIT_BRAIN: {
    kind: 'conflict',
    meaning: 'Both the primary and the target’s copy were written after they parted (split brain).',
    action:
      'Choose which side wins: `haven failback` keeps the DR site’s writes, `haven deactivate <server> --store <store> --destroy` discards them.',
  },
  CONTINUOUS_UNRELATED: {
    kind: 'conflict',
    meaning: 'The target’s copy of the server shares no history with this server.',
    action:
      'Point the job at another store, or overwrite the copy explicitly with `haven protect <server> --to <target> --continuous --overwrite-target`.',
  },
  CONTINUOUS_TARGET_UNSUPPORTED: {
    kind: 'unavailable',
    meaning: 'The target’s receiver keeps no point-in-time journal (an older Haven).',
    action: 'Upgrade Haven on the target host; meanwhile protect the server with scheduled runs.',
  },
  CONTINUOUS_RAW_DISK: {
    kind: 'usage',
    meaning: 'A disk of the server is not qcow2, so it cannot track changes with persistent dirty bitmaps.',
    action:
      'Convert the disk to qcow2 (`qemu-img convert -O qcow2`), or protect the server with scheduled runs.',
  },
  CONTINUOUS_TOO_MANY_TARGETS: {
    kind: 'usage',
    meaning: 'Continuous protection takes 1 to 7 targets.',
    action: 'Name at most 7 targets with --to (or in the job’s targets).',
  },
  CONTINUOUS_CHUNK_SIZE: {
    kind: 'unavailable',
    meaning: 'The target store does not use 64 KiB chunks, which continuous protection needs.',
    action: 'Protect the server to a store Haven created (every one uses 64 KiB chunks).',
  },
} as const satisfies Record<string, CodeEntry>;
