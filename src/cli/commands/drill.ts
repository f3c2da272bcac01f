/**
 * `haven drill [server...] --store PATH`: boot generations in isolation and record whether they
 * came up (docs/recovery.md). Settings come from flags, else from the configured drill named by
 * --drill, else from a configured drill of the same store. Results go into the store's manifests
 * and, as events, into this host's catalog: a failed drill opens a problem there and is alerted
 * (once per problem) on the configured channels; a passing one resolves it.
 */
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { catalogPath, openCatalog } from '../../catalog/catalog.ts';
import { adHocDrill, type BootMarker, type DrillConfig, type HavenConfig } from '../../core/config.ts';
import { UsageError } from '../../core/errors.ts';
import { checkName } from '../../core/names.ts';
import { formatDuration, parseDuration } from '../../core/units.ts';
import { runRecordedDrill } from '../../daemon/index.ts';
import type { HostDrillResult } from '../../hosts/index.ts';
import { EventLog, Notifier } from '../../jobs/index.ts';
import {
  type DrillPlan,
  type DrillReport,
  planDrill,
  type RunDrillDeps,
  unknownServer,
} from '../../recovery/index.ts';
import { openStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { printNetworks } from '../networks-table.ts';
import { connectOption, examples, generationOption, networkFlags, networkOptions } from '../options.ts';

interface DrillFlags {
  store?: string;
  drill?: string;
  generation?: number;
  /** A journal point (its id, or a time) instead of a generation: docs/continuous.md. */
  at?: string;
  marker?: string;
  agent?: boolean;
  timeout?: string;
  verify?: boolean;
  connect?: string;
  networks?: 'isolated' | 'mapped';
  networkMap?: Record<string, string>;
  mac?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** The drill settings these flags and the configuration give. */
export function drillSettings(config: HavenConfig, flags: DrillFlags): DrillConfig {
  if (flags.drill !== undefined) {
    const d = config.drills[flags.drill];
    if (!d) {
      throw new UsageError(
        `no drill ${JSON.stringify(flags.drill)} in the configuration`,
        `Configured drills: ${Object.keys(config.drills).join(', ') || '(none)'}.`,
      );
    }
    if (flags.store !== undefined && resolve(flags.store) !== resolve(d.store)) {
      throw new UsageError(
        `drill ${d.name} runs on ${d.store}, not ${flags.store}`,
        'Leave --store out, or give the drill’s store.',
      );
    }
    return d;
  }
  if (flags.store === undefined)
    throw new UsageError('give --store PATH, or --drill NAME from the configuration');
  const same = Object.values(config.drills).find((d) => resolve(d.store) === resolve(flags.store!));
  return same ?? adHocDrill(resolve(flags.store), { servers: ['*'] });
}

/**
 * What the drill's interfaces join: the configured drill's choice, unless the flags say; a
 * mapping flag asks for networks (over the drill's own mapping, if it has one).
 */
function withNetworks(settings: DrillConfig, flags: DrillFlags): DrillConfig {
  const mapping = flags.networkMap !== undefined || flags.mac !== undefined;
  if (flags.networks === 'isolated') {
    if (mapping)
      throw new UsageError(
        'an isolated drill has no interfaces: --network-map and --mac need --networks mapped',
      );
    return { ...settings, networks: 'isolated' };
  }
  if (flags.networks === 'mapped' || mapping)
    return { ...settings, networks: settings.networks === 'isolated' ? 'mapped' : settings.networks };
  return settings;
}

function markerFlag(flags: DrillFlags): BootMarker | undefined {
  if (flags.marker !== undefined && flags.agent)
    throw new UsageError('give --marker TEXT or --agent, not both');
  if (flags.marker !== undefined) {
    if (flags.marker === '') throw new UsageError('--marker needs the text the console prints once booted');
    return { serial: flags.marker };
  }
  return flags.agent ? { agent: true } : undefined;
}

/** Drill results as events: a failure opens the server's drill problem (alerted once), a pass closes it. */
function print(ctx: CliContext, r: DrillReport, hosts: HostDrillResult[]): void {
  const hostsPassed = hosts.filter((h) => h.result === 'pass').length;
  ctx.print(
    `Drill ${r.drill} on ${r.store}: ${r.passed + hostsPassed} passed, ${r.failed + hosts.length - hostsPassed} failed`,
  );
  ctx.printTable(
    ['server', 'gen', 'result', 'seconds', 'detail'],
    [
      ...r.results.map((x) => [
        x.server,
        x.generation ? `_${x.generation.seq}` : '-',
        x.result.toUpperCase(),
        formatDuration(x.seconds * 1000),
        x.detail ?? '',
      ]),
      ...hosts.map((h) => [
        `host ${h.host}`,
        h.backup ? `_${h.backup.seq}` : '-',
        h.result.toUpperCase(),
        formatDuration(h.seconds * 1000),
        h.detail?.split('\n')[0] ?? '',
      ]),
    ],
  );
}

function printPlan(ctx: CliContext, p: DrillPlan): void {
  ctx.print(`Plan of drill ${p.drill} on ${p.store} (nothing booted or recorded)`);
  ctx.printTable(
    ['server', 'gen', 'marker', 'timeout', 'networks', 'problem'],
    p.servers.map((x) => [
      x.server,
      x.generation ? `_${x.generation.seq}` : '-',
      x.marker ? ('serial' in x.marker ? JSON.stringify(x.marker.serial) : 'guest agent') : '-',
      formatDuration(x.timeoutMs),
      x.networks === 'isolated' ? 'isolated' : `${x.networks.length} mapped`,
      x.error ? `${x.error.code}: ${x.error.message}` : '',
    ]),
  );
  printNetworks(
    ctx,
    p.servers.map((x) => ({ server: x.server, networks: x.networks === 'isolated' ? [] : x.networks })),
  );
}

/** Names given on the command line must be in the store: a typo is not a failed drill. */
async function checkServers(
  store: string,
  servers: string[],
  journals: boolean,
  log: CliContext['log'],
): Promise<void> {
  if (!servers.length) return;
  const s = await openStore(store, { log });
  try {
    const known = journals ? await s.listJournals() : await s.listServers();
    for (const name of servers) {
      checkName('server', name);
      if (!known.includes(name)) throw unknownServer(name, s.location, known);
    }
  } finally {
    await s.close();
  }
}

function checkMarker(settings: DrillConfig, servers: string[], marker: BootMarker | undefined): void {
  if (marker || settings.bootMarker) return;
  const missing = (servers.length ? servers : ['*']).some((s) => !settings.overrides[s]?.bootMarker);
  if (missing) {
    throw new UsageError(
      'no boot marker: nothing tells when a server has booted',
      'Give --marker TEXT or --agent, or configure drills.<name>.boot_marker for this store.',
    );
  }
}

async function runDrillCommand(ctx: CliContext, servers: string[], flags: DrillFlags): Promise<void> {
  const config = await ctx.config();
  const settings = withNetworks(drillSettings(config, flags), flags);
  const marker = markerFlag(flags);
  const timeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout);
  const log = flags.dryRun ? ctx.log : ctx.openRunLog('drill');
  if (flags.at !== undefined && flags.generation !== undefined) {
    throw new UsageError('name either --generation K or --at <time|point>, not both');
  }
  await checkServers(settings.store, servers, flags.at !== undefined, log);
  checkMarker(settings, servers, marker);
  const deps: RunDrillDeps = {
    virsh: new Virsh({ uri: flags.connect, log }),
    runDir: ctx.paths.runDir,
    rules: config.definitions,
    networks: { site: config.networks, flags: networkFlags(flags) },
    log,
    ...(servers.length ? { servers } : {}),
    ...(marker ? { marker } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(flags.generation !== undefined ? { generation: flags.generation } : {}),
    ...(flags.at !== undefined ? { at: flags.at } : {}),
    ...(flags.verify ? { verify: true } : {}),
  };
  if (flags.dryRun) {
    const plan = await planDrill(settings, deps);
    if (flags.json) ctx.printJson(plan);
    else printPlan(ctx, plan);
    if (!plan.ok) process.exitCode = EXIT_PARTIAL;
    return;
  }
  const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log });
  const events = new EventLog(catalog, Notifier.fromConfig(config.alerts, log), log);
  try {
    await interruptible('drill', async (signal) => {
      const { report, hosts } = await runRecordedDrill({
        ...deps,
        settings,
        catalog,
        events,
        trigger: 'manual',
        ...(log.filePath ? { logFile: log.filePath } : {}),
        signal,
      });
      // Stopped: the drill removed its domains and recorded what it saw; no verdict on the rest.
      signal.throwIfAborted();
      if (flags.json) ctx.printJson(hosts.length ? { ...report, hosts } : report);
      else print(ctx, report, hosts);
      if (report.failed > 0 || hosts.some((h) => h.result !== 'pass')) process.exitCode = EXIT_PARTIAL;
    });
  } finally {
    await events.flush();
    catalog.close();
  }
}

