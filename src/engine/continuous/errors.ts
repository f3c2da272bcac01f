/**
 * Errors of continuous protection (docs/continuous.md, "Error codes"; the codes are in
 * engine/error-codes.ts). Refusals name both sides and the commands that resolve them: a target
 * is never overwritten automatically.
 */
import type { HavenErrorOptions, KindOf } from '../../core/errors.ts';
import { type EngineCode, EngineError } from '../errors.ts';

export type ContinuousCode = Extract<EngineCode, `CONTINUOUS_${string}`>;

export class ContinuousError<C extends ContinuousCode = ContinuousCode> extends EngineError<C> {
  constructor(code: C, message: string, options: HavenErrorOptions<KindOf<C>>) {
    super(code, message, options);
  }
}
