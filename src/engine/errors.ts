/** The engine's errors; its codes, with what they mean and what to do, are in error-codes.ts. */
import { HavenError, type HavenErrorOptions, type KindOf } from '../core/errors.ts';
import type { ENGINE_CODES } from './error-codes.ts';

export type EngineCode = keyof typeof ENGINE_CODES;

export class EngineError<C extends EngineCode = EngineCode> extends HavenError<C> {
  constructor(code: C, message: string, options: HavenErrorOptions<KindOf<C>>) {
    super(code, message, options);
  }
}
