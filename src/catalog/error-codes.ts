/**
 * The codes of catalog/ (the SQLite catalog of runs, checkpoints, in-flight deltas and events).
 * docs/errors.md is generated from this and the other components' catalogues (scripts/gen-errors).
 */
import type { CodeEntry } from '../core/errors.ts';

export const CATALOG_CODES = {
  CATALOG_BAD_VALUE: {
    kind: 'usage',
    meaning: 'A value given to the catalog (a run kind, a status, an empty name) is not one it can store.',
    action: 'Correct the value the message names; the command’s --help lists the accepted ones.',
  },
  CATALOG_NOT_FOUND: {
    kind: 'not-found',
    meaning:
      'The catalog file does not exist: nothing has run on this host yet, or HAVEN_STATE_DIR points elsewhere.',
    action:
      'Run a replication first (`haven protect` or `haven job run`), or set HAVEN_STATE_DIR to the state directory in use.',
  },
  CATALOG_RUN_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The catalog has no run with this number.',
    action: 'List the runs with `haven runs`.',
  },
  CATALOG_EVENT_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The catalog has no event with this number (it may have been pruned).',
    action: 'List the events with `haven events`.',
  },
  CATALOG_CHECKPOINT_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The catalog has no record of this libvirt checkpoint of the server.',
    action: 'Nothing to clean up for it; the next replication records the checkpoints it creates.',
  },
  CATALOG_BUSY: {
    kind: 'conflict',
    meaning: 'Another Haven process held the catalog locked longer than the busy timeout.',
    action: 'Run again in a moment; `haven runs` shows what is running.',
  },
  CATALOG_CORRUPT: {
    kind: 'integrity',
    meaning: 'The catalog file is damaged or is not a SQLite database.',
    action:
      'Move the file aside and run again: Haven starts a new catalog and resyncs by checksum; the DR copies are not affected.',
  },
  CATALOG_CANNOT_WRITE: {
    kind: 'io',
    meaning: 'The catalog file cannot be opened or written (read-only filesystem, permissions).',
    action: 'Run as root, or give the Haven user write access to the state directory (HAVEN_STATE_DIR).',
  },
  CATALOG_FOREIGN: {
    kind: 'conflict',
    meaning: 'The catalog path holds a SQLite database that is not a Haven catalog.',
    action: 'Point HAVEN_STATE_DIR at Haven’s own state directory, or move the file away.',
  },
  CATALOG_TOO_NEW: {
    kind: 'conflict',
    meaning: 'A newer Haven wrote the catalog with a schema this version does not know.',
    action: 'Run that Haven version (or a newer one) on this host too.',
  },
  CATALOG_VERSION: {
    kind: 'conflict',
    meaning: 'A read-only open found a catalog of an older schema that has not been migrated yet.',
    action:
      'Run any Haven command that records something (such as `haven job run`) once to migrate it, then retry.',
  },
  CATALOG_CHECKPOINT_EXISTS: {
    kind: 'conflict',
    meaning: 'A checkpoint of this name is already recorded for the server with another domain or time.',
    action:
      'Checkpoint names must be unique per server; forget the old record first if libvirt reused the name.',
  },
  CATALOG_CHECKPOINT_IN_USE: {
    kind: 'conflict',
    meaning: 'The checkpoint is the base of a delta that is still in flight, so it cannot be deleted.',
    action:
      'Let the interrupted copy resume (run the replication again), or clear its in-flight record, before deleting the checkpoint.',
  },
  CATALOG_DELTA_IN_FLIGHT: {
    kind: 'conflict',
    meaning:
      'A delta of this server to this target is already in flight (another run copies it, or one crashed).',
    action: 'Wait for the other run (`haven runs`); after a crash the next replication resumes the delta.',
  },
  CATALOG_RUN_FINISHED: {
    kind: 'conflict',
    meaning: 'A run that has already finished was asked to finish again.',
    action: 'Nothing to do for the run; if this repeats, report it with the log as a bug.',
  },
  RUN_ABANDONED: {
    kind: 'interrupted',
    meaning: 'Recorded on a run (and its servers) whose process ended without finishing it.',
    action: 'Run the job again (`haven job run <job>`); the copy resumes from what was staged.',
  },
} as const satisfies Record<string, CodeEntry>;
