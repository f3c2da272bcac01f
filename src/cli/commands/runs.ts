/**
 * `haven runs [id] [--json]`: the history of runs (jobs, ad hoc copies, drills), newest first;
 * with an id, one run with its result per server and target.
 */
import type { Command } from 'commander';
import { catalogPath, openCatalog, RUN_KINDS, RUN_STATUSES, type Run } from '../../catalog/catalog.ts';
import { HavenError, UsageError } from '../../core/errors.ts';
import { timeZoneName } from '../../core/time-format.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { JobError } from '../../jobs/index.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

interface RunsFlags {
  job?: string;
  kind?: string;
  status?: string;
  limit: string;
  json?: boolean;
}

function took(r: { startedAt: Date; finishedAt: Date | null }): string {
  return r.finishedAt ? formatDuration(r.finishedAt.getTime() - r.startedAt.getTime()) : 'running';
}

function oneOf<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T))
    throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('runs')
    .description('the history of runs, newest first; with an id, that run per server')
    .argument('[id]', 'one run')
    .option('--job <name>', 'only runs of this job')
    .option('--kind <kind>', `only runs of this kind (${RUN_KINDS.join(', ')})`)
    .option('--status <status>', `only runs with this status (${RUN_STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many runs', '50')
    .option('--json', 'print JSON');
  examples(command, [
    ['haven runs --job nightly --limit 10', 'the last ten runs of the job nightly'],
    ['haven runs --kind drill --status failed', 'drills that failed'],
    ['haven runs 42 --json', 'run 42 with its per-server results, as JSON'],
  ]);
  command.action(async (id: string | undefined, flags: RunsFlags) => {
    const ctx = context();
    const tz = (await ctx.config()).timezone;
    const limit = Number(flags.limit);
    if (!Number.isInteger(limit) || limit < 1)
      throw new UsageError(`--limit must be a positive whole number, got ${flags.limit}`);
    let catalog: ReturnType<typeof openCatalog>;
    try {
      catalog = openCatalog(catalogPath(ctx.paths.stateDir), { readOnly: true, log: ctx.log });
    } catch (e) {
      if (e instanceof HavenError && e.code === 'CATALOG_NOT_FOUND' && id === undefined) {
        if (flags.json) ctx.printJson([]);
        else ctx.print('no runs yet');
        return;
      }
      throw e;
    }
    try {
      if (id !== undefined) {
        const n = Number(id.replace(/^#/, ''));
        const run = Number.isInteger(n) && n > 0 ? catalog.runs.get(n) : undefined;
        if (!run) {
          throw new JobError('JOB_RUN_NOT_FOUND', `there is no run ${id}`, {
            kind: 'not-found',
            hint: '`haven runs` lists the runs.',
          });
        }
        if (flags.json) {
          ctx.printJson(run);
          return;
        }
        ctx.print(
          `run #${run.id}: ${run.kind}${run.job ? ` ${run.job}` : ''} (${run.trigger}) ${run.status}, started ${formatTime(run.startedAt, tz)} (${timeZoneName(tz)}), took ${took(run)}`,
        );
        if (run.errorCode) ctx.print(`  [${run.errorCode}] ${run.errorMessage ?? ''}`);
        const logFile = (run.summary as { logFile?: string } | null)?.logFile;
        if (logFile) ctx.print(`  log: ${logFile}`);
        ctx.printTable(
          ['server', 'target', 'result', 'mode', 'read', 'sent', 'took', 'tries', 'generation', 'error'],
          run.servers.map((s) => [
            s.server,
            s.target,
            s.status,
            s.mode ?? '-',
            formatBytes(s.bytesRead),
            formatBytes(s.bytesSent),
            s.durationMs === null ? '-' : formatDuration(s.durationMs),
            String(s.attempts),
            s.generationId ?? '-',
            s.errorCode ? `[${s.errorCode}] ${s.errorMessage ?? ''}` : '',
          ]),
        );
        return;
      }
      const runs: Run[] = catalog.runs.list({
        job: flags.job,
        kind: oneOf('kind', flags.kind, RUN_KINDS),
        status: oneOf('status', flags.status, RUN_STATUSES),
        limit,
      });
      if (flags.json) {
        ctx.printJson(runs.map((r) => ({ ...r, servers: catalog.runs.servers(r.id) })));
        return;
      }
      if (runs.length === 0) {
        ctx.print('no runs yet');
        return;
      }
      ctx.printTable(
        ['run', 'what', 'trigger', 'status', timeHeader('started', tz), 'took', 'servers', 'error'],
        runs.map((r) => {
          const servers = catalog.runs.servers(r.id);
          const ok = servers.filter((s) => s.status === 'ok').length;
          return [
            `#${r.id}`,
            r.job && r.kind === 'job' ? r.job : `${r.kind}${r.job && r.job !== 'manual' ? ` ${r.job}` : ''}`,
            r.trigger,
            r.status,
            formatTime(r.startedAt, tz),
            took(r),
            servers.length ? `${ok}/${servers.length} ok` : '-',
            r.errorCode ? `[${r.errorCode}] ${r.errorMessage ?? ''}`.slice(0, 80) : '',
          ];
        }),
      );
    } finally {
      catalog.close();
    }
  });
}
