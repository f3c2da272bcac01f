/**
 * Ctrl-C and SIGTERM for commands that run for a while (protect, job run, failback, restore,
 * drill, activate): the first signal aborts the work through an AbortSignal whose reason is an
 * InterruptedError naming the signal, so whatever unwinds ends as `[INTERRUPTED]` and exit 130
 * (docs/exit-codes.md) after the work released what it held (backup job, NBD exports, scratch
 * files, the receiver, which keeps what it staged). A second signal is not caught: Node's default
 * ends the process at once, for an operator who will not wait for the clean-up.
 */
import { asHavenError, type HavenError, InterruptedError } from '../core/errors.ts';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** The error a stopped command ends with, whatever the work threw while it unwound. */
function stopped(what: string, signal: string, during: HavenError | undefined): InterruptedError {
  const e = new InterruptedError(`${what} stopped by ${signal}`);
  if (during && during.code !== e.code) e.cause = during;
  return e;
}

/**
 * Runs `work` with a signal that SIGINT and SIGTERM abort. When it was aborted, the command
 * fails with INTERRUPTED (exit 130) however `work` ended, unless `work` returned normally:
 * a run that finished despite the signal reports its result.
 */
export async function interruptible<T>(what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  let caught: string | undefined;
  const on = (signal: NodeJS.Signals) => {
    caught = signal;
    for (const s of SIGNALS) process.off(s, on);
    abort.abort(stopped(what, signal, undefined));
  };
  for (const s of SIGNALS) process.once(s, on);
  try {
    return await work(abort.signal);
  } catch (e) {
    if (caught === undefined) throw e;
    throw stopped(what, caught, asHavenError(e));
  } finally {
    for (const s of SIGNALS) process.off(s, on);
  }
}

/** True once a signal stopped `signal`'s work: for commands that report a result even then. */
export function wasInterrupted(signal: AbortSignal): signal is AbortSignal & { reason: InterruptedError } {
  return signal.aborted && signal.reason instanceof InterruptedError;
}
