/**
 * The codes of core/: failures every component can report (usage, bugs, interruption, the
 * operating system, external programs, configuration, names and units, domain XML). docs/errors.md
 * is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from './errors.ts';

export const CORE_CODES = {
  USAGE: {
    kind: 'usage',
    meaning: 'The command line or a request asked for something that cannot be done as given.',
    action: 'Correct the argument the message names; the command’s --help lists its options.',
  },
  INTERNAL: {
    kind: 'internal',
    meaning: 'Haven reached a state it should not: a bug.',
    action: 'Report it with the log file of this run; run again, stored generations are intact.',
  },
  INTERRUPTED: {
    kind: 'interrupted',
    meaning: 'The run was stopped by a signal (Ctrl-C, SIGTERM) or by the operator.',
    action: 'Run the command again when wanted; a replication resumes from what was staged.',
  },
  NO_SPACE: {
    kind: 'resource',
    meaning: 'A filesystem ran out of space (ENOSPC, EDQUOT) while Haven wrote to it.',
    action:
      'Free space on the filesystem the message names (or add a cache drive), then run again; stored generations are intact.',
  },
  FILE_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'A file or directory Haven needed does not exist (ENOENT).',
    action: 'Check the path in the message (and the option or configuration key that gave it).',
  },
  PERMISSION_DENIED: {
    kind: 'io',
    meaning: 'The operating system refused access to a path (EACCES, EPERM).',
    action: 'Run as root, or give the Haven user access to the path in the message.',
  },
  READ_ONLY_FILESYSTEM: {
    kind: 'io',
    meaning:
      'A write failed because the filesystem is read-only (EROFS): the kernel remounts one so after an error.',
    action:
      'Find out why the filesystem went read-only (`dmesg`), repair it (e2fsck, xfs_repair) and mount it read-write; the next run completes the pending commit.',
  },
  IO_ERROR: {
    kind: 'io',
    meaning: 'Another operating-system I/O error; `details.errno` names it.',
    action:
      'Check the device and filesystem behind the path in the message (kernel log, `dmesg`), then run again.',
  },
  TOOL_MISSING: {
    kind: 'unavailable',
    meaning: 'An external program Haven runs (qemu-img, qemu-nbd, blkid, fallocate…) is not installed.',
    action: 'Install the package that provides it; `haven doctor` lists what is missing.',
  },
  COMMAND_FAILED: {
    kind: 'io',
    meaning: 'An external program exited with an error, or could not be started.',
    action: 'Read the program’s own message in the error (`details.stderr`) and fix what it names.',
  },
  COMMAND_TIMEOUT: {
    kind: 'unavailable',
    meaning: 'An external program did not finish within its time limit and was killed.',
    action:
      'Check what the program waits for (libvirtd, the guest agent, a disk); run again when it answers.',
  },
  CONFIG_INVALID: {
    kind: 'config',
    meaning:
      'The configuration file does not parse or does not validate; the message lists each problem with its key path.',
    action: 'Fix the keys the message names (docs/configuration.md), then check with `haven config check`.',
  },
  CONFIG_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The configuration file named by --config or HAVEN_CONFIG does not exist.',
    action:
      'Create it (examples/haven.yaml is a complete example), or point --config or HAVEN_CONFIG at the right file.',
  },
  BAD_NAME: {
    kind: 'usage',
    meaning: 'A server, disk, job or other name is not safe to use in file names.',
    action: 'Use letters, digits and + _ . - (not first: . or -), at most 100 characters.',
  },
  BAD_SIZE: {
    kind: 'usage',
    meaning: 'A size (flag or configuration value) does not parse, or is out of range.',
    action: 'Write a size as bytes or with a unit, such as 4096, 50MiB or 2G.',
  },
  BAD_DURATION: {
    kind: 'usage',
    meaning: 'A duration (flag or configuration value) does not parse, or is out of range.',
    action: 'Write a duration as seconds or with a unit, such as 90, 30s, 15m or 2h.',
  },
  BAD_RATE: {
    kind: 'usage',
    meaning: 'A transfer rate limit does not parse, or is out of range.',
    action: 'Write a rate as bytes per second or with a unit, such as 50MiB/s.',
  },
  DEFINITION_UNSAFE: {
    kind: 'refused',
    meaning:
      'A domain definition cannot be booted safely at the DR site (not a QEMU/KVM domain, or a part that cannot be removed).',
    action:
      'Fix the source domain definition as the message and hint say (docs/recovery.md); nothing was staged or started.',
  },
  DOMAIN_XML_INVALID: {
    kind: 'usage',
    meaning: 'A domain XML document does not parse.',
    action: 'Check the domain XML (`virsh dumpxml`, or the definition file in the store) for syntax errors.',
  },
} as const satisfies Record<string, CodeEntry>;
