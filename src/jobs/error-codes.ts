/**
 * The codes of jobs/ (jobs, targets, cache drives, alerts, forgetting). docs/errors.md is
 * generated from this and the other components' catalogues (scripts/gen-errors).
 */
import { type CodeEntry, ERROR_KINDS } from '../core/errors.ts';

export const JOB_CODES = {
  JOB_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The configuration defines no job of this name.',
    action: 'List the jobs with `haven job list`; add one under jobs: in the configuration (docs/jobs.md).',
  },
  JOB_ALREADY_RUNNING: {
    kind: 'conflict',
    meaning: 'A run of this job is already going on (one run of a job at a time).',
    action: 'Wait for it to finish (`haven runs`), or cancel it through the daemon, then run again.',
  },
  JOB_NO_SERVERS: {
    kind: 'not-found',
    meaning: 'The job’s server patterns select no server that libvirt knows on this host.',
    action: 'Fix the job’s servers list; `haven servers` lists what libvirt knows.',
  },
  JOB_SERVER_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'A server the job names explicitly does not exist in libvirt (renamed or removed).',
    action: 'Fix the job’s servers list; `haven servers` lists what exists.',
  },
  JOB_FAILED: {
    kind: ERROR_KINDS,
    meaning:
      'Recorded on a job run whose copies failed: `haven job run` exits 12 when some copies succeeded, else with the exit code of the first failure.',
    action:
      'Look at the failed copies with `haven runs <id>` and follow what this document says about their codes.',
  },
  JOB_RUN_NOT_FOUND: {
    kind: ['not-found', 'conflict'],
    meaning:
      'There is no run with this number (not-found), or the run is not running in this daemon and cannot be cancelled (conflict).',
    action: 'List the runs with `haven runs`.',
  },
  FORGET_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'The catalog holds nothing for the server, target or pair to forget.',
    action: '`haven status` lists the server/target pairs Haven knows; name the target as it is there.',
  },
  FORGET_RUN_IN_PROGRESS: {
    kind: 'conflict',
    meaning: 'A run is copying the server right now, so its records cannot be forgotten.',
    action: 'Wait for the run to end (`haven runs <id>`), or stop it, then run `haven forget` again.',
  },
  CACHE_MOUNT_FAILED: {
    kind: 'io',
    meaning: 'A cache drive could not be mounted.',
    action: 'Check the drive (`dmesg`, fsck); Haven copies without it meanwhile.',
  },
  CACHE_LOCKED: {
    kind: 'conflict',
    meaning: 'Another Haven process is mounting or unmounting the same cache drive.',
    action: 'Run again in a moment.',
  },
  TARGET_NOT_FOUND: {
    kind: 'not-found',
    meaning: 'A target name is neither a configured target nor a path or URL.',
    action:
      'Use a target from the configuration, a path (/srv/haven, ./dir), or ssh://host/path or tls://host:port.',
  },
  TARGET_TLS_CA_MISSING: {
    kind: 'usage',
    meaning: 'A tls:// target has no CA to check the receiver’s certificate with.',
    action:
      'Give the CA that signed the receiver’s certificate: --tls-ca FILE, or tls.ca in the target’s configuration.',
  },
  ALERT_WEBHOOK_REJECTED: {
    kind: 'unavailable',
    meaning: 'An alert webhook answered with an HTTP error status.',
    action:
      'Check alerts.webhook in the configuration (`haven config check` shows it) and the service behind the URL.',
  },
  DRY_RUN_ROLLBACK: {
    kind: 'internal',
    meaning:
      'Rolls back the catalog transaction of `haven forget --dry-run`; it is caught inside and never reported.',
    action: 'None: if it is ever reported, it is a bug; report it with the log.',
  },
  JOB_CONTINUOUS: {
    kind: 'usage',
    meaning:
      '`haven job run` was asked to run a `mode: continuous` job, which `haven serve` runs all the time.',
    action:
      'Start `haven serve` to run it; for one server now, use `haven protect <server> --to <target> --continuous`.',
  },
} as const satisfies Record<string, CodeEntry>;
