/**
 * `haven restore <server> --store PATH --to DIR [--generation K] [--name NEW] [--format qcow2|raw]`:
 * write a generation (the newest unless told) back as images and define the server, its
 * interfaces mapped to this host's networks (docs/recovery.md); with `--at <time|point>` instead
 * of --generation, a point of the server's journal (docs/continuous.md).
 */
import { type Command, Option } from 'commander';
import { UsageError } from '../../core/errors.ts';
import { timeZoneName } from '../../core/time-format.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { type RestoreFormat, type RestoreResult, restorePoint, restoreServer } from '../../recovery/index.ts';
import { openStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { interruptible } from '../interrupt.ts';
import { printNetworks } from '../networks-table.ts';
import { connectOption, examples, generationOption, networkFlags, networkOptions } from '../options.ts';
import { progressBar } from '../progress-bar.ts';
import { formatTime } from '../when.ts';

interface RestoreFlags {
  store: string;
  generation?: number;
  at?: string;
  to: string;
  name?: string;
  format: RestoreFormat;
  define: boolean;
  verify: boolean;
  connect?: string;
  networkMap?: Record<string, string>;
  mac?: string;
  dryRun?: boolean;
  json?: boolean;
}

function printResult(ctx: CliContext, r: RestoreResult, define: boolean, tz: string | undefined): void {
  const taken = `${formatTime(r.generation.takenAt, tz)} ${timeZoneName(tz)}`;
  const what = `${r.server} ${r.point ? `point ${r.generation.id}` : `generation _${r.generation.seq}`} (taken ${taken})`;
  if (r.dryRun)
    ctx.print(
      `Plan (nothing written): ${what} would be restored${define ? ` and defined as ${r.name}` : ''}`,
    );
  else
    ctx.print(
      `${what} restored in ${formatDuration(r.seconds * 1000)}${r.defined ? `, defined as ${r.name}` : ''}`,
    );
  ctx.printTable(
    ['disk', 'image', 'size', 'allocated'],
    r.disks.map((d) => [d.disk, d.path, formatBytes(d.size), r.dryRun ? '-' : formatBytes(d.allocated)]),
  );
  printNetworks(ctx, [r]);
}

export default function register(program: Command, context: () => CliContext): void {
  const restore = program
    .command('restore')
    .description('write a generation back as disk images and define the server')
    .argument('<server>', 'the server in the store')
    .requiredOption('--store <path>', 'the store holding it')
    .requiredOption(
      '--to <dir>',
      'directory for the images (created if missing; nothing in it is overwritten)',
    );
  generationOption(restore, 'restore')
    .option(
      '--at <time|point>',
      'a point of the journal: its id, or a time (the newest point at or before it)',
    )
    .option('--name <name>', 'define the server under this name, with a new UUID')
    .addOption(new Option('--format <format>', 'image format').choices(['raw', 'qcow2']).default('raw'))
    .option('--no-define', 'only write the images')
    .option('--no-verify', 'do not check the digests while reading (faster, trusts the store)');
  networkOptions(restore, 'keep');
  restore.option('--dry-run', 'check everything and show what would be written and defined; write nothing');
  connectOption(restore, 'to define the server in').option('--json', 'print the result as JSON');
  examples(restore, [
    [
      'haven restore web01 --store /srv/haven --to /var/lib/libvirt/images',
      'write the newest generation of web01 back and define it',
    ],
    [
      'haven restore web01 --store /srv/haven --to /srv/old --generation 3 --name web01-old --dry-run',
      'show what restoring the third-newest generation as web01-old would write',
    ],
    [
      'haven restore web01 --store /srv/haven --to /srv/pit --at 2026-12-05T21:15:00Z --name web01-pit',
      'restore web01 as it was at 21:15 UTC (a point of its journal, docs/continuous.md)',
    ],
    [
      'haven restore db01 --store /srv/haven --to /var/lib/libvirt/images --format qcow2 --network-map dr-br=prod-br',
      'restore db01 as qcow2 onto a host whose bridge is prod-br',
    ],
  ]);
  restore.action(async (server: string, flags: RestoreFlags) => {
    const ctx = context();
    if (flags.at !== undefined && flags.generation !== undefined) {
      throw new UsageError('name either --generation K or --at <time|point>, not both');
    }
    const log = flags.dryRun ? ctx.log : ctx.openRunLog(`restore-${server}`);
    const store = await openStore(flags.store, { log });
    const bar = progressBar(ctx.stderr, ctx.progressMode(flags.json || flags.dryRun), server);
    try {
      const config = await ctx.config();
      const r = await interruptible(`restore ${server}`, (signal) =>
        (flags.at === undefined ? restoreServer : restorePoint)({
          store,
          server,
          generation: flags.generation ?? 1,
          at: flags.at ?? '',
          to: flags.to,
          name: flags.name,
          format: flags.format,
          define: flags.define,
          verify: flags.verify,
          virsh: new Virsh({ uri: flags.connect, log }),
          onProgress: (s) => bar.update(s),
          rules: config.definitions,
          networks: { site: config.networks, flags: networkFlags(flags) },
          dryRun: flags.dryRun,
          signal,
          log,
        }),
      );
      bar.stop();
      if (flags.json) ctx.printJson(r);
      else printResult(ctx, r, flags.define, await ctx.timeZone());
    } catch (e) {
      bar.stop();
      throw e;
    } finally {
      await store.close();
    }
  });
}
