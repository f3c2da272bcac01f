/**
 * `haven activate [server...|--all] --store PATH`: start servers at the DR site from the store
 * alone (docs/recovery.md), and `haven deactivate <server> --store PATH`: give a DR copy up.
 */
import type { Command } from 'commander';
import { type HavenError, UsageError } from '../../core/errors.ts';
import { formatDuration } from '../../core/units.ts';
import {
  type ActivationReport,
  activateServers,
  DEFAULT_ACTIVATION_PARALLEL,
  deactivateServer,
  unknownServer,
} from '../../recovery/index.ts';
import { openStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { printNetworks } from '../networks-table.ts';
import {
  connectOption,
  examples,
  generationOption,
  intFlag,
  networkFlags,
  networkOptions,
} from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

interface ActivateFlags {
  store: string;
  all?: boolean;
  generation?: number;
  at?: string;
  dryRun?: boolean;
  force?: boolean;
  verify?: boolean;
  name?: string;
  primary?: string;
  connect?: string;
  networkMap?: Record<string, string>;
  mac?: string;
  parallel?: string;
  json?: boolean;
}

/** Prints the report; a refusal or failure sets the exit code of its kind. */
function finish(ctx: CliContext, report: ActivationReport, json: boolean, tz: string | undefined): void {
  if (json) {
    ctx.printJson({ ...report, firstError: undefined, ok: !report.firstError });
  } else {
    ctx.print(`${report.dryRun ? 'Plan (nothing changed)' : 'Activation'} from ${report.store}`);
    ctx.printTable(
      ['server', 'gen', timeHeader('taken at', tz), 'domain', 'status', 'to running', 'note'],
      report.servers.map((r) => [
        r.server,
        r.generation ? (r.point ? `point ${r.generation.id}` : `_${r.generation.seq}`) : '-',
        r.ageMs === undefined
          ? formatTime(r.generation?.takenAt, tz)
          : `${formatTime(r.generation?.takenAt, tz)} (${formatDuration(r.ageMs)} old)`,
        r.domain,
        r.status,
        r.seconds === undefined ? '-' : formatDuration(r.seconds * 1000),
        r.error
          ? `${r.error.code}: ${r.error.message}`
          : [
              r.force ? 'FORCED: the primary runs it' : '',
              r.primary
                ? r.primary.reachable
                  ? `primary ${r.primary.state ?? 'has no such domain'}${r.primary.guarded ? ', guarded' : ''}`
                  : 'primary unreachable'
                : '',
              r.moved.length ? `consoles moved to ${r.overlayDir}` : '',
            ]
              .filter(Boolean)
              .join('; '),
      ]),
    );
    printNetworks(ctx, report.servers);
  }
  const e: HavenError | undefined = report.firstError;
  if (e) {
    ctx.stderr.write(`haven: error [${e.code}]: ${e.message}\n${e.hint ? `  ${e.hint}\n` : ''}`);
    process.exitCode = exitCodeFor(e.kind);
  }
}

export default function register(program: Command, context: () => CliContext): void {
  const activate = program
    .command('activate')
    .description('start servers at the DR site from a store, as transient domains, in boot order')
    .argument('[server...]', 'servers to start (or --all)')
    .requiredOption('--store <path>', 'the store at this DR site')
    .option('--all', 'every server in the store');
  generationOption(activate, 'start')
    .option(
      '--at <time|point>',
      'start a point of the journal instead: its id, or a time (the newest point at or before it)',
    )
    .option('--dry-run', 'check everything and show the plan (networks included); change nothing')
    .option('--force', 'start even though the primary runs the server (recorded in the manifest)')
    .option('--verify', 'compare every chunk with its digest first (reads the whole generation)')
    .option('--name <domain>', 'run the (single) server under this domain name, with a new UUID')
    .option('--primary <uri|host>', 'the primary: libvirt URI (qemu+ssh://host/system) or ssh host')
    .option(
      '--parallel <n>',
      `servers of one boot priority started at once (default ${DEFAULT_ACTIVATION_PARALLEL}; 1: one after the other)`,
    );
  networkOptions(activate, 'keep');
  connectOption(activate).option('--json', 'print the report as JSON');
  examples(activate, [
    [
      'haven activate --all --store /srv/haven --dry-run',
      'check every server in the store and show the plan, networks included',
    ],
    [
      'haven activate --all --store /srv/haven --primary root@primary',
      'start every server in boot order; guard the primary if it answers',
    ],
    [
      'haven activate web01 --store /srv/haven --network-map prod-br=dr-br',
      'start web01 with its interfaces on bridge prod-br joining dr-br here',
    ],
    [
      'haven activate web01 --store /srv/haven --generation 2 --name web01-old --mac generate',
      'run the generation before the newest beside the first copy, with new MAC addresses',
    ],
    [
      'haven activate web01 --store /srv/haven --at 2026-05-04T10:15:00Z --dry-run',
      'show the plan for starting web01 from its journal as it was at 10:15 (UTC)',
    ],
  ]);
  activate.action(async (servers: string[], flags: ActivateFlags) => {
    const ctx = context();
    if (flags.at !== undefined && flags.generation !== undefined)
      throw new UsageError('name either --generation K or --at <time|point>, not both');
    const parallel = intFlag('parallel', flags.parallel, 1, 64);
    const log = flags.dryRun ? ctx.log : ctx.openRunLog('activate');
    const store = await openStore(flags.store, { log });
    try {
      const config = await ctx.config();
      await interruptible('activate', async (signal) => {
        const report = await activateServers({
          store,
          servers,
          all: flags.all,
          generation: flags.generation,
          ...(flags.at !== undefined ? { at: flags.at } : {}),
          dryRun: flags.dryRun,
          force: flags.force,
          verify: flags.verify,
          name: flags.name,
          primary: flags.primary,
          ...(parallel !== undefined ? { parallel } : {}),
          virsh: new Virsh({ uri: flags.connect, log }),
          rules: config.definitions,
          networks: { site: config.networks, flags: networkFlags(flags) },
          signal,
          log,
        });
        // Stopped between servers: what was started is reported, the rest was not touched.
        finish(ctx, report, Boolean(flags.json), await ctx.timeZone());
        signal.throwIfAborted();
      });
    } finally {
      await store.close();
    }
  });
  registerPriority(program, context);
  registerDeactivate(program, context);
}

function registerPriority(program: Command, context: () => CliContext): void {
  const priority = program
    .command('priority')
    .description('set the order in which `haven activate --all` starts a server (lower first; default 100)')
    .argument('<server>', 'the server in the store')
    .argument('<priority>', 'a whole number from 0 to 100000')
    .requiredOption('--store <path>', 'the store')
    .option('--dry-run', 'check the server and show the change; change nothing')
    .option('--json', 'print the result as JSON');
  examples(priority, [
    [
      'haven priority db01 10 --store /srv/haven',
      'start db01 before the servers of the default priority (100)',
    ],
    [
      'haven priority web01 200 --store /srv/haven --dry-run',
      'show what web01 would change from, without changing it',
    ],
  ]);
  priority.action(
    async (server: string, value: string, flags: { store: string; dryRun?: boolean; json?: boolean }) => {
      const ctx = context();
      const n = Number(value);
      if (!/^\d+$/.test(value) || n > 100_000)
        throw new UsageError(
          `priority must be a whole number from 0 to 100000, got ${JSON.stringify(value)}`,
        );
      const store = await openStore(flags.store, { log: ctx.log });
      try {
        const m = await store.manifest(server);
        if (!m) throw unknownServer(server, store.location, await store.listServers());
        const before = m.bootPriority ?? 100;
        if (!flags.dryRun) await store.setBootPriority(server, n);
        if (flags.json) ctx.printJson({ server, priority: n, before, dryRun: Boolean(flags.dryRun) });
        else
          ctx.print(`${server} ${flags.dryRun ? 'would boot' : 'boots'} with priority ${n} (was ${before})`);
      } finally {
        await store.close();
      }
    },
  );
}

interface DeactivateFlags {
  store: string;
  destroy?: boolean;
  connect?: string;
  dryRun?: boolean;
  json?: boolean;
}

function registerDeactivate(program: Command, context: () => CliContext): void {
  const deactivate = program
    .command('deactivate')
    .description('give up a DR copy without failing back (its changes since activation are lost)')
    .argument('<server>', 'the server active at the DR site')
    .requiredOption('--store <path>', 'the store at this DR site')
    .option('--destroy', 'stop the copy if it still runs')
    .option('--dry-run', 'check and say what would be done; change nothing');
  connectOption(deactivate).option('--json', 'print the result as JSON');
  examples(deactivate, [
    [
      'haven deactivate web01 --store /srv/haven --dry-run',
      'say whether the DR copy of web01 still runs and what giving it up would do',
    ],
    [
      'haven deactivate web01 --store /srv/haven --destroy',
      'stop the DR copy of web01 and give it up; replication may continue',
    ],
  ]);
  deactivate.action(async (server: string, flags: DeactivateFlags) => {
    const ctx = context();
    const log = flags.dryRun ? ctx.log : ctx.openRunLog('deactivate');
    const store = await openStore(flags.store, { log });
    try {
      const r = await deactivateServer({
        store,
        server,
        virsh: new Virsh({ uri: flags.connect, log }),
        destroy: flags.destroy,
        dryRun: flags.dryRun,
        log,
      });
      if (flags.json) ctx.printJson(r);
      else if (r.dryRun)
        ctx.print(
          `${server}: the DR copy (${r.domain}) would be given up${r.destroyed ? ' and stopped' : ''} (nothing changed)`,
        );
      else
        ctx.print(
          `${server}: the DR copy (${r.domain}) was given up${r.destroyed ? ' and stopped' : ''}; replication may continue`,
        );
    } finally {
      await store.close();
    }
  });
}
