/**
 * Running a job (docs/design.md §3 jobs/): its servers, largest first, to each of its targets in turn;
 * at most `parallel` servers at once; a server that fails does not stop the others, and is tried
 * again after a back-off; a result per server and target in the catalog; events for the start,
 * the end and every failure; staging on primary cache drives when the job asks for it
 * (jobs/staging.ts).
 *
 * Only one run of a job at a time, across processes: the catalog's `running` runs are the lock
 * (a run whose process died is closed as abandoned first).
 */
import type { Catalog, FinalRunStatus, RunTrigger } from '../catalog/catalog.ts';
import { effectiveCopies, type HavenConfig, type JobConfig } from '../core/config.ts';
import { asHavenError, type HavenError, InternalError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { Semaphore } from '../core/semaphore.ts';
import { formatBytes, formatDuration } from '../core/units.ts';
import {
  DEFAULT_TUNING,
  estimateStaging,
  type ProgressSnapshot,
  type ProtectPlan,
  type ProtectTuning,
  type ServerSummary,
  stagingOverhead,
  Virsh,
} from '../engine/index.ts';
import { type CacheDrive, discoverCacheDrives } from './cache/drives.ts';
import { type DriveMount, useDrive } from './cache/mounts.ts';
import { planStaging, type StagingMode } from './cache/plan.ts';
import { copyServer, type ServerOutcome } from './copy.ts';
import { JobError, jobIsContinuous, jobNotFound } from './errors.ts';
import { dedupKeys, type EventLog } from './events.ts';
import { checkRpo } from './rpo.ts';
import { type Selection, selectJobServers } from './servers.ts';
import { cleanStaleStaging, StagingCoordinator, type StagingRecord } from './staging.ts';
import { statusRows } from './status.ts';
import { type ResolvedTarget, resolveTarget } from './targets.ts';

export type JobUpdate =
  | { type: 'run.started'; runId: number | null; job: string; trigger: RunTrigger; at: string }
  | { type: 'servers'; runId: number | null; job: string; servers: string[]; targets: string[] }
  | { type: 'server.started'; runId: number | null; job: string; server: string; target: string }
  | {
      type: 'progress';
      runId: number | null;
      job: string;
      server: string;
      target: string;
      progress: ProgressSnapshot;
    }
  | {
      type: 'server.finished';
      runId: number | null;
      job: string;
      server: string;
      target: string;
      status: string;
      error?: { code: string; message: string };
    }
  | { type: 'run.finished'; runId: number | null; job: string; status: string; at: string };

export interface ServerReport {
  server: string;
  target: string;
  status: 'ok' | 'failed' | 'cancelled' | 'planned';
  sizeBytes: number;
  mode?: string;
  generation?: { id: string; seq: number };
  bytesRead?: number;
  bytesSent?: number;
  durationMs: number;
  attempts: number;
  startedAt: string;
  finishedAt: string;
  error?: { code: string; kind: string; message: string; hint?: string };
  staging?: StagingRecord;
  plan?: ProtectPlan;
}

export interface StagingReport {
  target: string;
  /** off: the job does not stage; no-drive: it does, but no cache drive was found. */
  mode: StagingMode | 'off' | 'no-drive';
  drives: Array<{ device: string; mountpoint: string | null; totalBytes: number; freeBytes: number }>;
  /** Staging estimate per server, bytes. */
  estimates: Record<string, number>;
  /** Server → device, or null when it is copied without staging. */
  assignments: Record<string, string | null>;
}

export interface JobRunResult {
  runId: number | null;
  job: string;
  trigger: RunTrigger;
  dryRun: boolean;
  status: FinalRunStatus | 'planned';
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  servers: ServerReport[];
  staging: StagingReport[];
  error?: { code: string; kind: string; message: string; hint?: string };
  logFile?: string;
}

export interface RunJobOptions {
  config: HavenConfig;
  job: string;
  /** Where the run is recorded; a dry run may go without (it only reads it). */
  catalog: Catalog | undefined;
  runDir: string;
  trigger: RunTrigger;
  virsh?: Virsh;
  dryRun?: boolean;
  signal?: AbortSignal;
  log: Logger;
  logFile?: string;
  /** Catalog events and their alerts; none in a dry run. */
  events?: EventLog;
  onUpdate?: (u: JobUpdate) => void;
  /**
   * Told of every server copy that failed, before its events: the caller reacts to refusals
   * it knows (a DR store that runs the server guards the primary's domain, recovery/guard).
   */
  onServerFailed?: (server: string, error: HavenError) => Promise<unknown>;
}

function errorInfo(e: HavenError): NonNullable<ServerReport['error']> {
  return { code: e.code, kind: e.kind, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
}

/** Reads in flight from the job's memory budget: a quarter of it in read-ahead. */
export function tuningFor(job: JobConfig): Partial<ProtectTuning> {
  const inflight = Math.floor(job.buffer / 4 / DEFAULT_TUNING.requestBytes);
  return { inflight: Math.max(1, Math.min(64, inflight)) };
}

/**
 * Starts the catalog record of a run, refusing a second run of the same job while one is
 * running (in any process on this host).
 */
export function startJobRun(catalog: Catalog, job: string, trigger: RunTrigger): number {
  catalog.runs.abandonStale();
  return catalog.transaction(() => {
    const running = catalog.runs.list({ kind: 'job', job, status: 'running', limit: 1 })[0];
    if (running) {
      throw new JobError('JOB_ALREADY_RUNNING', `job ${job} is already running (run #${running.id})`, {
        kind: 'conflict',
        hint: 'One run of a job at a time: wait for it (haven runs), or cancel it through the daemon.',
        details: { job, runId: running.id, pid: running.pid },
      });
    }
    return catalog.runs.start({ kind: 'job', job, trigger }).id;
  });
}

interface TargetContext {
  target: ResolvedTarget;
  copies: number;
  staging: StagingReport;
  coordinator: StagingCoordinator | undefined;
  records: Map<string, StagingRecord>;
  mounts: DriveMount[];
}

class JobRun {
  readonly job: JobConfig;
  readonly virsh: Virsh;
  runId: number | null = null;
  readonly reports: ServerReport[] = [];
  readonly stagingReports: StagingReport[] = [];
  private cacheProblems = 0;

  constructor(private readonly o: RunJobOptions) {
    const job = o.config.jobs[o.job];
    if (!job) throw jobNotFound(o.job, Object.keys(o.config.jobs));
    if (job.mode === 'continuous') throw jobIsContinuous(job.name);
    this.job = job;
    if (!o.catalog && !o.dryRun) throw new InternalError('a job run needs the catalog');
    // One virsh process serves the run's libvirt calls (a caller's Virsh is the caller's to close).
    this.virsh = o.virsh ?? new Virsh({ log: o.log, session: true });
  }

  /** The catalog of a run that records (every run but a dry run, checked in the constructor). */
  private get catalog(): Catalog {
    if (!this.o.catalog) throw new InternalError('a job run needs the catalog');
    return this.o.catalog;
  }

  private update(u: JobUpdate): void {
    try {
      this.o.onUpdate?.(u);
    } catch (e) {
      this.o.log.warn('a progress listener failed', { err: e });
    }
  }

  private get events(): EventLog | undefined {
    return this.o.dryRun ? undefined : this.o.events;
  }

  async run(): Promise<JobRunResult> {
    const { log } = this.o;
    const started = new Date();
    if (!this.o.dryRun) {
      const catalog = this.catalog;
      this.runId = startJobRun(catalog, this.job.name, this.o.trigger);
      catalog.schedule.update('job', this.job.name, { lastRunAt: started, lastRunId: this.runId });
    }
    const runId = this.runId;
    const base = { ...(runId !== null ? { runId } : {}), job: this.job.name };
    log.info(`job ${this.job.name}: run ${runId ?? '(dry run)'} started`, { trigger: this.o.trigger });
    this.update({
      type: 'run.started',
      runId,
      job: this.job.name,
      trigger: this.o.trigger,
      at: started.toISOString(),
    });
    this.events?.emit({
      type: 'run.started',
      severity: 'info',
      ...base,
      message: `job ${this.job.name} started (${this.o.trigger})`,
      data: { trigger: this.o.trigger },
    });

    let setupError: HavenError | undefined;
    try {
      const selection = await selectJobServers(this.virsh, this.job.servers, log);
      if (selection.selected.length === 0 && selection.missing.length === 0) {
        throw new JobError('JOB_NO_SERVERS', `job ${this.job.name} selects no server on this host`, {
          kind: 'not-found',
          hint: `Its servers are ${JSON.stringify(this.job.servers)}; \`haven servers\` lists what libvirt knows.`,
          details: { job: this.job.name, patterns: this.job.servers },
        });
      }
      this.update({
        type: 'servers',
        runId,
        job: this.job.name,
        servers: [...selection.selected.map((s) => s.name), ...selection.missing],
        targets: this.job.targets,
      });
      // The run got as far as copying: a setup problem of earlier runs is over.
      this.events?.resolve(dedupKeys.run(this.job.name), {
        type: 'run.recovered',
        severity: 'info',
        ...base,
        message: `job ${this.job.name} runs again`,
      });
      for (const targetName of this.job.targets) {
        if (this.o.signal?.aborted) break;
        await this.runTarget(targetName, selection);
      }
    } catch (e) {
      setupError = asHavenError(e);
      log.error(`job ${this.job.name} could not run`, { err: setupError });
    }

    const finished = new Date();
    const status = this.finalStatus(setupError);
    const result: JobRunResult = {
      runId,
      job: this.job.name,
      trigger: this.o.trigger,
      dryRun: this.o.dryRun === true,
      status,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationMs: finished.getTime() - started.getTime(),
      servers: this.reports,
      staging: this.stagingReports,
      ...(setupError ? { error: errorInfo(setupError) } : {}),
      ...(this.o.logFile ? { logFile: this.o.logFile } : {}),
    };
    if (!this.o.dryRun && runId !== null) this.finish(result, setupError);
    this.update({ type: 'run.finished', runId, job: this.job.name, status, at: result.finishedAt });
    return result;
  }

  private finalStatus(setupError: HavenError | undefined): JobRunResult['status'] {
    if (this.o.dryRun && !setupError) return 'planned';
    if (this.o.signal?.aborted) return 'cancelled';
    if (setupError) return 'failed';
    const ok = this.reports.filter((r) => r.status === 'ok').length;
    if (ok === this.reports.length) return 'ok';
    return ok === 0 ? 'failed' : 'partial';
  }

  private finish(result: JobRunResult, setupError: HavenError | undefined): void {
    const catalog = this.catalog;
    const runId = this.runId!;
    const count = (s: string) => result.servers.filter((r) => r.status === s).length;
    const summary = {
      servers: result.servers.map(({ plan: _p, ...r }) => r),
      staging: result.staging,
      counts: { ok: count('ok'), failed: count('failed'), cancelled: count('cancelled') },
      ...(this.o.logFile ? { logFile: this.o.logFile } : {}),
    };
    const firstError = setupError ?? undefined;
    catalog.runs.finish(runId, {
      status: result.status as FinalRunStatus,
      summary,
      ...(firstError ? { errorCode: firstError.code, errorMessage: firstError.message } : {}),
      ...(!firstError && result.status !== 'ok'
        ? {
            errorCode: result.status === 'cancelled' ? 'INTERRUPTED' : 'JOB_FAILED',
            errorMessage: `${summary.counts.failed} of ${result.servers.length} copies failed`,
          }
        : {}),
    });
    const events = this.events;
    if (!events) return;
    const base = { runId, job: this.job.name };
    if (setupError) {
      events.emit({
        type: 'run.failed',
        severity: 'error',
        ...base,
        message: `job ${this.job.name} failed before copying: ${setupError.message}`,
        data: { code: setupError.code, hint: setupError.hint },
        dedupKey: dedupKeys.run(this.job.name),
      });
    }
    events.emit({
      type: 'run.finished',
      severity: 'info',
      ...base,
      message: `job ${this.job.name} ${result.status}: ${summary.counts.ok} ok, ${summary.counts.failed} failed, in ${formatDuration(result.durationMs)}`,
      data: { status: result.status, counts: summary.counts },
    });
    if (this.job.cache && this.cacheProblems === 0 && !setupError) {
      events.resolve(dedupKeys.cache(this.job.name), {
        type: 'cache.recovered',
        severity: 'info',
        ...base,
        message: `job ${this.job.name} stages on its cache drive again`,
      });
    }
    // A good copy may have brought pairs back within their objective, a failure pushed them out.
    const selections = new Map([[this.job.name, [...new Set(result.servers.map((r) => r.server))]]]);
    const rows = statusRows({ config: this.o.config, catalog, selections }).filter(
      (r) => r.job === this.job.name,
    );
    checkRpo(rows, events);
  }

  private cacheProblem(message: string, data: Record<string, unknown>): void {
    this.cacheProblems++;
    this.o.log.warn(message, data);
    this.events?.emit({
      type: 'cache.problem',
      severity: 'warning',
      ...(this.runId !== null ? { runId: this.runId } : {}),
      job: this.job.name,
      message,
      data,
      dedupKey: dedupKeys.cache(this.job.name),
    });
  }

  private async runTarget(targetName: string, selection: Selection): Promise<void> {
    const { config, log } = this.o;
    const target = resolveTarget(targetName, config);
    const targetConfig = config.targets[targetName];
    const copies = targetConfig ? effectiveCopies(this.job, targetConfig) : target.copies;
    const ctx: TargetContext = {
      target,
      copies,
      staging: { target: targetName, mode: 'off', drives: [], estimates: {}, assignments: {} },
      coordinator: undefined,
      records: new Map(),
      mounts: [],
    };
    this.stagingReports.push(ctx.staging);

    for (const name of selection.missing) this.missingServer(name, targetName);
    const servers = selection.selected;
    try {
      if (this.job.cache && servers.length > 0) await this.prepareStaging(ctx, servers);
      if (this.o.dryRun) {
        for (const s of servers) await this.copyOne(ctx, s);
      } else if (ctx.coordinator?.allAtOnce) {
        await Promise.all(servers.map((s) => this.copyOne(ctx, s)));
      } else if (ctx.coordinator) {
        for (const s of servers) {
          if (this.o.signal?.aborted) break;
          await this.copyOne(ctx, s);
        }
      } else {
        const slots = new Semaphore(this.job.parallel);
        await Promise.all(
          servers.map(async (s) => {
            const release = await slots.acquire();
            try {
              if (!this.o.signal?.aborted) await this.copyOne(ctx, s);
            } finally {
              release();
            }
          }),
        );
      }
    } finally {
      for (const m of ctx.mounts)
        await m.release().catch((e) => log.warn('cache release failed', { err: e }));
    }
  }

  private missingServer(name: string, target: string): void {
    const err = new JobError(
      'JOB_SERVER_NOT_FOUND',
      `server ${name} of job ${this.job.name} does not exist`,
      {
        kind: 'not-found',
        hint: 'It was renamed or removed in libvirt: fix the job’s servers list (`haven servers` lists what exists).',
        details: { server: name, job: this.job.name },
      },
    );
    const now = new Date().toISOString();
    const report: ServerReport = {
      server: name,
      target,
      status: this.o.dryRun ? 'planned' : 'failed',
      sizeBytes: 0,
      durationMs: 0,
      attempts: 0,
      startedAt: now,
      finishedAt: now,
      error: errorInfo(err),
    };
    this.reports.push(report);
    if (this.o.dryRun || this.runId === null) return;
    this.catalog.runs.recordServer(this.runId, {
      server: name,
      target,
      status: 'failed',
      errorCode: err.code,
      errorMessage: err.message,
      attempts: 0,
    });
    this.serverEvents(report, err);
  }

  private async prepareStaging(ctx: TargetContext, servers: ServerSummary[]): Promise<void> {
    const { config, log } = this.o;
    const found = await discoverCacheDrives({
      signature: config.cache.signature,
      runDir: this.o.runDir,
      log,
    });
    ctx.staging.drives = found.drives.map((d) => ({
      device: d.device,
      mountpoint: d.mountpoint ?? null,
      totalBytes: d.totalBytes,
      freeBytes: d.freeBytes,
    }));
    for (const s of found.skipped) {
      this.cacheProblem(`cache drive ${s.device} cannot be used: ${s.reason}`, { device: s.device });
    }
    if (found.drives.length === 0) {
      ctx.staging.mode = 'no-drive';
      this.cacheProblem(
        `job ${this.job.name} stages on a cache drive, but no filesystem with ${config.cache.signature} at its root was found; copying directly`,
        { signature: config.cache.signature },
      );
      return;
    }
    const estimates = [];
    for (const s of servers) {
      let bytes: number;
      try {
        const out = await copyServer({ ...this.copyBase(ctx, s), dryRun: true, log });
        if (!out.plan) throw out.error ?? new Error('no plan');
        bytes = await estimateStaging(this.virsh, out.plan, log);
      } catch (e) {
        bytes = s.sizeBytes + s.disks.reduce((n, d) => n + stagingOverhead(d.size ?? 0), 0);
        log.verbose('staging estimate from the disks’ sizes', { server: s.name, err: e });
      }
      estimates.push({ server: s.name, bytes });
      ctx.staging.estimates[s.name] = bytes;
    }
    const plan = planStaging(estimates, found.drives);
    ctx.staging.mode = plan.mode;
    ctx.staging.assignments = Object.fromEntries(plan.assignments);
    log.info(`staging ${plan.mode}`, {
      estimates: Object.fromEntries(estimates.map((e) => [e.server, formatBytes(e.bytes)])),
      assignments: ctx.staging.assignments,
    });
    for (const [server, device] of plan.assignments) {
      if (device === null) {
        this.cacheProblem(`${server} is larger than every cache drive; copying it without staging`, {
          server,
          estimateBytes: ctx.staging.estimates[server],
        });
      }
    }
    if (this.o.dryRun) return;
    const mountPaths = new Map<string, string | null>();
    for (const drive of found.drives) {
      if (![...plan.assignments.values()].includes(drive.device)) continue;
      mountPaths.set(drive.device, await this.mountDrive(ctx, drive));
    }
    const drivePaths = new Map<string, string | null>();
    for (const s of servers) {
      const device = plan.assignments.get(s.name) ?? null;
      const path = device ? (mountPaths.get(device) ?? null) : null;
      drivePaths.set(s.name, path);
      ctx.records.set(s.name, { drive: device, estimateBytes: ctx.staging.estimates[s.name] ?? 0 });
    }
    ctx.coordinator = new StagingCoordinator({
      mode: plan.mode,
      order: servers.map((s) => s.name),
      drivePaths,
      parallel: this.job.parallel,
      runDir: this.o.runDir,
      virsh: this.virsh,
      records: ctx.records,
      onProblem: (p) =>
        this.cacheProblem(`staging ${p.server} on ${p.drive} failed (${p.error.code}); copied it directly`, {
          server: p.server,
          drive: p.drive,
          code: p.error.code,
          error: p.error.message,
        }),
      onProgress: (server, progress) =>
        this.update({
          type: 'progress',
          runId: this.runId,
          job: this.job.name,
          server,
          target: ctx.target.name,
          progress,
        }),
      signal: this.o.signal,
      log,
    });
  }

  private async mountDrive(ctx: TargetContext, drive: CacheDrive): Promise<string | null> {
    try {
      const m = await useDrive(drive, this.o.runDir, this.o.log);
      ctx.mounts.push(m);
      await cleanStaleStaging(m.path, this.o.log);
      return m.path;
    } catch (e) {
      const err = asHavenError(e);
      this.cacheProblem(`cache drive ${drive.device} cannot be mounted: ${err.message}`, {
        device: drive.device,
        code: err.code,
      });
      return null;
    }
  }

  /** What every copy of this job's server to this target is told, planned or done. */
  private copyBase(ctx: TargetContext, s: ServerSummary) {
    const { virsh, job, o } = this;
    const base = {
      server: s.name,
      target: ctx.target,
      virsh,
      runDir: o.runDir,
      job: job.name,
      copies: ctx.copies,
    };
    return { ...base, consistency: job.consistency, catalog: o.catalog };
  }

  private async copyOne(ctx: TargetContext, s: ServerSummary): Promise<void> {
    const { log } = this.o;
    const target = ctx.target.name;
    this.update({ type: 'server.started', runId: this.runId, job: this.job.name, server: s.name, target });
    const coordinator = ctx.coordinator;
    const out: ServerOutcome = await copyServer({
      ...this.copyBase(ctx, s),
      ...(this.runId !== null ? { runId: this.runId } : {}),
      retries: this.job.retries,
      retryBackoffMs: this.job.retryBackoffMs,
      tuning: tuningFor(this.job),
      dryRun: this.o.dryRun,
      stage: coordinator ? () => coordinator.hookFor(s.name) : undefined,
      afterAttempt: () => coordinator?.attemptDone(s.name),
      onRetry: (attempt, error, waitMs) =>
        this.events?.emit({
          type: 'server.retry',
          severity: 'info',
          ...(this.runId !== null ? { runId: this.runId } : {}),
          job: this.job.name,
          server: s.name,
          target,
          message: `${s.name} → ${target}: attempt ${attempt} failed (${error.code}); trying again in ${formatDuration(waitMs)}`,
          data: { attempt, code: error.code, waitMs },
        }),
      onProgress: (progress) =>
        this.update({
          type: 'progress',
          runId: this.runId,
          job: this.job.name,
          server: s.name,
          target,
          progress,
        }),
      signal: this.o.signal,
      log,
    });
    const r = out.result;
    const report: ServerReport = {
      server: s.name,
      target,
      status: out.status,
      sizeBytes: s.sizeBytes,
      durationMs: out.durationMs,
      attempts: out.attempts,
      startedAt: out.startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      ...(r
        ? {
            mode: r.mode,
            generation: { id: r.generation.id, seq: r.generation.seq },
            bytesRead: r.bytesRead,
            bytesSent: r.bytesSent,
          }
        : {}),
      ...(out.plan ? { plan: out.plan } : {}),
      ...(out.error ? { error: errorInfo(out.error) } : {}),
      ...(ctx.records.get(s.name) ? { staging: ctx.records.get(s.name) } : {}),
    };
    if (out.error && !this.o.dryRun) await this.o.onServerFailed?.(s.name, out.error);
    this.reports.push(report);
    this.update({
      type: 'server.finished',
      runId: this.runId,
      job: this.job.name,
      server: s.name,
      target,
      status: out.status,
      ...(out.error ? { error: { code: out.error.code, message: out.error.message } } : {}),
    });
    if (!this.o.dryRun) this.serverEvents(report, out.error);
  }

  private serverEvents(report: ServerReport, error: HavenError | undefined): void {
    const events = this.events;
    if (!events) return;
    const base = {
      ...(this.runId !== null ? { runId: this.runId } : {}),
      job: this.job.name,
      server: report.server,
      target: report.target,
    };
    const key = dedupKeys.copy(report.server, report.target);
    if (report.status === 'ok') {
      events.resolve(key, {
        type: 'server.recovered',
        severity: 'info',
        ...base,
        message: `${report.server} → ${report.target}: copied again`,
      });
    } else if (report.status === 'failed' && error) {
      const verify = error.kind === 'integrity';
      events.emit({
        type: verify ? 'verify.failed' : 'server.failed',
        severity: 'error',
        ...base,
        message: `${report.server} → ${report.target}: ${verify ? 'verification failed' : 'copy failed'}: ${error.message}`,
        data: { code: error.code, kind: error.kind, hint: error.hint, attempts: report.attempts },
        dedupKey: key,
      });
    }
  }
}

/** Runs (or with dryRun, plans) one job now. Never throws for a failed copy: see the result. */
export async function runJob(o: RunJobOptions): Promise<JobRunResult> {
  const run = new JobRun(o);
  try {
    return await run.run();
  } finally {
    if (!o.virsh) run.virsh.close();
    await o.events?.flush();
  }
}
