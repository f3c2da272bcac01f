/**
 * `mode: continuous` jobs under `haven serve` (docs/continuous.md): one protector per server of
 * each such job, started with the daemon, restarted (after a pause) when it fails, stopped and
 * started again when the job's settings change on a reload, and stopped cleanly (each lane
 * finishes the segment it ships) when the daemon stops. A server that matches the job's
 * patterns later (defined after the start) is picked up at the next look, every minute.
 *
 * A job with a `schedule` has a generation cut from the journal at each of its times (the next
 * consistent point each target receives becomes its `_1`, rotated by `copies`: store
 * journal/cut.ts), so the store keeps the rotating generations of a periodic job as well.
 */
import type { Catalog } from '../catalog/catalog.ts';
import { nextRun } from '../core/config.ts';
import type { HavenConfig, JobConfig } from '../core/config-types.ts';
import type { Logger } from '../core/log.ts';
import type { ProtectorStatus } from '../engine/continuous/index.ts';
import { protectContinuously } from '../jobs/continuous.ts';
import type { EventLog } from '../jobs/events.ts';
import { selectJobServers } from '../jobs/servers.ts';
import { resolveTarget } from '../jobs/targets.ts';
import { Virsh } from '../virt/index.ts';

export interface ContinuousJobsOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  events: () => EventLog;
  /** Default: a session of its own (a cycle every few seconds per server asks libvirt several things), closed by stopAll(). */
  virsh?: Virsh;
  runDir: string;
  log: Logger;
  /** How often servers are matched against the jobs again (default 60 s). */
  lookMs?: number;
  /** Pause before a failed protector starts again (default 30 s). */
  restartMs?: number;
}

interface Running {
  key: string;
  abort: AbortController;
  done: Promise<void>;
  status: ProtectorStatus | null;
}

/** What makes a protector's settings: a change stops it and starts it again. */
function signature(job: JobConfig, config: HavenConfig): string {
  return JSON.stringify({
    targets: job.targets.map((t) => config.targets[t] ?? t),
    copies: job.copies,
    schedule: job.schedule,
    intervalMs: job.intervalMs,
    windowMs: job.windowMs,
    rpoMs: job.rpoMs,
  });
}

export class ContinuousJobs {
  private readonly running = new Map<string, Running>();
  private timer: NodeJS.Timeout | undefined;
  private looking: Promise<void> | null = null;
  private closed = false;
  private readonly virsh: Virsh;
  private readonly ownVirsh: boolean;

  constructor(private readonly o: ContinuousJobsOptions) {
    this.ownVirsh = o.virsh === undefined;
    this.virsh = o.virsh ?? new Virsh({ log: o.log, session: true });
  }

  /** The daemon's continuous jobs, started. */
  static start(
    runDir: string,
    catalog: Catalog,
    log: Logger,
    live: () => { config: HavenConfig; events: EventLog },
  ): ContinuousJobs {
    const jobs = new ContinuousJobs({
      runDir,
      catalog,
      log,
      config: () => live().config,
      events: () => live().events,
    });
    jobs.start();
    return jobs;
  }

  start(): void {
    void this.look();
    this.timer = setInterval(() => void this.look(), this.o.lookMs ?? 60_000);
    this.timer.unref();
  }

  /** The protectors' newest status, by `job/server`. */
  statuses(): Map<string, ProtectorStatus> {
    const out = new Map<string, ProtectorStatus>();
    for (const [k, r] of this.running) if (r.status) out.set(k, r.status);
    return out;
  }

  /** Matches servers to the continuous jobs; starts and stops protectors to suit. */
  look(): Promise<void> {
    this.looking ??= this.doLook().finally(() => {
      this.looking = null;
    });
    return this.looking;
  }

  private async doLook(): Promise<void> {
    const config = this.o.config();
    const wanted = new Map<string, { job: JobConfig; server: string; sig: string }>();
    for (const job of Object.values(config.jobs)) {
      if (job.mode !== 'continuous') continue;
      try {
        const selection = await selectJobServers(this.virsh, job.servers, this.o.log);
        for (const s of selection.selected) {
          wanted.set(`${job.name}/${s.name}`, { job, server: s.name, sig: signature(job, config) });
        }
      } catch (e) {
        this.o.log.warn(`continuous job ${job.name}: cannot list its servers`, { err: e });
      }
    }
    for (const [id, r] of this.running) {
      const w = wanted.get(id);
      if (!w || w.sig !== r.key) await this.stopOne(id, r);
    }
    if (this.closed) return;
    for (const [id, w] of wanted) if (!this.running.has(id)) this.startOne(id, w.job, w.server, w.sig);
  }

  private startOne(id: string, job: JobConfig, server: string, sig: string): void {
    const abort = new AbortController();
    const entry: Running = { key: sig, abort, done: Promise.resolve(), status: null };
    const log = this.o.log.child({ job: job.name, server });
    entry.done = (async () => {
      while (!abort.signal.aborted) {
        try {
          const config = this.o.config();
          const targets = job.targets.map((t) => resolveTarget(t, config, { copies: job.copies }));
          await protectContinuously({
            server,
            targets,
            virsh: this.virsh,
            runDir: this.o.runDir,
            catalog: this.o.catalog,
            job: job.name,
            copies: targets[0]?.copies ?? 3,
            intervalMs: job.intervalMs,
            windowMs: job.windowMs,
            segmentBytes: 64 * 1024 * 1024,
            ...(job.rpoMs !== undefined ? { rpoMs: job.rpoMs } : {}),
            ...(job.schedule !== undefined ? { cutDue: cutSchedule(job.schedule, config.timezone) } : {}),
            events: this.o.events(),
            signal: abort.signal,
            log,
            onStatus: (s) => {
              entry.status = s;
            },
          });
        } catch (e) {
          if (abort.signal.aborted) break;
          log.error('continuous protection failed; it starts again shortly', { err: e });
          await pause(this.o.restartMs ?? 30_000, abort.signal);
        }
      }
    })();
    this.running.set(id, entry);
    log.info('continuous protection of the job’s server started');
  }

  private async stopOne(id: string, r: Running): Promise<void> {
    r.abort.abort();
    await r.done;
    this.running.delete(id);
  }

  async stopAll(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.looking;
    await Promise.all([...this.running].map(([id, r]) => this.stopOne(id, r)));
    if (this.ownVirsh) this.virsh.close();
  }
}

/**
 * True once each time the schedule's next time has come (asked every cycle by the protector); a
 * time missed while the protector was down is not made up, the next one cuts.
 */
export function cutSchedule(
  schedule: string,
  timeZone: string | undefined,
  now = () => new Date(),
): () => boolean {
  let due = nextRun(schedule, timeZone, now());
  return () => {
    const t = now();
    if (!due || t < due) return false;
    due = nextRun(schedule, timeZone, t);
    return true;
  };
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
