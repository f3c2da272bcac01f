/**
 * The job runner's errors. Codes are stable (JOB_*, CACHE_*, FORGET_*, listed in error-codes.ts);
 * `kind` decides the exit code.
 */
import { HavenError, type HavenErrorOptions, type KindOf } from '../core/errors.ts';
import type { JOB_CODES } from './error-codes.ts';

export type JobCode = keyof typeof JOB_CODES;

export class JobError<C extends JobCode = JobCode> extends HavenError<C> {
  constructor(code: C, message: string, options: HavenErrorOptions<KindOf<C>>) {
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
