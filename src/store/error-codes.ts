/**
 * The codes of store/ (the DR store: descriptor, manifests, deltas, commits, verification).
 * Receivers send them in ERROR frames, so senders see them too. docs/errors.md is generated from
 * this and the other components' catalogues (scripts/gen-errors).
 */
import { type CodeEntry, ERROR_KINDS } from '../core/errors.ts';

/** The hint of every request a delta refuses (store/errors.ts badRequest). */
const REFUSED_REQUEST =
  'Nothing changed; the sender sent something the store cannot accept: run both sides on the same Haven version, and report it if it repeats.';

/** What to do about a problem `haven verify` reports. */
const VERIFY_PROBLEM =
  'Replicate the server again (it rewrites what differs), or activate or restore another generation; `haven verify --store PATH` lists every problem.';

export const STORE_CODES = {
  STORE_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The directory holds no Haven store (no descriptor).',
    action: 'Check the path; `haven receive --store PATH` creates a store.',
  },
  STORE_FORMAT_UNSUPPORTED: {
    kind: 'integrity',
    meaning: 'The store has a newer format, another kind or another chunk size than this Haven reads.',
    action: 'Use the Haven version that created the store (or a newer one).',
  },
  STORE_BAD_DIGEST: {
    kind: 'usage',
    meaning: 'The digest algorithm asked for when creating a store is not one Haven knows.',
    action: 'Use blake3 (the default) or another algorithm the hint lists.',
  },
  STORE_DIGEST_CONFLICT: {
    kind: 'usage',
    meaning: 'The digest option differs from the existing store’s algorithm, which is fixed at creation.',
    action: 'Leave the digest option out for an existing store.',
  },
  STORE_FILE_INVALID: {
    kind: 'integrity',
    meaning:
      'A file Haven wrote in the store (descriptor, manifest, journal, delta record) does not parse or validate.',
    action:
      'Run `haven verify` on the target and restore the file from a copy if you have one; for a delta record, remove the delta directory and the sender sends it again.',
  },
  STORE_BAD_ID: {
    kind: 'integrity',
    meaning: 'A store file names an id Haven would never generate.',
    action: 'Run `haven verify` on the target.',
  },
  STORE_PATH_ESCAPE: {
    kind: 'refused',
    meaning: 'A path built from a name would leave the store directory.',
    action: 'Use names that stay inside the store (letters, digits and + _ . -).',
  },
  STORE_BAD_META: {
    kind: 'usage',
    meaning: 'The sender described the server inconsistently (disks, mode, times) when opening a delta.',
    action: 'Check the server’s configuration and disks (`haven servers`), then run again.',
  },
  STORE_BAD_COPIES: {
    kind: 'usage',
    meaning: 'The number of generations to keep is not a whole number from 1 to 100.',
    action: 'Set copies in the job (or --copies) to a whole number from 1 to 100.',
  },
  STORE_BAD_PRIORITY: {
    kind: 'usage',
    meaning: 'A boot priority is not a whole number from 0 to 100000.',
    action:
      'Give `haven priority` a whole number from 0 to 100000; lower numbers boot first, the default is 100.',
  },
  STORE_NAME_COLLISION: {
    kind: 'conflict',
    meaning:
      'The server’s image names would collide with another server’s in the store, or a server lists one disk name twice.',
    action: 'Rename one of the servers or disks, or replicate one of them to another store.',
  },
  STORE_LOCKED: {
    kind: 'conflict',
    meaning: 'Another writer holds the server in the store (a replication, commit or recovery runs).',
    action:
      'Wait for it to finish; if that process is gone on another host, remove the lock file the details name.',
  },
  STORE_BUSY: {
    kind: 'conflict',
    meaning:
      'A reader or manifest update waited too long: a rotation renamed the server’s images, or another process held its manifest.',
    action: 'Run again in a moment.',
  },
  STORE_BASE_MISMATCH: {
    kind: ['conflict', 'integrity'],
    meaning:
      'A delta’s base is not the server’s newest generation (conflict when opening it, integrity for a sealed delta found at commit).',
    action:
      'Run the replication again: it sends a checksum resync against the newest generation (for a sealed delta, remove the delta directory the details name first).',
  },
  STORE_ACTIVE_AT_DR: {
    kind: 'refused',
    meaning:
      'Replication was refused: the server runs at the DR site from this store, and replicating would overwrite that copy.',
    action: 'Fail back first (`haven failback`), or give the DR copy up (`haven deactivate`).',
  },
  STORE_SERVER_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The store holds no generation of the server.',
    action:
      'Check the server name (`haven images --store PATH`); a server appears after its first completed replication.',
  },
  STORE_GENERATION_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The server has no generation with this id (a rotation may have retired it).',
    action: 'List the generations with `haven images <server> --store PATH`.',
  },
  STORE_DISK_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The generation has no disk of this name.',
    action: 'List the generation’s disks with `haven images <server> --store PATH --json`.',
  },
  STORE_BAD_RANGE: {
    kind: ['usage', 'protocol'],
    meaning: 'A read or digest request lies outside the disk, or asks for too many chunks at once.',
    action: REFUSED_REQUEST,
  },
  STORE_BAD_EXTENT: {
    kind: 'protocol',
    meaning: 'An extent is not chunk-aligned, or does not lie inside its disk.',
    action: REFUSED_REQUEST,
  },
  STORE_BAD_DIGESTS: {
    kind: 'protocol',
    meaning: 'An extent came without exactly one digest per chunk.',
    action: REFUSED_REQUEST,
  },
  STORE_BAD_WATERMARK: {
    kind: 'protocol',
    meaning: 'A resume watermark lies outside its disk.',
    action: REFUSED_REQUEST,
  },
  STORE_UNKNOWN_DISK: {
    kind: 'protocol',
    meaning: 'A request names a disk that is not part of the open delta.',
    action: REFUSED_REQUEST,
  },
  STORE_DELTA_STATE: {
    kind: ['protocol', 'internal'],
    meaning:
      'A delta was asked for something its state does not allow (write after seal, commit while open, a closed delta).',
    action: REFUSED_REQUEST,
  },
  STORE_SUMMARY_MISMATCH: {
    kind: 'integrity',
    meaning: 'At seal, the sender’s summary disagrees with what was staged; the delta stays partial.',
    action: 'Run again: the delta resumes from its last checkpoint.',
  },
  STORE_DELTA_FAILED: {
    kind: ERROR_KINDS,
    meaning:
      'An earlier write to the delta failed (its code is in the details); the delta takes no more writes.',
    action: 'Deal with the first failure, then run again: the delta resumes from its last checkpoint.',
  },
  STORE_PARTIAL_DAMAGED: {
    kind: 'integrity',
    meaning: 'A partial delta’s files cannot be brought back to its last checkpoint.',
    action: 'Nothing: Haven starts that delta afresh.',
  },
  STORE_DELTA_MISSING: {
    kind: ['integrity', 'internal'],
    meaning: 'Staged data a commit needs is gone (a cache drive not mounted, a delta removed by hand).',
    action:
      'Mount the cache drive that holds it; the next replication (or `haven verify --store PATH` on the target) completes the commit.',
  },
  STORE_DELTA_DAMAGED: {
    kind: 'integrity',
    meaning:
      'A staged delta a rotation replays no longer matches the digests taken when it arrived (bit rot where deltas are staged).',
    action:
      'Check the medium that holds the staged deltas. Nothing to repair: the rotation copies the newest generation instead and drops the damaged delta.',
  },
  STORE_CANNOT_PUNCH: {
    kind: 'unavailable',
    meaning: 'Neither xfs_io nor fallocate is installed to punch holes for zero ranges.',
    action: 'Install util-linux (fallocate) or xfsprogs (xfs_io) so zero ranges stay sparse.',
  },
  STORE_IMAGE_MISSING: {
    kind: 'integrity',
    meaning: 'An image of a generation is missing.',
    action: VERIFY_PROBLEM,
  },
  STORE_SIZE_MISMATCH: {
    kind: 'integrity',
    meaning: 'An image’s size differs from the one in the manifest (it was changed outside Haven).',
    action: VERIFY_PROBLEM,
  },
  STORE_DIGESTS_MISSING: {
    kind: 'integrity',
    meaning: 'The digest file of a generation’s disk is missing.',
    action: VERIFY_PROBLEM,
  },
  STORE_DIGESTS_SIZE: {
    kind: 'integrity',
    meaning: 'A digest file does not hold one digest per chunk of its disk.',
    action: VERIFY_PROBLEM,
  },
  STORE_DIGEST_MISMATCH: {
    kind: 'integrity',
    meaning: 'Chunks of an image differ from their digests (the details list them).',
    action: VERIFY_PROBLEM,
  },
  STORE_RESEND_NEEDED: {
    kind: 'integrity',
    meaning:
      'A commit was refused: the generation the new one starts from holds damaged chunks that no other generation holds intact. They are marked to be sent again from the source, and the delta was discarded.',
    action:
      'Run `haven protect <server>` again (a run does so by itself): it sends those chunks again from the source (checksum resync).',
  },
  STORE_DEFINITION_MISSING: {
    kind: 'integrity',
    meaning: 'The server’s definition file is missing from the store.',
    action:
      'Replicate the server again (it writes the definition), or write definitions/<server>.xml from the manifest’s source definition.',
  },
  STORE_INCOMPLETE_LEFTOVER: {
    kind: 'integrity',
    meaning: 'An _incomplete image exists outside any rotation or partial delta.',
    action: 'Remove the file the message names; the generations are not affected.',
  },
  STORE_HOST_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The store holds nothing of the host (no rescue media, no backup archive).',
    action:
      'Check the host name and the store; `haven images --hosts --store PATH` lists the hosts it holds.',
  },
  STORE_HOST_LOCKED: {
    kind: 'conflict',
    meaning: 'Another run writes or drills this host in the store.',
    action:
      'Wait for it to finish (`haven host show <host>`); if its process is gone on another host, remove the lock file the details name.',
  },
  STORE_HOST_RESCUE_MISSING: {
    kind: ['refused', 'integrity'],
    meaning: 'A backup archive names rescue media the store does not hold.',
    action:
      'Run `haven host backup <host>` again: it stores new rescue media first when the store lacks them.',
  },
  STORE_HOST_BAD_META: {
    kind: 'protocol',
    meaning: 'A host file arrived with metadata the store cannot accept.',
    action: REFUSED_REQUEST,
  },
  STORE_HOST_BAD_OFFSET: {
    kind: 'protocol',
    meaning: 'A host file’s data arrived out of order.',
    action: REFUSED_REQUEST,
  },
  STORE_HOST_UNSUPPORTED: {
    kind: 'refused',
    meaning: 'This store cannot hold host files (only filesystem stores do).',
    action: 'Send host backups to a target whose store is a filesystem store.',
  },
  STORE_HOST_SIZE_MISMATCH: {
    kind: 'integrity',
    meaning: 'A host file’s size differs from what its sender or manifest says.',
    action: 'Run `haven host backup <host>` again to store a new one; drill an older generation meanwhile.',
  },
  STORE_HOST_DIGEST_MISMATCH: {
    kind: 'integrity',
    meaning: 'A host file (rescue media or backup archive) differs from its digest: it is damaged.',
    action:
      'Drill or use an older generation (--generation K); the next `haven host backup` stores new files.',
  },
  STORE_HOST_FILE_MISSING: {
    kind: 'integrity',
    meaning: 'A host file the manifest names is missing.',
    action: 'Use another generation; the next `haven host backup <host>` stores new files.',
  },
  STORE_HOST_FILE_ORPHAN: {
    kind: 'integrity',
    meaning: 'A numbered host file belongs to no generation in the host’s manifest.',
    action:
      'Remove the file the message names (after checking it is no copy you want); the generations are not affected.',
  },
  STORE_HOST_INCOMPLETE_LEFTOVER: {
    kind: 'integrity',
    meaning: 'An incomplete host file was left by a transfer that did not finish.',
    action: 'Run `haven host backup <host>` again: the next transfer removes it.',
  },
  STORE_IMAGE_ORPHAN: {
    kind: 'integrity',
    meaning: 'A numbered image belongs to no generation in the manifest.',
    action:
      'Remove the file the message names (after checking it is no copy you want); the generations are not affected.',
  },
  STORE_JOURNAL_TAIL: {
    kind: 'conflict',
    meaning:
      'A journal segment does not follow the newest segment of the server’s point-in-time journal (continuous protection).',
    action: 'Nothing: the sender asks the target again and resyncs by checksum (docs/continuous.md).',
  },
  STORE_JOURNAL_DISKS: {
    kind: 'conflict',
    meaning: 'The server’s disks changed (names or sizes) since its point-in-time journal began.',
    action:
      'Move the journal directory named in the details away, then protect the server again (docs/continuous.md).',
  },
  STORE_JOURNAL_INVALID: {
    kind: 'integrity',
    meaning: 'A point-in-time journal record (pit.json or a segment index) is damaged.',
    action: 'Run `haven verify`; the journal was changed outside Haven.',
  },
  STORE_JOURNAL_DAMAGED: {
    kind: 'integrity',
    meaning:
      'A piece of a point-in-time journal (the base, a segment, the head digests) differs from its digests or is missing; `haven verify` names the points it spoils.',
    action:
      'Restore or drill from a point `haven verify` does not list as damaged, or a generation; protecting the server again with `haven protect --continuous` adds sound points after the damage, and the window folds the damaged ones away.',
  },
  STORE_POINT_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The server’s journal holds no point with that id.',
    action: 'List the points with `haven images <server> --store <store> --points`.',
  },
  STORE_LVM_NO_VG: {
    kind: 'not-found',
    meaning: 'A volume group (or thin pool) an LVM store names does not exist on this host.',
    action:
      'Check `vgs` and `lvs` on the DR host: create the volume group (vgcreate) or thin pool (lvcreate --type thin-pool), or give the store the groups it was created with.',
  },
  STORE_LVM_FOREIGN: {
    kind: 'conflict',
    meaning:
      'A logical volume with an image’s name exists without the store’s tag (the operator’s, or another store’s): Haven never touches it.',
    action:
      'Rename or remove that LV yourself if it is not needed (`lvs -o lv_name,lv_tags`), or give the server another name; nothing was changed.',
  },
  STORE_LVM_BAD_NAME: {
    kind: 'usage',
    meaning:
      'An image name LVM cannot hold as an LV name: longer than 127 characters, or holding a name part LVM reserves.',
    action: 'Use shorter server and disk names without _tdata, _tmeta, _rimage, _mlog and the like.',
  },
  STORE_LVM_CONFLICT: {
    kind: 'usage',
    meaning:
      'The volume groups given (--lvm, or a target URL’s lvm=) differ from the ones the store was created with.',
    action: 'Leave --lvm out for an existing store (its descriptor lists its groups), or give exactly those.',
  },
  STORE_LVM_FAILED: {
    kind: 'io',
    meaning:
      'An lvm command (lvcreate, lvrename, lvremove, lvs) failed for another reason; its message is in the error.',
    action:
      'Read the lvm message, fix the volume group (`vgs`, `lvs`, `pvs`), then run again; stored generations are intact.',
  },
  RBD_BAD_LOCATION: {
    kind: 'usage',
    meaning:
      'An rbd store location (--rbd, a target URL’s rbd=) is not rbd://USER@CLUSTER/POOL or rbd://USER@MON[,MON…]/POOL?keyring=FILE.',
    action: 'Write the location as docs/store-rbd.md shows.',
  },
  RBD_CONFLICT: {
    kind: 'usage',
    meaning:
      'The rbd location given differs from the one the store was created with, or the directory is a store of another kind.',
    action:
      'Leave --rbd out for an existing store (its descriptor names its pool), or give exactly that location.',
  },
  RBD_UNREACHABLE: {
    kind: 'unavailable',
    meaning:
      'No monitor of the Ceph cluster answered, or the client could not authenticate, within the connect timeout.',
    action:
      'Check `ceph -s` with the same configuration and keyring, the monitors’ addresses and the network; then run again.',
  },
  RBD_POOL_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The pool the store names does not exist in the cluster.',
    action: 'Create it (`ceph osd pool create POOL && rbd pool init POOL`) or give the right pool.',
  },
  RBD_PERMISSION_DENIED: {
    kind: 'refused',
    meaning: 'The cephx user lacks a capability the store needs.',
    action:
      "Give it mon 'profile rbd' and osd 'profile rbd pool=POOL' (`ceph auth caps`); `haven doctor --store PATH` checks them.",
  },
  RBD_TIMEOUT: {
    kind: 'unavailable',
    meaning:
      'The cluster did not answer an operation within the store’s timeout: a monitor or OSD is down, or the pool is full.',
    action: 'Check `ceph status`; stored generations are intact, run again once the cluster is healthy.',
  },
  RBD_FAILED: {
    kind: 'io',
    meaning: 'A Ceph operation failed for another reason; its message is in the error.',
    action:
      'Read the message; `haven doctor --store PATH` checks the cluster, the pool and the user; stored generations are intact.',
  },
} as const satisfies Record<string, CodeEntry>;
