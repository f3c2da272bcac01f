/**
 * The scheduler: each scheduled job's and drill's next fire time from its cron expression (config
 * nextRun, croner, in the configured time zone), a timer for each, and the catalog's schedule
 * state (kind `job`, `drill` or `host`: a host backup) so a restart knows what ran. A fire time missed while the daemon was down runs once at start
 * (trigger `missed`), however many were missed. A fire time that comes while the previous run of
 * the job is still going is skipped (one run of a job at a time) and noted as an event.
 *
 * Timers sleep at most a minute and look at the clock again, so a clock change or a suspended
 * host does not leave a job waiting on a stale timer.
 */
import type { Catalog, RunTrigger } from '../catalog/catalog.ts';
import type { ScheduleKind } from '../catalog/schedule.ts';
import { type HavenConfig, nextRun } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import { type EventLog, missedFire } from '../jobs/index.ts';

const MAX_SLEEP_MS = 60_000;

export interface SchedulerOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  events: EventLog;
  start: (kind: ScheduleKind, name: string, trigger: RunTrigger) => Promise<unknown>;
  isRunning: (kind: ScheduleKind, name: string) => boolean;
  log: Logger;
  now?: () => Date;
}

interface Entry {
  kind: ScheduleKind;
  name: string;
  schedule: string;
}

/** What the configuration schedules: jobs, drills and host backups with a `schedule`, and every scrub. */
function scheduled(config: HavenConfig): Entry[] {
  const out: Entry[] = [];
  for (const j of Object.values(config.jobs)) {
    // A continuous job runs all the time (continuous-jobs.ts): nothing to schedule.
    if (j.schedule && j.mode !== 'continuous') out.push({ kind: 'job', name: j.name, schedule: j.schedule });
  }
  for (const d of Object.values(config.drills)) {
    if (d.schedule) out.push({ kind: 'drill', name: d.name, schedule: d.schedule });
  }
  for (const h of Object.values(config.hosts)) {
    if (h.schedule) out.push({ kind: 'host', name: h.name, schedule: h.schedule });
  }
  for (const sc of Object.values(config.scrubs))
    out.push({ kind: 'scrub', name: sc.name, schedule: sc.schedule });
  return out;
}

const keyOf = (kind: ScheduleKind, name: string) => `${kind}:${name}`;

export class Scheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly nextFire = new Map<string, Date | null>();
  private stopped = false;

  constructor(private readonly o: SchedulerOptions) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** Runs what was missed, then arms a timer for every scheduled job. */
  start(): void {
    const config = this.o.config();
    const now = this.now();
    for (const e of scheduled(config)) {
      const state = this.o.catalog.schedule.get(e.kind, e.name);
      if (!state?.lastFireAt) {
        // First time this is scheduled here: nothing can have been missed.
        this.o.catalog.schedule.update(e.kind, e.name, { lastFireAt: now });
      } else {
        const missed = missedFire(e.schedule, config.timezone, state.lastFireAt, now);
        if (missed) {
          this.o.log.info(
            `${e.kind} ${e.name}: a run was due at ${missed.toISOString()} while the daemon was down; running it now`,
          );
          this.fire(e.kind, e.name, missed, 'missed');
        }
      }
      this.arm(e.kind, e.name);
    }
  }

  /** Picks up a changed configuration: new, changed and removed schedules. */
  reload(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.nextFire.clear();
    for (const e of scheduled(this.o.config())) {
      if (!this.o.catalog.schedule.get(e.kind, e.name)?.lastFireAt) {
        this.o.catalog.schedule.update(e.kind, e.name, { lastFireAt: this.now() });
      }
      this.arm(e.kind, e.name);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** The next fire time the scheduler waits for (null: not scheduled). */
  next(name: string, kind: ScheduleKind = 'job'): Date | null {
    const armed = this.nextFire.get(keyOf(kind, name));
    if (armed !== undefined || this.stopped) return armed ?? null;
    // Not armed yet (the API answers before start()): what the schedule says.
    const config = this.o.config();
    const entry = scheduled(config).find((e) => e.kind === kind && e.name === name);
    return entry ? nextRun(entry.schedule, config.timezone, this.now()) : null;
  }

  private arm(kind: ScheduleKind, name: string): void {
    if (this.stopped) return;
    const config = this.o.config();
    const entry = scheduled(config).find((e) => e.kind === kind && e.name === name);
    if (!entry) return;
    const key = keyOf(kind, name);
    const now = this.now();
    const at = this.nextFire.get(key) ?? nextRun(entry.schedule, config.timezone, now);
    this.nextFire.set(key, at);
    this.o.catalog.schedule.update(kind, name, { nextRunAt: at });
    if (!at) return;
    const wait = Math.max(1, Math.min(MAX_SLEEP_MS, at.getTime() - now.getTime()));
    const timer = setTimeout(() => {
      this.timers.delete(key);
      try {
        if (this.now().getTime() >= at.getTime()) {
          this.nextFire.delete(key);
          this.fire(kind, name, at, 'schedule');
        }
      } catch (e) {
        // A busy catalog must not stop the scheduler: log it and keep the timers going.
        this.o.log.error(`${kind} ${name}: scheduling failed`, { err: e });
      }
      try {
        this.arm(kind, name);
      } catch (e) {
        this.o.log.error(`${kind} ${name}: scheduling failed; trying again in a minute`, { err: e });
        const retry = setTimeout(() => this.arm(kind, name), MAX_SLEEP_MS);
        retry.unref();
        this.timers.set(key, retry);
      }
    }, wait);
    timer.unref();
    this.timers.set(key, timer);
  }

  private fire(kind: ScheduleKind, name: string, fireAt: Date, trigger: RunTrigger): void {
    this.o.catalog.schedule.update(kind, name, { lastFireAt: fireAt });
    if (this.o.isRunning(kind, name)) {
      this.o.log.warn(`${kind} ${name}: still running at its next fire time; this one is skipped`);
      this.o.events.emit({
        type: 'run.skipped',
        severity: 'info',
        job: name,
        message: `${kind} ${name}: the run due at ${fireAt.toISOString()} was skipped, the previous run is still going`,
        data: { kind, fireAt: fireAt.toISOString() },
      });
      return;
    }
    this.o
      .start(kind, name, trigger)
      .catch((e) => this.o.log.error(`${kind} ${name} could not start`, { err: e }));
  }
}
