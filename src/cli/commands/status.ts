/**
 * `haven status [--json]`: protection at a glance, one row per server and target: the newest
 * good copy, its age against the recovery point objective, a continuous lane's state and lag,
 * the next run and the last result.
 */
import type { Command } from 'commander';
import { catalogPath, openCatalog } from '../../catalog/catalog.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { Virsh } from '../../engine/index.ts';
import { jobSelections, type StatusRow, statusRows } from '../../jobs/index.ts';
import type { CliContext } from '../context.ts';
import { connectOption, examples } from '../options.ts';
import { formatTime, formatWhenRelative, timeHeader } from '../when.ts';

function rpoText(r: StatusRow): string {
  if (r.rpo === 'none') return r.ageMs === null ? '-' : `${formatDuration(r.ageMs)} (no objective)`;
  if (r.rpo === 'never') return `no copy / ${formatDuration(r.rpoMs!)} BREACHED`;
  return `${formatDuration(r.ageMs!)} / ${formatDuration(r.rpoMs!)}${r.rpo === 'breached' ? ' BREACHED' : ' ok'}`;
}

/** A continuous lane: "syncing, lag 2s", "behind 14s (3.2 MiB)", "refused [CODE]"; '-' if none. */
function laneText(r: StatusRow): string {
  const l = r.lane;
  if (!l) return '-';
  const lag = l.lagMs === null ? '' : formatDuration(l.lagMs);
  let text: string = l.state;
  if (l.state === 'behind') text = lag ? `behind ${lag}` : 'behind';
  else if (lag) text += `, lag ${lag}`;
  if (l.pendingBytes > 0) text += ` (${formatBytes(l.pendingBytes)})`;
  if (l.errorCode) text += ` [${l.errorCode}]`;
  if (l.stale) text += `; protector gone (pid ${l.pid}, was ${l.recordedState})`;
  return text;
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('status')
    .description(
      'per server and target: newest copy, RPO age against the objective, continuous state and lag, next run, last result',
    )
    .option('--json', 'print JSON');
  connectOption(command);
  examples(command, [
    ['haven status', 'newest copy and RPO age of every protected server, per target'],
    ['haven status --json', 'the same, for scripts and monitoring'],
  ]);
  command.action(async (flags: { json?: boolean }) => {
    const ctx = context();
    const config = await ctx.config();
    const now = new Date();
    let selections = new Map<string, string[]>();
    let inventoryError: string | undefined;
    try {
      selections = await jobSelections(new Virsh({ log: ctx.log }), Object.values(config.jobs));
    } catch (e) {
      inventoryError = (e as Error).message;
    }
    const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log: ctx.log });
    let rows: StatusRow[];
    try {
      rows = statusRows({ config, catalog, selections, now });
    } finally {
      catalog.close();
    }
    if (inventoryError)
      ctx.log.warn(`servers could not be listed (${inventoryError}); showing what the catalog knows`);
    if (flags.json) ctx.printJson(rows);
    else if (rows.length === 0)
      ctx.print('nothing is protected yet: no job selects a server and nothing was copied');
    else
      ctx.printTable(
        [
          'server',
          'target',
          timeHeader('newest copy', config.timezone),
          'rpo age / objective',
          'continuous',
          timeHeader('next run', config.timezone),
          timeHeader('last result', config.timezone),
        ],
        rows.map((r) => [
          r.server,
          r.target,
          formatTime(r.lastGoodAt, config.timezone),
          rpoText(r),
          laneText(r),
          formatWhenRelative(r.nextRun, config.timezone, now),
          r.lastResult
            ? `${r.lastResult}${r.lastErrorCode ? ` [${r.lastErrorCode}]` : ''} ${formatTime(r.lastRunAt, config.timezone)}`
            : '-',
        ]),
      );
  });
}
