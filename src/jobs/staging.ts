/**
 * Cache drive staging for one target of a job run (docs/design.md §4.6), as hooks into the engine
 * (engine/replicate.ts StageHook, engine/stage.ts):
 *
 * - all at once: every server takes its point in time and stages it, one after another, largest
 *   first (a turnstile), before any server sends; then they send, `parallel` at a time;
 * - one at a time: each server is staged and sent before the next one starts;
 * - a server whose staging fails (the drive filled up, a mount went away) is sent straight from
 *   its point in time instead, and the problem becomes a cache.problem event.
 *
 * Staged copies live in `<drive>/haven-primary/<server>.<pid>` and are removed once sent.
 */

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pidAlive } from '../catalog/catalog.ts';
import { asHavenError, type HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { Semaphore } from '../core/semaphore.ts';
import {
  type ProgressSnapshot,
  type Source,
  type StagedSource,
  type StageHook,
  serverState,
  stageSource,
  type Virsh,
} from '../engine/index.ts';
import type { StagingMode } from './cache/plan.ts';
import { Latch, Turnstile } from './sync.ts';

export const PRIMARY_STAGING_DIR = 'haven-primary';

/** What the run summary records about one server's staging. */
export interface StagingRecord {
  drive: string | null;
  estimateBytes: number;
  stageStartedAt?: string;
  /** The point in time was on the cache and released (the backup job ended). */
  stagedAt?: string;
  stagedBytes?: number;
  /** When the transfer from the cache began, and the server's state then. */
  sendStartedAt?: string;
  stateWhenSending?: string;
  /** Staging failed and the server was sent directly. */
  fallback?: { code: string; message: string };
}

export interface StagingProblem {
  server: string;
  drive: string;
  error: HavenError;
}

/** Removes staged copies that crashed runs left on a drive. */
export async function cleanStaleStaging(mountPath: string, log: Logger): Promise<void> {
  const dir = join(mountPath, PRIMARY_STAGING_DIR);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(/\.(\d+)$/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) {
      await rm(join(dir, name), { recursive: true, force: true });
      log.info('removed a staged copy left by an earlier run', { path: join(dir, name) });
    }
  }
}

export interface CoordinatorOptions {
  mode: StagingMode;
  /** Servers in staging order (largest first). */
  order: string[];
  /** Server → mount path of its drive (absent or null: not staged). */
  drivePaths: Map<string, string | null>;
  /** Servers sending at once in all-at-once mode. */
  parallel: number;
  runDir: string;
  virsh: Virsh;
  records: Map<string, StagingRecord>;
  onProblem: (p: StagingProblem) => void;
  onProgress?: (server: string, p: ProgressSnapshot) => void;
  signal?: AbortSignal;
  log: Logger;
}

/**
 * Hands out one StageHook per copy attempt and makes the attempts of all servers follow the
 * staging mode. `attemptDone(server)` must be called after every attempt, successful or not, so
 * a server that failed early never holds up the others.
 */
export class StagingCoordinator {
  private readonly turnstile: Turnstile;
  private readonly staged: Latch;
  private readonly sendSlots: Semaphore;
  private readonly firstAttempt = new Set<string>();
  private readonly heldSlots = new Map<string, () => void>();
  /** Later attempts (retries) stage one at a time. */
  private readonly retryLock = new Semaphore(1);

  constructor(private readonly o: CoordinatorOptions) {
    this.turnstile = new Turnstile(o.order.length);
    this.staged = new Latch(o.order.length);
    this.sendSlots = new Semaphore(Math.max(1, o.parallel));
  }

  get allAtOnce(): boolean {
    return this.o.mode === 'all-at-once';
  }

  hookFor(server: string): StageHook | undefined {
    const path = this.o.drivePaths.get(server) ?? null;
    const index = this.o.order.indexOf(server);
    const first = !this.firstAttempt.has(server);
    this.firstAttempt.add(server);
    const all = this.allAtOnce && first && index >= 0;
    if (!path && !all) return undefined;
    let releaseRetryLock: (() => void) | undefined;
    const record = this.o.records.get(server);
    return {
      before: async () => {
        if (all) await this.turnstile.wait(index);
        else if (this.allAtOnce) releaseRetryLock = await this.retryLock.acquire();
      },
      source: async (taken: Source, ctx: { chunkSize: number; log: Logger }): Promise<Source> => {
        let source: Source = taken;
        try {
          if (path) source = await this.stage(server, path, taken, ctx.chunkSize, ctx.log);
        } finally {
          if (all) {
            this.turnstile.markDone(index);
            this.staged.arrive(server);
          }
          releaseRetryLock?.();
        }
        if (this.allAtOnce) {
          if (all) await this.staged.opened;
          this.heldSlots.get(server)?.();
          this.heldSlots.set(server, await this.sendSlots.acquire());
        }
        if (record) {
          record.sendStartedAt = new Date().toISOString();
          record.stateWhenSending = await serverState(this.o.virsh, server).catch(() => 'unknown');
        }
        return source;
      },
    };
  }

  private async stage(
    server: string,
    mountPath: string,
    taken: Source,
    chunkSize: number,
    log: Logger,
  ): Promise<Source> {
    const record = this.o.records.get(server);
    if (record) record.stageStartedAt = new Date().toISOString();
    try {
      const staged: StagedSource = await stageSource(taken, {
        server,
        dir: join(mountPath, PRIMARY_STAGING_DIR, `${server}.${process.pid}`),
        runDir: this.o.runDir,
        chunkSize,
        onProgress: (p) => this.o.onProgress?.(server, p),
        signal: this.o.signal,
        log,
      });
      if (record) {
        record.stagedAt = staged.releasedAt.toISOString();
        record.stagedBytes = staged.stagedBytes;
      }
      return staged;
    } catch (e) {
      if (this.o.signal?.aborted) throw e;
      const err = asHavenError(e);
      log.warn('staging on the cache drive failed; sending directly', { drive: mountPath, err });
      if (record) record.fallback = { code: err.code, message: err.message };
      this.o.onProblem({ server, drive: mountPath, error: err });
      return taken;
    }
  }

  /** After each copy attempt of `server` (whatever happened). */
  attemptDone(server: string): void {
    const index = this.o.order.indexOf(server);
    if (index >= 0) {
      this.turnstile.markDone(index);
      this.staged.arrive(server);
    }
    this.heldSlots.get(server)?.();
    this.heldSlots.delete(server);
  }
}
