/**
 * The one place that turns failures into process exit codes. docs/exit-codes.md documents these
 * numbers; they are part of Haven's interface and do not change.
 */
import type { ErrorKind } from '../core/errors.ts';

export const EXIT_OK = 0;

export const EXIT_CODES: Record<ErrorKind, number> = {
  internal: 1,
  usage: 2,
  config: 3,
  'not-found': 4,
  unavailable: 5,
  refused: 6,
  conflict: 7,
  integrity: 8,
  resource: 9,
  protocol: 10,
  io: 11,
  interrupted: 130,
};

/** Some checks failed but nothing crashed (doctor found problems, a job had failing servers). */
export const EXIT_PARTIAL = 12;

export function exitCodeFor(kind: ErrorKind): number {
  return EXIT_CODES[kind] ?? 1;
}