export default function register(program: Command, context: () => CliContext): void {
  const drill = program
    .command('drill')
    .description('boot generations in isolation, wait for their boot marker, record pass or fail')
    .argument('[server...]', 'servers to drill (default: what the drill selects, or all in the store)')
    .option('--store <path>', 'the store at this DR site')
    .option(
      '--drill <name>',
      'take store, servers, marker, timeouts and networks from this configured drill',
    );
  generationOption(drill, 'boot')
    .option(
      '--at <time|point>',
      'boot a point of the journal instead: its id, or a time (docs/continuous.md)',
    )
    .option('--marker <text>', 'booted once the serial console shows this text')
    .option('--agent', 'booted once the guest agent answers')
    .option('--timeout <duration>', 'how long a server may take to show its marker (default 5m)')
    .option('--verify', 'compare every chunk with its digest before booting')
    .addOption(
      new Option(
        '--networks <mode>',
        'isolated: no network interfaces (the default); mapped: interfaces on the networks the mapping names',
      ).choices(['isolated', 'mapped']),
    );
  networkOptions(drill, 'generate');
  drill.option('--dry-run', 'check every server and show the plan; boot and record nothing');
  connectOption(drill).option('--json', 'print the report as JSON');
  examples(drill, [
    [
      'haven drill --store /srv/haven --marker login:',
      'boot the newest generation of every server in the store, with no network',
    ],
    ['haven drill --drill weekly --dry-run', 'check what the configured drill weekly would boot, and how'],
    [
      'haven drill web01 --store /srv/haven --agent --network-map prod-br=drill-br',
      'boot web01 with its interfaces on bridge drill-br and wait for its guest agent',
    ],
    [
      'haven drill db01 --store /srv/haven --generation 3 --marker "db ready" --timeout 10m',
      'prove the third-newest generation of db01 still boots',
    ],
  ]);
  drill.action(async (servers: string[], flags: DrillFlags) => runDrillCommand(context(), servers, flags));
}
