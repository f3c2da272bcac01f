/**
 * The codes of recovery/ (activation, drills, restore, failback, the primary guard).
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors);
 * docs/recovery.md tells the stories around them.
 */
import type { CodeEntry } from '../core/errors.ts';

export const RECOVERY_CODES = {
  RECOVERY_UNKNOWN_SERVER: {
    kind: 'not-found',
    meaning: 'The store holds no server of this name.',
    action:
      'Use a server the hint lists (`haven images --store PATH`); a server appears after its first completed replication.',
  },
  RECOVERY_NO_GENERATION: {
    kind: 'not-found',
    meaning: 'The server has no generation of the number asked for.',
    action: 'Pick one of the generations `haven images <server> --store PATH` lists; 1 is the newest.',
  },
  RECOVERY_NETWORK_MISSING: {
    kind: 'not-found',
    meaning: 'A network or bridge an interface of the server needs is missing (or inactive) at this site.',
    action:
      'Map it to a network of this site (--network-map, or networks.map in the configuration; docs/recovery.md), or create it here.',
  },
  RECOVERY_GENERATION_INCOMPLETE: {
    kind: 'integrity',
    meaning: 'A file the generation needs (image, digests, definition) is missing or has the wrong size.',
    action: 'Use another generation (--generation K), or run `haven verify` and replicate again.',
  },
  RECOVERY_GENERATION_DAMAGED: {
    kind: 'integrity',
    meaning: 'An image of the generation differs from its digests.',
    action:
      'Use another generation (--generation K); the next replication repairs the damage from another generation or, for the newest, has the source send it again.',
  },
  RECOVERY_DEFINITION_MISSING: {
    kind: 'integrity',
    meaning: 'The server’s DR definition (definitions/<server>.xml in the store) cannot be read.',
    action:
      'Restore it from a copy, or write it from the manifest’s source definition (`haven images <server> --store PATH --json`).',
  },
  RECOVERY_DEFINITION_MISMATCH: {
    kind: 'integrity',
    meaning: 'The DR definition does not use every store image of the server.',
    action:
      'Edit definitions/<server>.xml in the store so every disk points at its store image (<server>_<disk>_1.raw).',
  },
  RECOVERY_STORE_UNSUPPORTED: {
    kind: 'unavailable',
    meaning: 'The store’s kind cannot do what was asked (pin a server for a long reader).',
    action: 'Upgrade Haven on this host.',
  },
  RECOVERY_ALREADY_ACTIVE: {
    kind: 'conflict',
    meaning: 'The server already runs at the DR site from this store.',
    action: 'Fail back with `haven failback`, or give the copy up with `haven deactivate`.',
  },
  RECOVERY_NOT_ACTIVE: {
    kind: 'conflict',
    meaning: 'The server is not running at the DR site, so there is nothing to fail back or deactivate.',
    action:
      'Only a server started with `haven activate` can be failed back or deactivated; `haven status` shows where it runs.',
  },
  RECOVERY_NAME_TAKEN: {
    kind: 'conflict',
    meaning: 'A domain of the name the copy would get already exists at this site.',
    action:
      'Run the copy under another name (--name NEW), restore without defining it (--no-define), or undefine the other domain.',
  },
  RECOVERY_PRIMARY_RUNNING: {
    kind: 'refused',
    meaning: 'The primary still runs the server, so a second copy would diverge from it.',
    action:
      'Stop the server on the primary first, or give --force if the primary is lost to you although libvirt still answers.',
  },
  RECOVERY_DR_RUNNING: {
    kind: 'refused',
    meaning: 'The DR copy still runs, so it cannot be deactivated.',
    action:
      'Shut it down first, or give --destroy (its changes since activation are then lost); to keep them, run `haven failback`.',
  },
  RECOVERY_BAD_PRIMARY: {
    kind: 'usage',
    meaning: '--primary is neither a libvirt URI nor an ssh host.',
    action:
      'Write a libvirt URI such as qemu+ssh://root@primary/system, or an ssh host such as root@primary.',
  },
  RESTORE_TARGET_EXISTS: {
    kind: 'conflict',
    meaning: 'A file restore would write already exists; restore never overwrites.',
    action: 'Restore into another directory, or under another name (--name), or move the file away.',
  },
  DRILL_NO_MARKER: {
    kind: 'config',
    meaning: 'A configured drill has no boot marker for one of its servers.',
    action:
      'Set drills.<name>.boot_marker, or drills.<name>.overrides.<server>.boot_marker, in the configuration.',
  },
  DRILL_NO_BOOT_MARKER: {
    kind: 'integrity',
    meaning: 'In a drill the copy did not show its boot marker on the console in time.',
    action: 'Look at the console tail in the drill report, then at the generation (`haven verify`).',
  },
  FAILBACK_NOT_A_STORE: {
    kind: 'usage',
    meaning:
      'Something asked the failback receiver for a store operation; it only writes into a server’s images.',
    action: 'Use a store (`haven receive --store PATH`) for this.',
  },
  FAILBACK_WRONG_SERVER: {
    kind: 'usage',
    meaning: 'The failback receiver was sent another server than the one it was started for.',
    action: 'Run `haven failback` for the server the receiver takes; it starts its own receiver.',
  },
  FAILBACK_PRIMARY_RUNNING: {
    kind: 'refused',
    meaning: 'Failback writes into the primary’s disk images, but the server runs on the primary.',
    action: 'Shut the server down on the primary first, then run `haven failback` again.',
  },
  FAILBACK_DISK_MISMATCH: {
    kind: ['not-found', 'conflict', 'protocol'],
    meaning:
      'The DR copy’s disks differ from the primary’s (names or sizes), or a disk named in the stream is not there.',
    action:
      'Failback needs the same disks with the same sizes on both sides; restore the server instead (`haven restore`).',
  },
  FAILBACK_DR_STILL_RUNNING: {
    kind: 'unavailable',
    meaning: 'The DR copy did not shut down in time for the final failback pass.',
    action:
      'Shut it down from inside, or run `haven failback` again with --force-off (what its caches hold is then lost); the live pass is kept.',
  },
  FAILBACK_NOT_RUNNING: {
    kind: 'conflict',
    meaning:
      '`haven failback --follow` was asked for a DR copy that is not running: nothing changes there to follow.',
    action:
      'Finish the failback without --follow (`haven failback <server> --store <store> --to <primary>`).',
  },
  FAILBACK_INTERNAL: {
    kind: 'internal',
    meaning: 'The engine returned a plan where failback expected a result: a bug.',
    action: 'Report it with the log file of this run.',
  },
  GUARD_HOOK_INSTALL_FAILED: {
    kind: 'io',
    meaning: 'The primary guard’s libvirt hook could not be installed.',
    action: 'Run `haven guard install` as root on the primary host.',
  },
  GUARD_RELOAD_FAILED: {
    kind: ['io', 'unavailable'],
    meaning: 'libvirtd could not be told to load the new hook (no pid file, or the signal failed).',
    action: 'Reload libvirtd yourself (`systemctl reload libvirtd`, or `kill -HUP` its pid).',
  },
  RECOVERY_NO_JOURNAL: {
    kind: 'not-found',
    meaning: '`--at` names a point, but the store holds no journal of points for the server.',
    action:
      'Points exist for servers protected with `haven protect --continuous`; use --generation K for the others.',
  },
  RECOVERY_POINT_OUTSIDE_WINDOW: {
    kind: 'not-found',
    meaning: '`--at` names a time before the oldest point the journal keeps.',
    action:
      'List the points with `haven images <server> --store <store> --points` and pick one in the window.',
  },
  RECOVERY_SWITCHOVER_UNREACHABLE: {
    kind: 'unavailable',
    meaning: '`haven switchover` cannot reach the primary’s libvirt: a planned switchover needs it.',
    action:
      'Check --primary and the ssh access to it; if the primary is lost, fail over with `haven activate <server> --store <store> --at <time|point>`.',
  },
  RECOVERY_SWITCHOVER_NOT_RUNNING: {
    kind: 'refused',
    meaning: 'The primary does not run the server, so there is nothing to move without loss.',
    action:
      'Start the server from its newest point with `haven activate <server> --store <store> --at <point> --primary <primary>`, as the message says.',
  },
  RECOVERY_SWITCHOVER_TIMEOUT: {
    kind: 'unavailable',
    meaning:
      'The guest did not shut down on the primary in time, or no point from its shut-off disks reached the store in time; the server was started on the primary again.',
    action:
      'For a shutdown, see why the guest ignores it (its console) or give a longer --shutdown-timeout; for the drain, check that the server’s continuous protection runs on the primary (`haven status` there), then switch over again.',
  },
} as const satisfies Record<string, CodeEntry>;
