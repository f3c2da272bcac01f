import { asHavenError, type HavenError } from '../core/errors.ts';
import {
  canRetryLater,
  DEFAULT_RECONNECTS,
  interruption,
  type ProtectOptions,
  type ProtectPlan,
  type ProtectResult,
  planProtect,
  protectServer,
  type StageHook,
} from '../engine/index.ts';
import type { StreamSender } from '../protocol/index.ts';
import { planSessionFactory, senderFactory } from './sender.ts';
import { sleep } from './sync.ts';
import type { EarlyConnection, ResolvedTarget } from './targets.ts';

/**
 * Failures that another attempt cannot fix: wrong input, a missing server, a safety refusal, a
 * target without Haven (engine/retry.ts decides for both levels of retry).
 */
export function retryable(e: HavenError): boolean {
  return canRetryLater(e);
}

/** Wait before attempt `n + 1` after `n` failed attempts: backoff, doubling, at most an hour. */
export function backoffMs(base: number, failedAttempts: number): number {
  return Math.min(3_600_000, base * 2 ** Math.max(0, failedAttempts - 1));
}

/** The engine's options that a job passes through as they are. */
type PassedToEngine =
  | 'server'
  | 'virsh'
  | 'runDir'
  | 'job'
  | 'copies'
  | 'consistency'
  | 'quiesce'
  | 'catalog'
  | 'runId'
  | 'retryBackoffMs'
  | 'tuning'
  | 'onProgress'
  | 'signal'
  | 'log';

export interface CopyServerOptions extends Pick<ProtectOptions, PassedToEngine> {
  target: ResolvedTarget;
  /** Further attempts after a failed one (job `retries`); `retryBackoffMs` is the first wait. */
  retries?: number;
  /** A connection to the target opened ahead (protect.ts); the first session uses it. */
  early?: EarlyConnection;
  /**
   * Reconnections within one attempt (the engine's resume). Default: the engine's 3, at most
   * `retries` when that is given, so a job's `retries: 0` tries nothing again.
   */
  reconnects?: number;
  dryRun?: boolean;
  /** Compare every chunk's digest with the target's and send what differs (`--resync`). */
  resync?: boolean;
  /** A staging hook for each attempt (jobs/staging.ts). */
  stage?: () => StageHook | undefined;
  /** Called after each attempt, whatever happened. */
  afterAttempt?: () => void;
  onRetry?: (attempt: number, error: HavenError, waitMs: number) => void;
}

export interface ServerOutcome {
  server: string;
  target: string;
  status: 'ok' | 'failed' | 'cancelled' | 'planned';
  result?: ProtectResult;
  plan?: ProtectPlan;
  error?: HavenError;
  attempts: number;
  startedAt: Date;
  durationMs: number;
}

function reconnectsOf(o: CopyServerOptions): number | undefined {
  if (o.reconnects !== undefined) return o.reconnects;
  return o.retries === undefined ? undefined : Math.min(DEFAULT_RECONNECTS, o.retries);
}

/** A dry run: the engine's plan, nothing recorded. */
async function planServer(o: CopyServerOptions): Promise<ServerOutcome> {
  const startedAt = new Date();
  const log = o.log.child({ server: o.server, target: o.target.name });
  const outcome = { server: o.server, target: o.target.name, attempts: 1, startedAt };
  try {
    const plan = await planProtect({
      server: o.server,
      connect: planSessionFactory(o.target, { log }),
      targetLabel: o.target.url,
      virsh: o.virsh,
      consistency: o.consistency,
      catalog: o.catalog,
      retries: reconnectsOf(o),
      signal: o.signal,
      log,
      resync: o.resync,
    });
    return { ...outcome, status: 'planned', plan, durationMs: Date.now() - startedAt.getTime() };
  } catch (e) {
    const err = o.signal?.aborted ? interruption(o.signal, asHavenError(e)) : asHavenError(e);
    const status = o.signal?.aborted ? 'cancelled' : 'failed';
    log.error(`plan ${status}`, { err });
    return { ...outcome, status, error: err, durationMs: Date.now() - startedAt.getTime() };
  }
}

export async function copyServer(o: CopyServerOptions): Promise<ServerOutcome> {
  if (o.dryRun) return planServer(o);
  const startedAt = new Date();
  const log = o.log.child({ server: o.server, target: o.target.name });
  const record = (status: 'running' | 'ok' | 'failed' | 'cancelled', extra: Record<string, unknown> = {}) => {
    if (!o.catalog || o.runId === undefined) return;
    o.catalog.runs.recordServer(o.runId, {
      server: o.server,
      target: o.target.name,
      status,
      startedAt,
      ...extra,
    });
  };
  record('running');
  // The receiver reports its store's space with each answer (docs/stream-protocol.md §4.1); the
  // last session's last report goes with the result: the history of a target's capacity.
  const open = senderFactory(o.target, { log, receiveArgs: o.target.receiveArgs, early: o.early });
  let session: StreamSender | undefined;
  const connect = async () => {
    session = await open();
    return session;
  };
  const capacity = () => {
    const c = session?.capacity;
    return c ? { storeTotalBytes: c.totalBytes, storeFreeBytes: c.freeBytes } : {};
  };
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const out = await protectServer({
        server: o.server,
        connect,
        targetLabel: o.target.url,
        virsh: o.virsh,
        runDir: o.runDir,
        job: o.job,
        copies: o.copies,
        bandwidth: o.target.bandwidth,
        consistency: o.consistency,
        quiesce: o.quiesce,
        catalog: o.catalog,
        runId: o.runId,
        retries: reconnectsOf(o),
        tuning: o.tuning,
        resync: o.resync,
        stage: o.stage?.(),
        onProgress: o.onProgress,
        signal: o.signal,
        log,
      });
      o.afterAttempt?.();
      const durationMs = Date.now() - startedAt.getTime();
      record('ok', {
        mode: out.mode,
        bytesRead: out.bytesRead,
        bytesSent: out.bytesSent,
        durationMs,
        generationId: out.generation.id,
        copyAt: new Date(out.takenAt),
        attempts,
        ...capacity(),
      });
      return {
        server: o.server,
        target: o.target.name,
        status: 'ok',
        result: out,
        attempts,
        startedAt,
        durationMs,
      };
    } catch (e) {
      o.afterAttempt?.();
      const cancelled = o.signal?.aborted === true;
      let err = o.signal?.aborted ? interruption(o.signal, asHavenError(e)) : asHavenError(e);
      const last = cancelled || !retryable(err) || attempts > (o.retries ?? 0);
      if (!last) {
        const wait = backoffMs(o.retryBackoffMs ?? 60_000, attempts);
        log.warn('copy failed; trying again', { attempt: attempts, waitMs: wait, err });
        o.onRetry?.(attempts, err, wait);
        try {
          await sleep(wait, o.signal);
          continue;
        } catch {
          // cancelled while waiting: fall through to the final record
          if (o.signal) err = interruption(o.signal, err);
        }
      }
      const status = o.signal?.aborted ? 'cancelled' : 'failed';
      const durationMs = Date.now() - startedAt.getTime();
      record(status, { durationMs, errorCode: err.code, errorMessage: err.message, attempts, ...capacity() });
      log.error(`copy ${status}`, { attempts, err });
      return { server: o.server, target: o.target.name, status, error: err, attempts, startedAt, durationMs };
    }
  }
}
