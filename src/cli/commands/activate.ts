/**
 * `haven activate [server...|--all] --store PATH`: start servers at the DR site from the store
 * alone (docs/recovery.md), and `haven deactivate <server> --store PATH`: give a DR copy up.
 */
import type { Command } from 'commander';
import { type HavenError, UsageError } from '../../core/errors.ts';
import { formatDuration } from '../../core/units.ts';
import { type ActivationReport, activateServers, deactivateServer } from '../../recovery/index.ts';
import { openFsStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { formatTime, timeHeader } from '../when.ts';

interface ActivateFlags {
  store: string;
  all?: boolean;
  generation?: string;
  dryRun?: boolean;
  force?: boolean;
  verify?: boolean;
  name?: string;
  primary?: string;
  uri?: string;
  json?: boolean;
}

function seqFlag(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new UsageError(`--generation must be a whole number from 1 (newest) up, got ${JSON.stringify(v)}`);
  }
  return n;
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
        r.generation ? `_${r.generation.seq}` : '-',
        formatTime(r.generation?.takenAt, tz),
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
  }
  const e: HavenError | undefined = report.firstError;
  if (e) {
    ctx.stderr.write(`haven: error [${e.code}]: ${e.message}\n${e.hint ? `  ${e.hint}\n` : ''}`);
    process.exitCode = exitCodeFor(e.kind);
  }
}

export default function register(program: Command, context: () => CliContext): void {
  program
    .command('activate')
    .description('start servers at the DR site from a store, as transient domains, in boot order')
    .argument('[server...]', 'servers to start (or --all)')
    .requiredOption('--store <path>', 'the store at this DR site')
    .option('--all', 'every server in the store')
    .option('--generation <k>', 'generation to start: 1 = newest (default), 2 = the one before, …')
    .option('--dry-run', 'check everything and show the plan; change nothing')
    .option('--force', 'start even though the primary runs the server (recorded in the manifest)')
    .option('--verify', 'compare every chunk with its digest first (reads the whole generation)')
    .option('--name <domain>', 'run the (single) server under this domain name, with a new UUID')
    .option('--primary <uri|host>', 'the primary: libvirt URI (qemu+ssh://host/system) or ssh host')
    .option('--uri <uri>', 'libvirt URI at this site (default qemu:///system, or $HAVEN_LIBVIRT_URI)')
    .option('--json', 'print the report as JSON')
    .action(async (servers: string[], flags: ActivateFlags) => {
      const ctx = context();
      const log = flags.dryRun ? ctx.log : ctx.openRunLog('activate');
      const store = await openFsStore(flags.store, { log });
      try {
        await interruptible('activate', async (signal) => {
          const report = await activateServers({
            store,
            servers,
            all: flags.all,
            generation: seqFlag(flags.generation),
            dryRun: flags.dryRun,
            force: flags.force,
            verify: flags.verify,
            name: flags.name,
            primary: flags.primary,
            virsh: new Virsh({ uri: flags.uri, log }),
            rules: (await ctx.config()).definitions,
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

  program
    .command('priority')
    .description('set the order in which `haven activate --all` starts a server (lower first; default 100)')
    .argument('<server>', 'the server in the store')
    .argument('<priority>', 'a whole number from 0 to 100000')
    .requiredOption('--store <path>', 'the store')
    .action(async (server: string, priority: string, flags: { store: string }) => {
      const ctx = context();
      const n = Number(priority);
      if (!/^\d+$/.test(priority))
        throw new UsageError(`priority must be a whole number, got ${JSON.stringify(priority)}`);
      const store = await openFsStore(flags.store, { log: ctx.log });
      try {
        await store.setBootPriority(server, n);
        ctx.print(`${server} boots with priority ${n}`);
      } finally {
        await store.close();
      }
    });

  program
    .command('deactivate')
    .description('give up a DR copy without failing back (its changes since activation are lost)')
    .argument('<server>', 'the server active at the DR site')
    .requiredOption('--store <path>', 'the store at this DR site')
    .option('--destroy', 'stop the copy if it still runs')
    .option('--uri <uri>', 'libvirt URI at this site')
    .option('--json', 'print the result as JSON')
    .action(
      async (server: string, flags: { store: string; destroy?: boolean; uri?: string; json?: boolean }) => {
        const ctx = context();
        const log = ctx.openRunLog('deactivate');
        const store = await openFsStore(flags.store, { log });
        try {
          const r = await deactivateServer({
            store,
            server,
            virsh: new Virsh({ uri: flags.uri, log }),
            destroy: flags.destroy,
            log,
          });
          if (flags.json) ctx.printJson(r);
          else
            ctx.print(
              `${server}: the DR copy (${r.domain}) was given up${r.destroyed ? ' and stopped' : ''}; replication may continue`,
            );
        } finally {
          await store.close();
        }
      },
    );
}
