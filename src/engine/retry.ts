/**
 * What is worth trying again, and the back-off loop the engine uses for it.
 *
 * Two levels retry a copy. Within a run the engine reconnects to the target after a broken
 * connection and resumes from what the receiver staged (`canReconnect`, seconds apart); a job
 * tries a failed copy again after its `retry_backoff` (jobs/copy.ts, `canRetryLater`, minutes
 * apart). Both leave alone what another attempt cannot change: bad input, a refusal, a target
 * without Haven, a receiver that speaks another protocol version, a stop by the operator.
 */
import { asHavenError, type ErrorKind, HavenError, InterruptedError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** Reconnections within one run when nothing says otherwise (`--retries`). */
export const DEFAULT_RECONNECTS = 3;
/** First wait before a reconnection; it doubles with each one. */
export const DEFAULT_RECONNECT_BACKOFF_MS = 1000;

/** Kinds no attempt changes: the input, the configuration, a safety rule, the operator. */
const FINAL_KINDS = new Set<ErrorKind>(['usage', 'config', 'not-found', 'refused', 'interrupted']);

/** Codes of kinds that are often transient, which name a state that stays until someone acts. */
const FINAL_CODES = new Set([
  // The target has no `haven` (ssh exit 127): installing it is the operator's job.
  'TRANSPORT_REMOTE_COMMAND_MISSING',
  // The peers share no protocol version or digest, or the peer is not Haven at all.
  'PROTO_VERSION',
  'PROTO_CAPABILITY',
  'PROTO_BAD_MAGIC',
  'STORE_FORMAT_UNSUPPORTED',
]);

/** ssh's own words for a login that will fail the same way every time. */
const SSH_FINAL = /Permission denied|Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/;

/** Failures another attempt cannot fix, however long it waits. */
export function isFinal(e: HavenError): boolean {
  if (FINAL_KINDS.has(e.kind) || FINAL_CODES.has(e.code)) return true;
  // The local command could not be started at all (not installed, not executable).
  const spawn = (e.cause as NodeJS.ErrnoException | undefined)?.code;
  if (e.code === 'TRANSPORT_CHILD_FAILED' && (spawn === 'ENOENT' || spawn === 'EACCES')) return true;
  return e.code === 'TRANSPORT_SSH_FAILED' && SSH_FINAL.test(String(e.details?.stderr ?? e.message));
}

/**
 * Codes of other kinds that a new connection resumes from: a cut stream, a busy server lock, a
 * commit refused until damaged chunks are sent again (the next attempt is a checksum resync).
 */
const RECONNECT_CODES = new Set([
  'STORE_RESEND_NEEDED',
  'PROTO_TRUNCATED',
  'PROTO_DIGEST_MISMATCH',
  'PROTO_DELTA_MISMATCH',
  'STORE_LOCKED',
]);

/**
 * A broken or refused connection that reconnecting within the run may get past. The source's
 * own failures (NBD, libvirt) are not: the point in time they serve is gone or broken.
 */
export function canReconnect(e: HavenError): boolean {
  if (isFinal(e) || e.code.startsWith('NBD_') || e.code.startsWith('VIRT_')) return false;
  return e.kind === 'unavailable' || RECONNECT_CODES.has(e.code);
}

/** A failed copy a job may try again after its back-off: anything not final. */
export function canRetryLater(e: HavenError): boolean {
  return !isFinal(e);
}

/** The error that ends a run stopped through `signal`: its reason when that is one of ours. */
export function interruption(signal: AbortSignal, during?: HavenError): HavenError {
  if (signal.reason instanceof HavenError) return signal.reason;
  return new InterruptedError(during ? `stopped: ${during.message}` : 'stopped');
}

export interface RetryPolicy {
  /** Further attempts after the first. */
  retries: number;
  /** Wait before the first retry; it doubles with each one. */
  backoffMs: number;
  signal?: AbortSignal;
  log: Logger;
}

/**
 * Runs `attempt` until it succeeds, or fails with what `canReconnect` rejects, or the retries
 * are spent (the error then says how many attempts were made). `failed` cleans up after each
 * failure (closing the connection) before the wait.
 */
export async function withReconnects<T>(
  policy: RetryPolicy,
  what: string,
  attempt: (n: number) => Promise<T>,
  failed?: (e: HavenError, n: number) => Promise<void>,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const e = asHavenError(err);
      await failed?.(e, n);
      if (policy.signal?.aborted) throw interruption(policy.signal, e);
      if (!canReconnect(e)) throw e;
      if (n > policy.retries) throw gaveUp(e, n);
      const wait = policy.backoffMs * 2 ** (n - 1);
      policy.log.warn(what, { attempt: n, err: e, waitMs: wait });
      await pause(wait, policy.signal);
    }
  }
}

/** The last failure, saying that it was the last of `attempts` (logs and `--json` show them). */
function gaveUp(e: HavenError, attempts: number): HavenError {
  if (attempts === 1) return e;
  return new HavenError(e.code, `${e.message} (gave up after ${attempts} attempts)`, {
    kind: e.kind,
    ...(e.hint ? { hint: e.hint } : {}),
    details: { ...e.details, attempts },
    cause: e,
  });
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', stop);
    };
    const stop = () => {
      done();
      reject(interruption(signal!));
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal?.addEventListener('abort', stop, { once: true });
  });
}
