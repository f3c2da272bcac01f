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
} as const satisfies Record<string, CodeEntry>;
