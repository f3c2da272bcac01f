/**
 * `haven config check [--json]`: validates the configuration file and summarises what it
 * defines, with each schedule's next fire time, so an operator sees "nightly runs at 01:30
 * tomorrow" before trusting it. An invalid file fails with CONFIG_INVALID (exit 3) listing every
 * problem; a missing one with CONFIG_NOT_FOUND (exit 4).
 */
import type { Command } from 'commander';
import {
  type BootMarker,
  type ConfigProblem,
  formatProblem,
  type HavenConfig,
  loadConfig,
  nextRun,
} from '../../core/config.ts';
import { formatBytes, formatDuration, formatRate } from '../../core/units.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatWhenRelative, timeHeader } from '../when.ts';

/** "2026-11-23 01:30:00 (in 5h2m)" in the schedule's time zone. */
function formatWhen(d: Date | null, timeZone: string | undefined, now: Date): string {
  return d ? formatWhenRelative(d, timeZone, now) : 'never';
}

function marker(m: BootMarker | undefined): string {
  if (!m) return 'per server';
  return 'serial' in m ? `serial ${JSON.stringify(m.serial)}` : 'guest agent';
}

function summaryJson(c: HavenConfig, now: Date) {
  const next = (s: string | undefined) => (s ? (nextRun(s, c.timezone, now)?.toISOString() ?? null) : null);
  return {
    file: c.file,
    valid: true,
    timezone: c.timezone ?? null,
    targets: Object.values(c.targets),
    jobs: Object.values(c.jobs).map((j) => ({ ...j, nextRun: next(j.schedule) })),
    drills: Object.values(c.drills).map((d) => ({
      ...d,
      overrides: { ...d.overrides },
      nextRun: next(d.schedule),
    })),
    alerts: c.alerts,
    cache: c.cache,
    daemon: c.daemon,
    warnings: c.warnings,
  };
}

function printSummary(ctx: CliContext, c: HavenConfig, now: Date): void {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const targets = Object.values(c.targets);
  const jobs = Object.values(c.jobs);
  const drills = Object.values(c.drills);
  ctx.print(
    `${c.file}: valid (${count(targets.length, 'target')}, ${count(jobs.length, 'job')}, ${count(drills.length, 'drill')})` +
      `; schedules in ${c.timezone ?? 'local time'}`,
  );
  if (targets.length > 0) {
    ctx.print('\nTargets');
    ctx.printTable(
      ['name', 'url', 'copies', 'bandwidth', 'compress'],
      targets.map((t) => [
        t.name,
        t.url,
        String(t.copies),
        t.bandwidth === 0 ? 'unlimited' : formatRate(t.bandwidth),
        t.compress === 0 ? 'off' : `zstd ${t.compress}`,
      ]),
    );
  }
  if (jobs.length > 0) {
    ctx.print('\nJobs');
    ctx.printTable(
      [
        'name',
        'servers',
        'targets',
        'schedule',
        timeHeader('next run', c.timezone),
        'rpo',
        'consistency',
        'parallel',
        'buffer',
      ],
      jobs.map((j) => [
        j.name,
        j.servers.join(' '),
        j.targets.join(' ') + (j.copies === undefined ? '' : ` (copies ${j.copies})`),
        j.schedule ?? 'on demand',
        j.schedule ? formatWhen(nextRun(j.schedule, c.timezone, now), c.timezone, now) : '-',
        j.rpoMs === undefined ? '-' : formatDuration(j.rpoMs),
        j.consistency,
        String(j.parallel),
        formatBytes(j.buffer),
      ]),
    );
  }
  if (drills.length > 0) {
    ctx.print('\nDrills');
    ctx.printTable(
      ['name', 'store', 'servers', 'schedule', timeHeader('next run', c.timezone), 'boot marker', 'timeout'],
      drills.map((d) => [
        d.name,
        d.store,
        d.servers.join(' '),
        d.schedule ?? 'on demand',
        d.schedule ? formatWhen(nextRun(d.schedule, c.timezone, now), c.timezone, now) : '-',
        marker(d.bootMarker) +
          (Object.keys(d.overrides).length ? ` (+${Object.keys(d.overrides).length} overrides)` : ''),
        formatDuration(d.timeoutMs),
      ]),
    );
  }
  const { email, webhook } = c.alerts;
  ctx.print('');
  ctx.print(
    `Alerts: ${
      [
        email && `email to ${email.to.join(', ')} via ${email.smtp} (${email.minSeverity} and above)`,
        webhook && `webhook ${webhook.url} (${webhook.minSeverity} and above)`,
      ]
        .filter(Boolean)
        .join('; ') || 'none'
    }`,
  );
  ctx.print(`Daemon: listens on ${c.daemon.listen.host}:${c.daemon.listen.port}`);
  ctx.print(`Cache drives: filesystems whose root holds ${c.cache.signature}`);
  printWarnings(ctx, c.file ?? '', c.warnings);
}

function printWarnings(ctx: CliContext, file: string, warnings: ConfigProblem[]): void {
  if (warnings.length === 0) return;
  ctx.print(`\n${warnings.length} warning${warnings.length === 1 ? '' : 's'}:`);
  for (const w of warnings) ctx.print(`  ${formatProblem(file, w)}`);
}

export default function register(program: Command, context: () => CliContext): void {
  const config = program.command('config').description('inspect the configuration file');
  examples(config, [['haven config check', 'check the configuration file and summarise it']]);
  const check = config
    .command('check')
    .description(
      'validate the configuration file and summarise targets, jobs and drills with their next runs',
    )
    .option('--json', 'print the checked configuration as JSON');
  examples(check, [
    ['haven config check', 'check /etc/haven/haven.yaml (or $HAVEN_CONFIG) and summarise it'],
    [
      'haven -c ./haven.yaml config check --json',
      'check another file and print the result with defaults applied',
    ],
  ]);
  check.action((opts: { json?: boolean }) => {
    const ctx = context();
    const now = new Date();
    const c = loadConfig(ctx.paths.config, now);
    if (opts.json) ctx.printJson(summaryJson(c, now));
    else printSummary(ctx, c, now);
  });
}
