/**
 * `haven job list|show|run`: the jobs of the configuration, their next run and last result, and
 * running one now (with a progress display on a terminal). A run's exit code: 0 when every copy
 * succeeded, 12 when some failed, the first failure's code when all did (docs/exit-codes.md).
 */
import type { Command } from 'commander';
import { type Catalog, catalogPath, openCatalog } from '../../catalog/catalog.ts';
import type { HavenConfig, JobConfig } from '../../core/config.ts';
import { HavenError } from '../../core/errors.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { Virsh } from '../../engine/index.ts';
import {
  EventLog,
  type JobRunResult,
  jobNotFound,
  Notifier,
  nextRuns,
  runJob,
  selectJobServers,
  statusRows,
} from '../../jobs/index.ts';
import { guardAfterRefusal } from '../../recovery/index.ts';
import type { CliContext } from '../context.ts';
import { catalogForDryRun } from '../dry-run.ts';
import { EXIT_CODES, EXIT_PARTIAL, exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { jobProgress } from '../job-progress.ts';
import { connectOption, examples } from '../options.ts';
import { formatTime, formatWhenRelative, timeHeader } from '../when.ts';

function getJob(config: HavenConfig, name: string): JobConfig {
  const job = config.jobs[name];
  if (!job) throw jobNotFound(name, Object.keys(config.jobs));
  return job;
}

function openIfExists(ctx: CliContext): Catalog | undefined {
  try {
    return openCatalog(catalogPath(ctx.paths.stateDir), { readOnly: true, log: ctx.log });
  } catch (e) {
    if (e instanceof HavenError && e.code === 'CATALOG_NOT_FOUND') return undefined;
    throw e;
  }
}

function jobJson(config: HavenConfig, job: JobConfig, catalog: Catalog | undefined, now: Date) {
  const next = nextRuns(config, now).get(job.name) ?? null;
  const last = catalog?.runs.list({ kind: 'job', job: job.name, limit: 1 })[0];
  return {
    ...job,
    nextRun: next?.toISOString() ?? null,
    lastRun: last
      ? {
          id: last.id,
          status: last.status,
          trigger: last.trigger,
          startedAt: last.startedAt.toISOString(),
          finishedAt: last.finishedAt?.toISOString() ?? null,
        }
      : null,
  };
}

function printRun(ctx: CliContext, r: JobRunResult, tz: string | undefined): void {
  const head = r.dryRun
    ? `Plan for job ${r.job} — nothing changed`
    : `job ${r.job}: run #${r.runId} ${r.status} in ${formatDuration(r.durationMs)}`;
  ctx.print(head);
  if (r.error)
    ctx.print(`  [${r.error.code}] ${r.error.message}${r.error.hint ? `\n  ${r.error.hint}` : ''}`);
  for (const s of r.staging) {
    if (s.mode === 'off') continue;
    ctx.print(
      `  staging to ${s.target}: ${s.mode}${s.drives.length ? ` on ${s.drives.map((d) => `${d.device} (${formatBytes(d.freeBytes)} free)`).join(', ')}` : ''}`,
    );
  }
  if (r.dryRun) {
    ctx.printTable(
      ['server', 'target', 'size', 'disks', 'staging'],
      r.servers.map((s) => [
        s.server,
        s.target,
        formatBytes(s.sizeBytes),
        s.plan ? s.plan.disks.map((d) => `${d.target}:${d.mode}`).join(' ') : (s.error?.code ?? ''),
        r.staging.find((x) => x.target === s.target)?.assignments[s.server] ?? '-',
      ]),
    );
    return;
  }
  ctx.printTable(
    ['server', 'target', 'result', 'mode', 'sent', 'time', 'tries', timeHeader('staged', tz), 'error'],
    r.servers.map((s) => [
      s.server,
      s.target,
      s.status,
      s.mode ?? '-',
      s.bytesSent === undefined ? '-' : formatBytes(s.bytesSent),
      formatDuration(s.durationMs),
      String(s.attempts),
      s.staging?.stagedBytes !== undefined
        ? `${formatBytes(s.staging.stagedBytes)} ${formatTime(s.staging.stagedAt ? new Date(s.staging.stagedAt) : null, tz)}`
        : s.staging?.fallback
          ? `no (${s.staging.fallback.code})`
          : '-',
      s.error ? `[${s.error.code}] ${s.error.message}` : '',
    ]),
  );
  if (r.logFile) ctx.print(`  log: ${r.logFile}`);
}

export default function register(program: Command, context: () => CliContext): void {
  const job = program.command('job').description('list, show and run the jobs of the configuration');
  examples(job, [
    ['haven job list', 'every job with its next run and last result'],
    ['haven job run nightly', 'run the job nightly now'],
  ]);
  registerList(job, context);
  registerShow(job, context);
  registerRun(job, context);
}

function registerList(job: Command, context: () => CliContext): void {
  const list = job
    .command('list')
    .description('every job with its servers, targets, schedule, next run and last result')
    .option('--json', 'print JSON');
  examples(list, [
    ['haven job list', 'every job with its next run and last result'],
    ['haven job list --json', 'the same as JSON'],
  ]);
  list.action(async (flags: { json?: boolean }) => {
    const ctx = context();
    const config = await ctx.config();
    const now = new Date();
    const catalog = openIfExists(ctx);
    try {
      const jobs = Object.values(config.jobs).map((j) => jobJson(config, j, catalog, now));
      if (flags.json) {
        ctx.printJson(jobs);
        return;
      }
      if (jobs.length === 0) {
        ctx.print(`no jobs in ${config.file ?? 'the configuration'}`);
        return;
      }
      ctx.printTable(
        [
          'job',
          'servers',
          'targets',
          'schedule',
          timeHeader('next run', config.timezone),
          'rpo',
          timeHeader('last run', config.timezone),
        ],
        jobs.map((j) => [
          j.name,
          j.servers.join(' '),
          j.targets.join(' '),
          j.schedule ?? 'on demand',
          formatWhenRelative(j.nextRun ? new Date(j.nextRun) : null, config.timezone, now),
          j.rpoMs === undefined ? '-' : formatDuration(j.rpoMs),
          j.lastRun
            ? `#${j.lastRun.id} ${j.lastRun.status} ${formatTime(new Date(j.lastRun.startedAt), config.timezone)}`
            : '-',
        ]),
      );
    } finally {
      catalog?.close();
    }
  });
}

function registerShow(job: Command, context: () => CliContext): void {
  const show = job
    .command('show')
    .description('one job: its settings, the servers it selects now, their status and recent runs')
    .argument('<job>', 'job name')
    .option('--json', 'print JSON');
  connectOption(show);
  examples(show, [
    ['haven job show nightly', 'the job nightly: settings, the servers it selects now, recent runs'],
  ]);
  show.action(async (name: string, flags: { json?: boolean }) => {
    const ctx = context();
    const config = await ctx.config();
    const j = getJob(config, name);
    const now = new Date();
    const catalog = openIfExists(ctx);
    try {
      let servers: Array<{ name: string; sizeBytes: number; state: string }> = [];
      let missing: string[] = [];
      let inventoryError: string | undefined;
      try {
        const sel = await selectJobServers(new Virsh({ log: ctx.log }), j.servers, ctx.log);
        servers = sel.selected.map((s) => ({ name: s.name, sizeBytes: s.sizeBytes, state: s.state }));
        missing = sel.missing;
      } catch (e) {
        inventoryError = (e as Error).message;
      }
      const status = catalog
        ? statusRows({
            config,
            catalog,
            selections: new Map([[j.name, servers.map((s) => s.name)]]),
            now,
          }).filter((r) => r.job === j.name)
        : [];
      const runs = catalog?.runs.list({ kind: 'job', job: j.name, limit: 10 }) ?? [];
      const out = {
        ...jobJson(config, j, catalog, now),
        selected: servers,
        missing,
        inventoryError,
        status,
        runs,
      };
      if (flags.json) {
        ctx.printJson(out);
        return;
      }
      ctx.print(`job ${j.name}`);
      ctx.print(`  servers: ${j.servers.join(' ')}  →  targets: ${j.targets.join(' ')}`);
      ctx.print(
        `  schedule: ${j.schedule ?? 'on demand'}; next run: ${formatWhenRelative(out.nextRun ? new Date(out.nextRun) : null, config.timezone, now)}`,
      );
      ctx.print(
        `  consistency ${j.consistency}, rpo ${j.rpoMs === undefined ? '-' : formatDuration(j.rpoMs)}, parallel ${j.parallel}, retries ${j.retries} (back-off ${formatDuration(j.retryBackoffMs)}), cache ${j.cache ? 'yes' : 'no'}, buffer ${formatBytes(j.buffer)}`,
      );
      if (inventoryError) ctx.print(`  servers now: unknown (${inventoryError})`);
      else
        ctx.print(
          `  servers now (largest first): ${servers.map((s) => `${s.name} (${formatBytes(s.sizeBytes)})`).join(', ') || 'none'}${missing.length ? `; missing: ${missing.join(', ')}` : ''}`,
        );
      if (status.length) {
        ctx.printTable(
          ['server', 'target', timeHeader('newest copy', config.timezone), 'rpo age', 'last result'],
          status.map((r) => [
            r.server,
            r.target,
            formatTime(r.lastGoodAt, config.timezone),
            r.ageMs === null
              ? r.rpo
              : `${formatDuration(r.ageMs)}${r.rpoMs ? ` / ${formatDuration(r.rpoMs)}` : ''}`,
            r.lastResult ?? '-',
          ]),
        );
      }
      if (runs.length) {
        ctx.printTable(
          ['run', 'trigger', 'status', timeHeader('started', config.timezone), 'took'],
          runs.map((r) => [
            `#${r.id}`,
            r.trigger,
            r.status,
            formatTime(r.startedAt, config.timezone),
            r.finishedAt ? formatDuration(r.finishedAt.getTime() - r.startedAt.getTime()) : '-',
          ]),
        );
      }
    } finally {
      catalog?.close();
    }
  });
}

function registerRun(job: Command, context: () => CliContext): void {
  const run = job
    .command('run')
    .description('run a job now: its servers largest first, to each of its targets')
    .argument('<job>', 'job name')
    .option('--dry-run', 'show what would be copied (and staged) and change nothing')
    .option('--json', 'print the result as JSON');
  connectOption(run);
  examples(run, [
    ['haven job run nightly', 'run the job nightly now'],
    ['haven job run nightly --dry-run --json', 'what it would copy and stage, as JSON'],
  ]);
  run.action(async (name: string, flags: { dryRun?: boolean; json?: boolean }) => {
    const ctx = context();
    const config = await ctx.config();
    getJob(config, name);
    const log = flags.dryRun ? ctx.log : ctx.openRunLog(`job-${name}`);
    // A dry run reads the catalog if there is one and never creates or migrates it.
    const catalog = flags.dryRun
      ? await catalogForDryRun(ctx.paths.stateDir, log)
      : openCatalog(catalogPath(ctx.paths.stateDir), { log });
    const events =
      flags.dryRun || !catalog
        ? undefined
        : new EventLog(catalog, Notifier.fromConfig(config.alerts, log), log);
    const progress = jobProgress(ctx.stderr, flags.dryRun ? 'off' : ctx.progressMode(flags.json));
    let result: JobRunResult;
    try {
      // A stopped run still reports what it did (status cancelled, exit 130), so the signal
      // only aborts the work here; the report below says how it ended.
      result = await interruptible(`job ${name}`, (signal) =>
        runJob({
          config,
          job: name,
          catalog,
          runDir: ctx.paths.runDir,
          trigger: 'manual',
          dryRun: flags.dryRun,
          signal,
          log,
          logFile: log.filePath,
          events,
          onUpdate: (u) => progress.update(u),
          onServerFailed: (server, err) => guardAfterRefusal(new Virsh({ log }), server, err, log),
        }),
      );
    } finally {
      progress.stop();
      catalog?.close();
    }
    if (flags.json) ctx.printJson(result);
    else printRun(ctx, result, config.timezone);
    if (result.status === 'ok' || result.status === 'planned') return;
    const failures = result.servers.filter((s) => s.status === 'failed');
    const first = result.error ?? failures[0]?.error;
    ctx.stderr.write(
      `haven: error [${result.status === 'cancelled' ? 'INTERRUPTED' : 'JOB_FAILED'}]: job ${name} ${result.status}` +
        `${failures.length ? `: ${failures.length} of ${result.servers.length} copies failed` : ''}${first ? ` (first: [${first.code}] ${first.message})` : ''}\n`,
    );
    process.exitCode =
      result.status === 'cancelled'
        ? EXIT_CODES.interrupted
        : result.status === 'partial'
          ? EXIT_PARTIAL
          : first
            ? exitCodeFor(first.kind as Parameters<typeof exitCodeFor>[0])
            : EXIT_PARTIAL;
  });
}
