/**
 * `haven switchover <server> --store PATH --primary P`: a planned move of a continuously
 * protected server to the DR site with no write lost (recovery/switchover.ts, docs/continuous.md
 * "Planned switchover"). Run at the DR site.
 */
import type { Command } from 'commander';
import { formatDuration, parseDuration } from '../../core/units.ts';
import { type SwitchoverProgress, type SwitchoverReport, switchover } from '../../recovery/switchover.ts';
import { openFsStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { printNetworks } from '../networks-table.ts';
import { connectOption, examples, networkFlags, networkOptions } from '../options.ts';

interface SwitchoverFlags {
  store: string;
  primary: string;
  name?: string;
  shutdownTimeout: string;
  drainTimeout: string;
  dryRun?: boolean;
  networkMap?: Record<string, string>;
  mac?: string;
  connect?: string;
  json?: boolean;
}

function printReport(ctx: CliContext, r: SwitchoverReport, store: string): void {
  const a = r.activation;
  if (r.dryRun) {
    ctx.print(
      `Plan (nothing changed): shut ${r.server} down on ${r.primary}, wait for the point taken from its shut-off disks, start it here${a ? ` as ${a.domain}` : ''}`,
    );
    ctx.print(`newest point now: ${r.before ? `${r.before.id} (${r.before.takenAt})` : '-'}`);
  } else if (a?.status === 'running') {
    ctx.print(
      `${r.server} runs at the DR site as ${a.domain}, from point ${r.final?.id} (${r.final?.takenAt})`,
    );
    ctx.print(
      `shut down on the primary in ${formatDuration(r.shutdownMs ?? 0)}, final point here ${formatDuration(r.drainMs ?? 0)} later: no write lost`,
    );
    ctx.print(
      `the primary is guarded; \`haven failback ${r.server} --store ${store} --to <primary>\` moves it back`,
    );
  }
  if (a) printNetworks(ctx, [a]);
  if (r.restartedOnPrimary) ctx.print(`${r.server} was started on the primary again`);
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('switchover')
    .description(
      'move a continuously protected server to the DR site with no write lost: shut it down on the primary, wait for its last writes, start it here',
    )
    .argument('<server>', 'the server, protected with `haven protect --continuous` to this store')
    .requiredOption('--store <path>', 'the store at this DR site')
    .requiredOption('--primary <uri|host>', 'the primary: libvirt URI (qemu+ssh://host/system) or ssh host')
    .option('--name <domain>', 'run the server here under this domain name, with a new UUID')
    .option('--shutdown-timeout <duration>', 'how long the guest may take to shut down on the primary', '5m')
    .option('--drain-timeout <duration>', 'how long its last writes may take to reach the store', '5m')
    .option('--dry-run', 'check the primary, the journal and the activation; change nothing');
  networkOptions(command, 'keep');
  connectOption(command).option('--json', 'print the report as JSON');
  examples(command, [
    [
      'haven switchover web01 --store /srv/haven --primary root@primary --dry-run',
      'check that web01 can be moved here and show the plan',
    ],
    [
      'haven switchover web01 --store /srv/haven --primary qemu+ssh://root@primary/system',
      'move web01 here for maintenance of the primary; `haven failback` moves it back',
    ],
  ]);
  command.action(async (server: string, flags: SwitchoverFlags) => {
    const ctx = context();
    const shutdownTimeoutMs = parseDuration(flags.shutdownTimeout);
    const drainTimeoutMs = parseDuration(flags.drainTimeout);
    const log = flags.dryRun ? ctx.log : ctx.openRunLog(`switchover-${server}`);
    const store = await openFsStore(flags.store, { log });
    const progress = progressLines(ctx, flags.json);
    try {
      const config = await ctx.config();
      await interruptible('switchover', async (signal) => {
        const report = await switchover({
          store,
          server,
          primary: flags.primary,
          name: flags.name,
          shutdownTimeoutMs,
          drainTimeoutMs,
          dryRun: flags.dryRun,
          virsh: new Virsh({ uri: flags.connect, log }),
          rules: config.definitions,
          networks: { site: config.networks, flags: networkFlags(flags) },
          signal,
          log,
          onProgress: progress,
        });
        if (flags.json) ctx.printJson({ ...report, firstError: undefined, ok: !report.firstError });
        else printReport(ctx, report, flags.store);
        const e = report.firstError;
        if (e) {
          ctx.stderr.write(`haven: error [${e.code}]: ${e.message}\n${e.hint ? `  ${e.hint}\n` : ''}`);
          process.exitCode = exitCodeFor(e.kind);
        }
      });
    } finally {
      await store.close();
    }
  });
}

/**
 * The waits are for the guest and for the link, not for bytes Haven moves: a line on stderr at
 * each phase and every 10 s within one, rather than a bar (none with --json or -q).
 */
function progressLines(ctx: CliContext, json?: boolean): (p: SwitchoverProgress) => void {
  if (ctx.progressMode(json) === 'off') return () => {};
  let phase = '';
  let at = 0;
  return (p) => {
    if (p.phase === phase && Date.now() - at < 10_000) return;
    phase = p.phase;
    at = Date.now();
    ctx.stderr.write(`switchover ${phaseText(p)}\n`);
  };
}

function phaseText(p: SwitchoverProgress): string {
  const waited = formatDuration(p.waitedMs);
  if (p.phase === 'shutdown') return `shutting down on the primary (${waited})`;
  if (p.phase === 'drain')
    return `waiting for the last writes (${waited}; newest point ${p.newest?.id ?? '-'})`;
  return `starting from point ${p.newest?.id ?? '-'}`;
}
