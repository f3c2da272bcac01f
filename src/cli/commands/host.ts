/**
 * `haven host …` (docs/hosts.md): the hypervisor hosts themselves, through Relax-and-Recover.
 * `list` and `show` read the configuration and the catalog; `setup` installs or checks ReaR and
 * writes Haven's ReaR configuration; `check` asks ReaR whether the disk layout changed; `backup`
 * stores new rescue media when the layout needs them, then a new backup archive; `drill` proves a
 * stored backup recovers the host in a VM; `medium` writes a stored backup's medium and rescue ISO
 * for a recovery on new hardware. ReaR's `-v` and `-d` follow Haven's; `--dry-run` runs
 * ReaR's simulation and changes nothing.
 */
import type { Command } from 'commander';
import { catalogPath, openCatalog } from '../../catalog/catalog.ts';
import { adHocDrill, type BootMarker, type HavenConfig, type HostConfig } from '../../core/config.ts';
import { UsageError } from '../../core/errors.ts';
import { formatBytes, formatDuration, parseDuration } from '../../core/units.ts';
import {
  backupHost,
  type HostBackupOptions,
  type HostBackupReport,
  type HostMediumReport,
  hostShell,
  Rear,
  requireReady,
  runRecordedHostBackup,
  runRecordedHostDrill,
  setupHost,
  unknownHost,
  writeHostMedium,
} from '../../hosts/index.ts';
import { EventLog, Notifier } from '../../jobs/index.ts';
import { HostStore, hostNotFound } from '../../store/host/index.ts';
import { openFsStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { connectOption, examples, generationOption } from '../options.ts';
import { progressBar, readingSnapshot } from '../progress-bar.ts';

function findHost(config: HavenConfig, name: string): HostConfig {
  const h = config.hosts[name];
  if (!h) throw unknownHost(name, Object.keys(config.hosts));
  return h;
}

function rearFlags(ctx: CliContext, log: CliContext['log']) {
  return {
    verbose: ctx.options.verbose === true || ctx.options.debug === true,
    debug: ctx.options.debug === true,
    onLine: (line: string) => log.verbose(`rear: ${line}`),
  };
}

function when(d: Date | undefined): string {
  return d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '-';
}

function registerList(host: Command, context: () => CliContext): void {
  host
    .command('list')
    .description('configured hosts, their targets and newest backup')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }) => {
      const ctx = context();
      const config = await ctx.config();
      const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log: ctx.log });
      try {
        const rows = Object.values(config.hosts)
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((h) => ({
            name: h.name,
            url: h.url,
            target: h.target ?? null,
            schedule: h.schedule ?? null,
            copies: h.copies ?? null,
            lastBackup: catalog.hostRuns.latest(h.name, 'backup').last ?? null,
            lastDrill: catalog.hostRuns.latest(h.name, 'drill').last ?? null,
          }));
        if (flags.json) return ctx.printJson(rows);
        if (rows.length === 0) return ctx.print('No hosts configured (hosts: in haven.yaml, docs/hosts.md).');
        ctx.printTable(
          ['host', 'url', 'target', 'schedule', 'last backup', 'last drill'],
          rows.map((r) => [
            r.name,
            r.url,
            r.target ?? '-',
            r.schedule ?? '-',
            r.lastBackup ? `${r.lastBackup.status} ${when(r.lastBackup.startedAt)}` : '-',
            r.lastDrill ? `${r.lastDrill.status} ${when(r.lastDrill.startedAt)}` : '-',
          ]),
        );
      } finally {
        catalog.close();
      }
    });
}

