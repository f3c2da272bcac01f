/**
 * The job runner's errors. Codes are stable (JOB_*, CACHE_*, FORGET_*); `kind` decides the exit code.
 */
import { HavenError, type HavenErrorOptions } from '../core/errors.ts';

export type JobErrorCode =
  | 'JOB_NOT_FOUND'
  | 'JOB_CONTINUOUS'
  | 'JOB_ALREADY_RUNNING'
  | 'JOB_NO_SERVERS'
  | 'JOB_SERVER_NOT_FOUND'
  | 'JOB_FAILED'
  | 'JOB_RUN_NOT_FOUND'
  | 'FORGET_NOT_FOUND'
  | 'FORGET_RUN_IN_PROGRESS'
  | 'CACHE_NO_DRIVE'
  | 'CACHE_MOUNT_FAILED'
  | 'CACHE_LOCKED';

export class JobError extends HavenError {
  constructor(code: JobErrorCode, message: string, options: HavenErrorOptions) {
    super(code, message, options);
  }
}

export function jobNotFound(name: string, known: string[]): JobError {
  return new JobError('JOB_NOT_FOUND', `no job named ${JSON.stringify(name)} in the configuration`, {
    kind: 'not-found',
    hint: known.length
      ? `Configured jobs: ${known.join(', ')}.`
      : 'The configuration defines no jobs; add one under jobs: (docs/jobs.md).',
    details: { job: name, known },
  });
}

/** A `mode: continuous` job is run by `haven serve`, not one run at a time. */
export function jobIsContinuous(name: string): JobError {
  return new JobError('JOB_CONTINUOUS', `job ${name} is continuous: \`haven serve\` runs it all the time`, {
    kind: 'usage',
    hint: 'Start `haven serve` to run it; for one server now, use `haven protect <server> --to <target> --continuous`.',
    details: { job: name },
  });
}
