/**
 * `haven restore <server> --store PATH --generation K --to DIR [--name NEW] [--format qcow2|raw]`:
 * write a generation back as images and define the server (docs/recovery.md); with
 * `--at <time|point>` instead of --generation, a point of the server's journal
 * (docs/continuous.md).
 */
import type { Command } from 'commander';
import { UsageError } from '../../core/errors.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { type RestoreFormat, restorePoint, restoreServer } from '../../recovery/index.ts';
import { openFsStore } from '../../store/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { interruptible } from '../interrupt.ts';
import { progressBar } from '../progress-bar.ts';

interface RestoreFlags {
  store: string;
  generation?: string;
  at?: string;
  to: string;
  name?: string;
  format: string;
  define: boolean;
  verify: boolean;
  uri?: string;
  json?: boolean;
}

export default function register(program: Command, context: () => CliContext): void {
  program
    .command('restore')
    .description('write a generation back as disk images and define the server')
    .argument('<server>', 'the server in the store')
    .requiredOption('--store <path>', 'the store holding it')
    .option('--generation <k>', 'generation: 1 = newest, 2 = the one before, …')
    .option(
      '--at <time|point>',
      'a point of the journal: its id, or a time (the newest point at or before it)',
    )
    .requiredOption(
      '--to <dir>',
      'directory for the images (created if missing; nothing in it is overwritten)',
    )
    .option('--name <name>', 'define the server under this name, with a new UUID')
    .option('--format <format>', 'image format: raw or qcow2', 'raw')
    .option('--no-define', 'only write the images')
    .option('--no-verify', 'do not check the digests while reading (faster, trusts the store)')
    .option('--uri <uri>', 'libvirt URI to define the server in')
    .option('--json', 'print the result as JSON')
    .action(async (server: string, flags: RestoreFlags) => {
      const ctx = context();
      if ((flags.generation === undefined) === (flags.at === undefined)) {
        throw new UsageError('name what to restore: --generation K or --at <time|point> (one of them)');
      }
      const seq = Number(flags.generation ?? 1);
      if (!Number.isInteger(seq) || seq < 1) throw new UsageError('--generation must be 1 (newest) or more');
      if (flags.format !== 'raw' && flags.format !== 'qcow2') {
        throw new UsageError(`--format must be raw or qcow2, got ${JSON.stringify(flags.format)}`);
      }
      const log = ctx.openRunLog(`restore-${server}`);
      const store = await openFsStore(flags.store, { log });
      const bar = progressBar(ctx.stderr, ctx.interactive && !flags.json, server);
      try {
        const rules = (await ctx.config()).definitions;
        const r = await interruptible(`restore ${server}`, (signal) =>
          (flags.at === undefined ? restoreServer : restorePoint)({
            store,
            server,
            generation: seq,
            at: flags.at ?? '',
            to: flags.to,
            name: flags.name,
            format: flags.format as RestoreFormat,
            define: flags.define,
            verify: flags.verify,
            virsh: new Virsh({ uri: flags.uri, log }),
            onProgress: (s) => bar.update(s),
            rules,
            signal,
            log,
          }),
        );
        bar.stop();
        if (flags.json) {
          ctx.printJson(r);
          return;
        }
        ctx.print(
          `${server} ${flags.at === undefined ? `generation _${r.generation.seq}` : `point ${r.generation.id}`} (taken ${r.generation.takenAt}) restored in ${formatDuration(r.seconds * 1000)}${r.defined ? `, defined as ${r.name}` : ''}`,
        );
        ctx.printTable(
          ['disk', 'image', 'size', 'allocated'],
          r.disks.map((d) => [d.disk, d.path, formatBytes(d.size), formatBytes(d.allocated)]),
        );
      } catch (e) {
        bar.stop();
        throw e;
      } finally {
        await store.close();
      }
    });
}