function registerShow(host: Command, context: () => CliContext): void {
  host
    .command('show')
    .description('a host’s settings and its recent backups and drills')
    .argument('<host>', 'host name')
    .option('--json', 'print as JSON')
    .action(async (name: string, flags: { json?: boolean }) => {
      const ctx = context();
      const h = findHost(await ctx.config(), name);
      const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log: ctx.log });
      try {
        const runs = catalog.hostRuns.list({ host: h.name, limit: 10 });
        if (flags.json) return ctx.printJson({ host: h, runs });
        ctx.print(
          `Host ${h.name} at ${h.url}: target ${h.target ?? '(none)'}, schedule ${h.schedule ?? '(none)'}, copies ${h.copies ?? 'the target’s'}`,
        );
        if (h.exclude.length) ctx.print(`Excluded beyond the defaults: ${h.exclude.join(' ')}`);
        ctx.printTable(
          ['run', 'kind', 'status', 'started', 'seconds', 'bytes', 'error'],
          runs.map((r) => [
            String(r.id),
            r.kind,
            r.status,
            when(r.startedAt),
            r.seconds !== null ? r.seconds.toFixed(0) : '-',
            r.bytes !== null ? formatBytes(r.bytes) : '-',
            r.errorCode ?? '',
          ]),
        );
      } finally {
        catalog.close();
      }
    });
}

function registerSetup(host: Command, context: () => CliContext): void {
  host
    .command('setup')
    .description('check (or --install) ReaR on a host and write Haven’s ReaR configuration')
    .argument('<host>', 'host name')
    .option('--install', 'install what is missing with apt-get on the host')
    .option('--dry-run', 'say what is missing and whether the configuration would change; change nothing')
    .option('--json', 'print the report as JSON')
    .action(async (name: string, flags: { install?: boolean; dryRun?: boolean; json?: boolean }) => {
      const ctx = context();
      const config = await ctx.config();
      const h = findHost(config, name);
      const log = flags.dryRun ? ctx.log : ctx.openRunLog('host-setup');
      const r = await setupHost({ host: h, config, install: flags.install, dryRun: flags.dryRun, log });
      if (flags.json) return ctx.printJson(r);
      ctx.print(`${h.name} (${r.where}): ReaR ${r.rearVersion}`);
      if (r.installed.length) ctx.print(`Installed: ${r.installed.join(' ')}`);
      ctx.print(
        `${r.configPath}: ${r.configWritten ? (r.dryRun ? 'would be written' : 'written') : 'up to date'}`,
      );
      ctx.print(`Excluded from the backup: ${r.excludes.join(' ')}`);
    });
}

function registerCheck(host: Command, context: () => CliContext): void {
  host
    .command('check')
    .description('rear checklayout: has the host’s disk layout changed since its rescue media?')
    .argument('<host>', 'host name')
    .option('--json', 'print as JSON')
    .action(async (name: string, flags: { json?: boolean }) => {
      const ctx = context();
      const h = findHost(await ctx.config(), name);
      const rear = new Rear(hostShell(h, ctx.log));
      await requireReady(rear, h.name);
      const layout = await rear.checkLayout(rearFlags(ctx, ctx.log));
      const text = {
        unchanged: 'the disk layout is unchanged: the rescue media fit',
        changed: 'the disk layout changed: the next `haven host backup` makes new rescue media',
        none: 'no layout saved yet: the first `haven host backup` makes rescue media',
      }[layout];
      if (flags.json) return ctx.printJson({ host: h.name, layout });
      ctx.print(`${h.name}: ${text}`);
    });
}

