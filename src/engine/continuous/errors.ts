/**
 * Errors of continuous protection (docs/continuous.md, "Error codes"). Refusals name both sides
 * and the commands that resolve them: a target is never overwritten automatically.
 */
import { HavenError, type HavenErrorOptions } from '../../core/errors.ts';

export type ContinuousCode =
  | 'CONTINUOUS_DR_NEWER'
  | 'CONTINUOUS_SPLIT_BRAIN'
  | 'CONTINUOUS_UNRELATED'
  | 'CONTINUOUS_TARGET_UNSUPPORTED'
  | 'CONTINUOUS_RAW_DISK'
  | 'CONTINUOUS_TOO_MANY_TARGETS'
  | 'CONTINUOUS_STALLED'
  | 'CONTINUOUS_CHUNK_SIZE';

export class ContinuousError extends HavenError {
  constructor(code: ContinuousCode, message: string, options: HavenErrorOptions) {
    super(code, message, options);
  }
}
