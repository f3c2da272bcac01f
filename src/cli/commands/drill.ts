/**
 * `haven drill [server...] --store PATH`: boot generations in isolation and record whether they
 * came up (docs/recovery.md). Settings come from flags, else from the configured drill named by
 * --drill, else from a configured drill of the same store. Results go into the store's manifests
 * and, as events, into this host's catalog: a failed drill opens a problem there and is alerted
 * (once per problem) on the configured channels; a passing one resolves it.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { catalogPath, openCatalog } from '../../catalog/catalog.ts';
import type { BootMarker, DrillConfig, HavenConfig } from '../../core/config.ts';
import { UsageError } from '../../core/errors.ts';
import { checkName } from '../../core/names.ts';
import { formatDuration, parseDuration } from '../../core/units.ts';
import { runRecordedDrill } from '../../daemon/index.ts';
import { EventLog, Notifier } from '../../jobs/index.ts';
import { type DrillReport, unknownServer } from '../../recovery/index.ts';
import { openFsStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';

interface DrillFlags {
  store?: string;
  drill?: string;
  generation?: string;
  at?: string;
  marker?: string;
  agent?: boolean;
  timeout?: string;
  verify?: boolean;
  uri?: string;
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
  return (
    same ?? {
      name: 'manual',
      store: resolve(flags.store),
      servers: ['*'],
      schedule: undefined,
      bootMarker: undefined,
      timeoutMs: 300_000,
      overrides: {},
    }
  );
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
function print(ctx: CliContext, r: DrillReport): void {
  ctx.print(`Drill ${r.drill} on ${r.store}: ${r.passed} passed, ${r.failed} failed`);
  ctx.printTable(
    ['server', 'gen', 'result', 'seconds', 'detail'],
    r.results.map((x) => [
      x.server,
      x.generation ? `_${x.generation.seq}` : '-',
      x.result.toUpperCase(),
      formatDuration(x.seconds * 1000),
      x.detail ?? '',
    ]),
  );
}

export default function register(program: Command, context: () => CliContext): void {
  program
    .command('drill')
    .description('boot generations in isolation, wait for their boot marker, record pass or fail')
    .argument('[server...]', 'servers to drill (default: what the drill selects, or all in the store)')
    .option('--store <path>', 'the store at this DR site')
    .option('--drill <name>', 'take store, servers, marker and timeouts from this configured drill')
    .option('--generation <k>', 'generation to boot: 1 = newest (default)')
    .option(
      '--at <time|point>',
      'boot a point of the journal instead: its id, or a time (docs/continuous.md)',
    )
    .option('--marker <text>', 'booted once the serial console shows this text')
    .option('--agent', 'booted once the guest agent answers')
    .option('--timeout <duration>', 'how long a server may take to show its marker (default 5m)')
    .option('--verify', 'compare every chunk with its digest before booting')
    .option('--uri <uri>', 'libvirt URI at this site')
    .option('--json', 'print the report as JSON')
    .action(async (servers: string[], flags: DrillFlags) => {
      const ctx = context();
      const settings = drillSettings(await ctx.config(), flags);
      const marker = markerFlag(flags);
      const timeoutMs = flags.timeout === undefined ? undefined : parseDuration(flags.timeout);
      let generation: number | undefined;
      if (flags.generation !== undefined) {
        generation = Number(flags.generation);
        if (!Number.isInteger(generation) || generation < 1)
          throw new UsageError('--generation must be 1 (newest) or more');
      }
      if (flags.at !== undefined && flags.generation !== undefined) {
        throw new UsageError('name either --generation K or --at <time|point>, not both');
      }
      const log = ctx.openRunLog('drill');
      if (servers.length) {
        // Names are checked before anything runs: a typo is not a failed drill.
        const store = await openFsStore(settings.store, { log });
        try {
          const known = flags.at === undefined ? await store.listServers() : await store.listJournals();
          for (const s of servers) {
            checkName('server', s);
            if (!known.includes(s)) throw unknownServer(s, store.location, known);
          }
        } finally {
          await store.close();
        }
      }
      if (!marker && !settings.bootMarker) {
        const missing = (servers.length ? servers : ['*']).some((s) => !settings.overrides[s]?.bootMarker);
        if (missing) {
          throw new UsageError(
            'no boot marker: nothing tells when a server has booted',
            'Give --marker TEXT or --agent, or configure drills.<name>.boot_marker for this store.',
          );
        }
      }
      const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log });
      const events = new EventLog(catalog, Notifier.fromConfig((await ctx.config()).alerts, log), log);
      try {
        await interruptible('drill', async (signal) => {
          const { report } = await runRecordedDrill({
            settings,
            catalog,
            events,
            trigger: 'manual',
            ...(log.filePath ? { logFile: log.filePath } : {}),
            virsh: new Virsh({ uri: flags.uri, log }),
            runDir: ctx.paths.runDir,
            rules: (await ctx.config()).definitions,
            log,
            ...(servers.length ? { servers } : {}),
            ...(marker ? { marker } : {}),
            ...(timeoutMs !== undefined ? { timeoutMs } : {}),
            ...(generation !== undefined ? { generation } : {}),
            ...(flags.at !== undefined ? { at: flags.at } : {}),
            ...(flags.verify ? { verify: true } : {}),
            signal,
          });
          // Stopped: the drill removed its domains and recorded what it saw; no verdict on the rest.
          signal.throwIfAborted();
          if (flags.json) ctx.printJson(report);
          else print(ctx, report);
          if (report.failed > 0) process.exitCode = EXIT_PARTIAL;
        });
      } finally {
        await events.flush();
        catalog.close();
      }
    });
}