function registerBackup(host: Command, context: () => CliContext): void {
  host
    .command('backup')
    .description('store new rescue media when the layout needs them, then a new backup archive')
    .argument('<host>', 'host name')
    .option('--to <target>', 'a target name or URL instead of the host’s configured target')
    .option('--dry-run', 'run ReaR’s simulation and ask the target; change nothing')
    .option('--json', 'print the report as JSON')
    .action(async (name: string, flags: { to?: string; dryRun?: boolean; json?: boolean }) => {
      const ctx = context();
      const config = await ctx.config();
      const h = findHost(config, name);
      const log = flags.dryRun ? ctx.log : ctx.openRunLog('host-backup');
      const options = {
        host: h,
        config,
        ...(flags.to ? { target: flags.to } : {}),
        rear: rearFlags(ctx, log),
        dryRun: flags.dryRun === true,
        log,
      };
      const r = flags.dryRun ? await backupHost(options) : await recordedBackup(ctx, config, options);
      if (flags.json) return ctx.printJson(r);
      const media = r.rescue.made
        ? r.rescue.stored
          ? `new rescue media _${r.rescue.stored.seq} (${formatBytes(r.rescue.stored.bytes)}; ${r.rescue.reason})`
          : `new rescue media would be made: ${r.rescue.reason}`
        : `no new rescue media: ${r.rescue.reason}`;
      ctx.print(`${r.host} → ${r.target}: ${media}`);
      if (r.backup.stored) {
        ctx.print(
          `backup _${r.backup.stored.seq} stored: ${formatBytes(r.backup.stored.bytes)} in ${formatDuration(r.backup.stored.seconds * 1000)}`,
        );
      } else if (r.dryRun) {
        ctx.print('dry run: a backup archive would be stored; ReaR’s simulation:');
        ctx.print(r.simulation ?? '');
      }
    });
}

async function recordedBackup(
  ctx: CliContext,
  config: HavenConfig,
  options: HostBackupOptions,
): Promise<HostBackupReport> {
  const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log: options.log });
  const events = new EventLog(catalog, Notifier.fromConfig(config.alerts, options.log), options.log);
  try {
    return await interruptible('host backup', async (signal) => {
      const { report } = await runRecordedHostBackup({
        ...options,
        catalog,
        events,
        trigger: 'manual',
        signal,
      });
      return report;
    });
  } finally {
    await events.flush();
    catalog.close();
  }
}

interface DrillFlags {
  store: string;
  generation?: number;
  marker?: string;
  timeout?: string;
  recoveryTimeout?: string;
  connect?: string;
  dryRun?: boolean;
  json?: boolean;
}

function drillMarker(config: HavenConfig, store: string, flags: DrillFlags): BootMarker {
  if (flags.marker !== undefined) {
    if (flags.marker === '') throw new UsageError('--marker needs the text the console prints once booted');
    return { serial: flags.marker };
  }
  const configured = Object.values(config.drills).find((d) => d.store === store && d.bootMarker);
  if (configured?.bootMarker) return configured.bootMarker;
  throw new UsageError(
    'no boot marker: nothing tells when the recovered host has booted',
    'Give --marker TEXT, or configure drills.<name>.boot_marker for this store (docs/hosts.md).',
  );
}

/** `host drill --dry-run`: the backup and media a drill would boot, checked to exist; nothing boots. */
async function drillPlan(ctx: CliContext, store: string, host: string, seq: number, json?: boolean) {
  const fs = await openFsStore(store, { log: ctx.log });
  const hosts = new HostStore(fs.location, fs.descriptor, { log: ctx.log });
  await fs.close();
  const m = await hosts.manifest(host);
  if (!m) throw hostNotFound(host, store);
  const backup = m.backup[seq - 1];
  if (!backup)
    throw new UsageError(`host ${host} has no backup _${seq} in ${store} (it holds ${m.backup.length})`);
  const rescue = m.rescue.find((r) => r.id === backup.rescueId);
  const plan = {
    host,
    store,
    dryRun: true,
    backup: { id: backup.id, seq: backup.seq, takenAt: backup.takenAt, bytes: backup.size },
    rescue: rescue ? { id: rescue.id, seq: rescue.seq, bytes: rescue.size } : null,
    disks: rescue?.facts.disks ?? [],
  };
  if (json) return ctx.printJson(plan);
  ctx.print(
    `Would recover ${host} from backup _${backup.seq} (${formatBytes(backup.size)}) with rescue media ${rescue ? `_${rescue.seq}` : '(missing!)'} onto blank disks: ${plan.disks.map((d) => `${d.name} ${formatBytes(d.size)}`).join(', ')}`,
  );
}

