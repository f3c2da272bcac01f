/**
 * Fault injection for crash tests (a test hook, not an operator feature).
 *
 * With `HAVEN_STORE_CRASH_AT=<step>` in its environment, a store kills its own process with
 * SIGKILL when it reaches that step of a commit: no cleanup, no buffered writes flushed by
 * Node, exactly what a power cut or an OOM kill leaves behind (minus the page cache, which the
 * kernel still writes). The conformance suite runs a writer in a child process at every step and
 * then checks that `recover()` rolls the rotation forward (docs/design.md §4.2, §4.3).
 *
 * Every store implementation passes through the same named steps, in this order; steps that do
 * not apply to a commit (no renames in a first run) are simply not reached.
 */
export const CRASH_ENV = 'HAVEN_STORE_CRASH_AT';

export const CRASH_STEPS = [
  /** seal() returned: the delta is durable, nothing else changed. */
  'after-seal',
  /** The rotation journal is durable; no image renamed yet. */
  'after-journal',
  /** The oldest generation became `_incomplete`; newer ones not yet renamed. */
  'mid-rename',
  /** All renames of step 2 done: `_incomplete`, `_2` … `_N`, no `_1`. */
  'after-renames',
  /** The new slot holds its starting content (a copy of the newest, or the recycled oldest). */
  'after-slot',
  /** Part of the last delta is applied to `_incomplete`. */
  'mid-apply',
  /** Every delta applied and fsynced. */
  'after-apply',
  /** The new generation's digest files are durable. */
  'after-digests',
  /** The definition file was written (first commit) or left alone. */
  'after-definition',
  /** The new manifest is durable; `_incomplete` not yet renamed to `_1`. */
  'after-manifest',
  /** `_incomplete` renamed to `_1`; the journal not yet removed. */
  'after-final-rename',
] as const;

export type CrashStep = (typeof CRASH_STEPS)[number];

/**
 * With `HAVEN_STORE_STOP_AT=<step>`, the store stops its own process (SIGSTOP) at that step
 * instead: the fault matrix (test/integration/store-fault-matrix.test.ts) fills the filesystem
 * while it is stopped, then lets it go on (SIGCONT) into the fault.
 */
export const STOP_ENV = 'HAVEN_STORE_STOP_AT';

export function crashPoint(step: CrashStep): void {
  if (process.env[CRASH_ENV] === step) process.kill(process.pid, 'SIGKILL');
  if (process.env[STOP_ENV] === step) process.kill(process.pid, 'SIGSTOP');
}
