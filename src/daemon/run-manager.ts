/**
 * Runs the daemon starts (scheduled, missed, or through the API), in this process: at most one
 * per job (and the catalog refuses a second one across processes), each with its own log file,
 * its progress published to live clients, and cancellable.
 */
import { join } from 'node:path';
import type { Catalog, RunTrigger } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { asHavenError } from '../core/errors.ts';
import { createLogger, type Level, type Logger } from '../core/log.ts';
import { Virsh } from '../engine/index.ts';
import {
  type EventLog,
  JobError,
  type JobRunResult,
  type JobUpdate,
  jobNotFound,
  runJob,
} from '../jobs/index.ts';
import { guardAfterRefusal } from '../recovery/index.ts';
import type { EventHub } from './hub.ts';

export interface ActiveRun {
  runId: number;
  job: string;
  trigger: RunTrigger;
  startedAt: Date;
  logFile: string;
  /** The newest progress per server and target. */
  progress: Map<string, Extract<JobUpdate, { type: 'progress' }>>;
  abort: AbortController;
  done: Promise<JobRunResult>;
}

export interface RunManagerOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  runDir: string;
  logDir: string;
  consoleLevel: Level;
  events: EventLog;
  hub: EventHub;
  log: Logger;
  /** Called when a run ends (metrics, tests). */
  onFinished?: (r: JobRunResult) => void;
}

export class RunManager {
  private readonly runs = new Map<number, ActiveRun>();
  private readonly starting = new Set<string>();

  constructor(private readonly o: RunManagerOptions) {}

  active(): ActiveRun[] {
    return [...this.runs.values()];
  }

  isRunning(job: string): boolean {
    return this.starting.has(job) || this.active().some((r) => r.job === job);
  }

  get(runId: number): ActiveRun | undefined {
    return this.runs.get(runId);
  }

  /** Starts a run; resolves with it once it is recorded in the catalog. */
  start(job: string, trigger: RunTrigger): Promise<ActiveRun> {
    const config = this.o.config();
    if (!config.jobs[job]) return Promise.reject(jobNotFound(job, Object.keys(config.jobs)));
    if (this.isRunning(job)) {
      return Promise.reject(
        new JobError('JOB_ALREADY_RUNNING', `job ${job} is already running`, {
          kind: 'conflict',
          hint: 'One run of a job at a time: wait for it, or cancel it (POST /api/runs/<id>/cancel).',
          details: { job },
        }),
      );
    }
    this.starting.add(job);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const logFile = join(this.o.logDir, `job-${job}-${stamp}-${process.pid}.log`);
    const root = createLogger({ consoleLevel: this.o.consoleLevel, filePath: logFile });
    const log = root.child({ job });
    const abort = new AbortController();
    return new Promise<ActiveRun>((resolve, reject) => {
      let active: ActiveRun | undefined;
      // Made before the run starts: the runner reports 'run.started' before runJob returns.
      let finish!: (r: JobRunResult) => void;
      let fail!: (e: unknown) => void;
      const done = new Promise<JobRunResult>((res, rej) => {
        finish = res;
        fail = rej;
      });
      done.catch(() => {});
      runJob({
        config,
        job,
        catalog: this.o.catalog,
        runDir: this.o.runDir,
        trigger,
        onServerFailed: (server, err) => guardAfterRefusal(new Virsh({ log }), server, err, log),
        signal: abort.signal,
        log,
        logFile,
        events: this.o.events,
        onUpdate: (u) => {
          if (u.type === 'run.started' && u.runId !== null) {
            this.starting.delete(job);
            active = {
              runId: u.runId,
              job,
              trigger,
              startedAt: new Date(u.at),
              logFile,
              progress: new Map(),
              abort,
              done,
            };
            this.runs.set(u.runId, active);
            resolve(active);
          }
          if (u.type === 'progress') active?.progress.set(`${u.server}\u0000${u.target}`, u);
          if (u.type === 'server.finished') active?.progress.delete(`${u.server}\u0000${u.target}`);
          this.o.hub.publish('update', u);
        },
      }).then(finish, fail);
      done
        .then((r) => {
          this.o.log.info(`run #${r.runId} of job ${job} ${r.status}`, { durationMs: r.durationMs });
          this.o.onFinished?.(r);
        })
        .catch((e) => {
          this.o.log.error(`job ${job} could not start`, { err: e });
          reject(asHavenError(e));
        })
        .finally(() => {
          this.starting.delete(job);
          if (active) this.runs.delete(active.runId);
          root.close();
        });
    });
  }

  /** Asks a run to stop; it ends as cancelled. False when no such run is active here. */
  cancel(runId: number): boolean {
    const r = this.runs.get(runId);
    if (!r) return false;
    this.o.log.info(`cancelling run #${runId} of job ${r.job}`);
    r.abort.abort();
    return true;
  }

  /** Cancels every run and waits for them to end (at most `timeoutMs`). */
  async stopAll(timeoutMs: number): Promise<void> {
    const runs = this.active();
    for (const r of runs) r.abort.abort();
    await Promise.race([
      Promise.allSettled(runs.map((r) => r.done)),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }
}