const EXAMPLES: Record<string, readonly (readonly [string, string])[]> = {
  list: [['haven host list --json', 'the configured hosts with their newest backup and drill']],
  show: [['haven host show node1', 'node1’s settings and its last runs']],
  setup: [
    ['haven host setup node1 --dry-run', 'say what is missing on node1; change nothing'],
    ['haven host setup node1 --install', 'install ReaR where missing and write Haven’s configuration'],
  ],
  check: [['haven host check node1 --json', 'has node1’s disk layout changed since its rescue media?']],
  backup: [
    ['haven host backup node1', 'new rescue media if the layout needs them, then a new archive'],
    ['haven host backup node1 --dry-run', 'ReaR’s simulation; store nothing'],
  ],
  medium: [
    [
      'haven host medium node1 --store /srv/haven --to /dev/sdY --iso /dev/sdX',
      'the newest archive’s backup medium and its rescue ISO, each to a USB stick',
    ],
    ['haven host medium node1 --store /srv/haven --to node1-backup.img --dry-run', 'what would be written'],
  ],
  drill: [
    ['haven host drill node1 --store /srv/haven --marker login:', 'recover the newest archive in a VM'],
    ['haven host drill node1 --store /srv/haven --generation 2 --dry-run', 'what a drill of _2 would boot'],
  ],
};

function registerDrill(host: Command, context: () => CliContext): void {
  const drill = host
    .command('drill')
    .description('recover a stored host backup in an isolated VM and prove it boots')
    .argument('<host>', 'host name as stored')
    .requiredOption('--store <path>', 'the store at this DR site')
    .option('--marker <text>', 'recovered once the serial console shows this text')
    .option('--timeout <duration>', 'how long the recovered system may take to show its marker (5m)')
    .option('--recovery-timeout <duration>', 'how long rescue boot and rear recover may take (1h)')
    .option('--dry-run', 'say which backup and rescue media the drill would boot; boot nothing')
    .option('--json', 'print the result as JSON');
  generationOption(drill, 'recover');
  connectOption(drill);
  drill.action(async (name: string, flags: DrillFlags) => {
    const ctx = context();
    const config = await ctx.config();
    const { resolve } = await import('node:path');
    const storePath = resolve(flags.store);
    const configured = Object.values(config.drills).find((d) => d.store === storePath);
    const settings = configured ?? adHocDrill(storePath, { hosts: [name] });
    const marker = drillMarker(config, storePath, flags);
    const generation = flags.generation ?? 1;
    if (flags.dryRun) return drillPlan(ctx, storePath, name, generation, flags.json);
    const log = ctx.openRunLog('host-drill');
    const store = await openFsStore(storePath, { log });
    const descriptor = store.descriptor;
    await store.close();
    const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log });
    const events = new EventLog(catalog, Notifier.fromConfig(config.alerts, log), log);
    try {
      await interruptible('host drill', async (signal) => {
        const { result } = await runRecordedHostDrill({
          store: { location: storePath, descriptor },
          host: name,
          generation,
          marker,
          timeoutMs: flags.timeout ? parseDuration(flags.timeout) : settings.timeoutMs,
          recoveryTimeoutMs: flags.recoveryTimeout
            ? parseDuration(flags.recoveryTimeout)
            : settings.recoveryTimeoutMs,
          vm: settings.hostVm,
          virsh: new Virsh({ uri: flags.connect, log }),
          runDir: ctx.paths.runDir,
          log,
          signal,
          catalog,
          events,
          trigger: 'manual',
        });
        signal.throwIfAborted();
        if (flags.json) ctx.printJson(result);
        else {
          ctx.print(
            `Drill of host ${result.host}: ${result.result.toUpperCase()} in ${formatDuration(result.seconds * 1000)} (backup _${result.backup?.seq ?? '?'}, rescue media _${result.rescue?.seq ?? '?'})`,
          );
          if (result.detail) ctx.print(result.detail);
        }
        if (result.result !== 'pass') process.exitCode = EXIT_PARTIAL;
      });
    } finally {
      await events.flush();
      catalog.close();
    }
  });
}

