/**
 * `haven prune`: apply the retention of the configuration now (docs/configuration.md
 * `retention`): run logs, finished runs and events, and the stale-checkpoint rule. The daemon
 * does the same on its own (hourly, the checkpoint sweep daily); this is for hosts without it
 * (cron) and for an operator who wants it done now.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { type Catalog, catalogPath, openCatalog } from '../../catalog/catalog.ts';
import { formatBytes } from '../../core/units.ts';
import { Virsh } from '../../engine/index.ts';
import { type MaintenanceReport, runMaintenance } from '../../jobs/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { connectOption, examples } from '../options.ts';

interface PruneFlags {
  dryRun?: boolean;
  json?: boolean;
  checkpoints: boolean;
}

function printReport(ctx: CliContext, r: MaintenanceReport, stateDir: string): void {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  if (r.dryRun) ctx.print('Plan — nothing changed:');
  if (r.logs) {
    const bytes = r.logs.deleted.reduce((n, f) => n + f.bytes, 0);
    const why = (['age', 'size', 'count'] as const)
      .map((k) => [k, r.logs!.deleted.filter((f) => f.reason === k).length] as const)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} by ${k}`);
    ctx.print(
      `logs (${r.logs.dir}): ${verb} ${r.logs.deleted.length} file(s), ${formatBytes(bytes)}${why.length ? ` (${why.join(', ')})` : ''}; ${r.logs.keptFiles} file(s), ${formatBytes(r.logs.keptBytes)} kept`,
    );
  }
  if (r.history) ctx.print(`catalog: ${verb} ${r.history.runs} run(s) and ${r.history.events} event(s)`);
  else ctx.print(`catalog: none at ${catalogPath(stateDir)}`);
  const sweep = r.checkpoints;
  if (!sweep) return;
  if (sweep.servers.length === 0) ctx.print('checkpoints: none to delete');
  for (const s of sweep.servers) {
    const names = s.result ? [...s.result.deleted, ...s.result.missing] : s.checkpoints;
    const stale = s.stale.map((x) => `${x.targets.join(', ') || x.store} (last copy ${x.lastDeliveredAt})`);
    ctx.print(
      `checkpoints of ${s.server}: ${verb} ${names.length}${names.length ? `: ${names.join(', ')}` : ''}${stale.length ? `; unused targets: ${stale.join('; ')}` : ''}`,
    );
    for (const f of s.result?.failed ?? [])
      ctx.print(`  could not delete ${f.name}: [${f.code}] ${f.message}`);
  }
  for (const b of sweep.busy) ctx.print(`checkpoints of ${b}: left alone, a run is copying it`);
  for (const e of sweep.errors) ctx.print(`checkpoints of ${e.server}: [${e.code}] ${e.message}`);
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('prune')
    .description(
      'apply the retention now: old run logs, runs and events, and checkpoints of targets no job uses',
    )
    .option('--no-checkpoints', 'leave libvirt checkpoints alone (logs, runs and events only)')
    .option('--dry-run', 'show what would be deleted, and change nothing')
    .option('--json', 'print the result as JSON');
  connectOption(command);
  examples(command, [
    ['haven prune --dry-run', 'show what the retention would delete now'],
    ['haven prune --no-checkpoints --json', 'delete old logs, runs and events only, and report as JSON'],
  ]);
  command.action(async (flags: PruneFlags) => {
    const ctx = context();
    const config = await ctx.config();
    const log = flags.dryRun ? ctx.log : ctx.openRunLog('prune');
    const path = catalogPath(ctx.paths.stateDir);
    const catalog: Catalog | undefined = existsSync(path) ? openCatalog(path, { log }) : undefined;
    const virsh = catalog && flags.checkpoints ? new Virsh({ log }) : undefined;
    try {
      const report = await runMaintenance({
        config,
        logDir: ctx.paths.logDir,
        catalog,
        virsh,
        log,
        force: true,
        dryRun: flags.dryRun,
        keepLogs: log.filePath ? [log.filePath] : [],
      });
      if (flags.json) ctx.printJson(report);
      else printReport(ctx, report, ctx.paths.stateDir);
      const failed =
        report.checkpoints &&
        (report.checkpoints.errors.length > 0 ||
          report.checkpoints.servers.some((s) => (s.result?.failed.length ?? 0) > 0));
      if (failed) process.exitCode = EXIT_PARTIAL;
    } finally {
      virsh?.close();
      catalog?.close();
    }
  });
}