interface MediumFlags {
  store: string;
  to: string;
  iso?: string;
  generation?: number;
  force?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

function printMedium(ctx: CliContext, r: HostMediumReport): void {
  const verb = r.dryRun ? 'Would write' : 'Wrote';
  const to = (o: HostMediumReport['medium']) => `${o.path}${o.device ? ' (device)' : ''}`;
  ctx.print(
    `${verb} the backup medium of ${r.host} to ${to(r.medium)}: ${formatBytes(r.medium.bytes)}, ext4 labelled HAVEN-BACKUP with haven/backup.tar.gz = backup _${r.backup.seq} (${formatBytes(r.backup.bytes)}, taken ${r.backup.takenAt})`,
  );
  if (r.iso && r.rescue) {
    ctx.print(`${verb} its rescue ISO _${r.rescue.seq} to ${to(r.iso)}: ${formatBytes(r.iso.bytes)}`);
  }
  ctx.print(
    r.digestChecked
      ? `The stored files matched their ${r.digest} digests before anything was written; done in ${formatDuration(r.seconds * 1000)}.`
      : 'Dry run: nothing was written; the files’ digests are checked when it writes.',
  );
}

function registerMedium(host: Command, context: () => CliContext): void {
  const medium = host
    .command('medium')
    .description('write a stored backup’s medium (and its rescue ISO) for a recovery on new hardware')
    .argument('<host>', 'host name as stored')
    .requiredOption('--store <path>', 'the store holding the host’s backups')
    .requiredOption('--to <file|device>', 'where the backup medium goes: a new file or a whole USB stick')
    .option('--iso <file|device>', 'also write the rescue ISO the backup names, here')
    .option('--force', 'overwrite an existing regular file')
    .option('--dry-run', 'check the outputs and say what would be written; write nothing')
    .option('--json', 'print the report as JSON');
  generationOption(medium, 'write');
  medium.action(async (name: string, flags: MediumFlags) => {
    const ctx = context();
    const { resolve } = await import('node:path');
    const log = flags.dryRun ? ctx.log : ctx.openRunLog('host-medium');
    const fs = await openFsStore(resolve(flags.store), { log });
    const store = { location: fs.location, descriptor: fs.descriptor };
    await fs.close();
    const bar = progressBar(ctx.stderr, ctx.progressMode(flags.json), 'medium');
    // Each phase (checking the digests, writing the ISO) has its own total and its own rate.
    let phaseOf = { phase: '', started: 0 };
    const r = await interruptible('host medium', (signal) =>
      writeHostMedium({
        store,
        host: name,
        output: flags.to,
        ...(flags.iso !== undefined ? { iso: flags.iso } : {}),
        generation: flags.generation ?? 1,
        force: flags.force === true,
        dryRun: flags.dryRun === true,
        runDir: ctx.paths.runDir,
        log,
        signal,
        onProgress: (phase, done, total) => {
          if (phaseOf.phase !== phase) phaseOf = { phase, started: performance.now() };
          bar.update({ ...readingSnapshot(done, total, performance.now() - phaseOf.started), phase });
        },
      }),
    ).finally(() => bar.stop());
    if (flags.json) return ctx.printJson(r);
    printMedium(ctx, r);
  });
}

export default function register(program: Command, context: () => CliContext): void {
  const host = program
    .command('host')
    .description('hypervisor hosts: rescue media and backups through Relax-and-Recover, and their drills');
  registerList(host, context);
  registerShow(host, context);
  registerSetup(host, context);
  registerCheck(host, context);
  registerBackup(host, context);
  registerMedium(host, context);
  registerDrill(host, context);
  examples(host, [
    ['haven host backup node1', 'store node1’s rescue media (when needed) and a new backup archive'],
    ['haven host drill node1 --store /srv/haven --marker login:', 'prove the newest archive recovers'],
  ]);
  for (const c of host.commands) examples(c, EXAMPLES[c.name()] ?? []);
}
