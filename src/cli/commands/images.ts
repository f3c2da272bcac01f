/**
 * `haven images [server] --store PATH`: the generations a store holds, read from the store's own
 * manifests (DESIGN §4.4: works at the DR site with nothing else).
 */
import type { Command } from 'commander';
import { HavenError } from '../../core/errors.ts';
import { formatBytes } from '../../core/units.ts';
import { openFsStore, type ServerManifest } from '../../store/index.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('images')
    .description('list the generations of each server in a store')
    .argument('[server]', 'only this server')
    .requiredOption('--store <path>', 'the store directory')
    .option('--json', 'print as JSON');
  examples(command, [
    ['haven images --store /srv/haven', 'every server in the store with its generations'],
    ['haven images web01 --store /srv/haven --json', 'the generations of web01, as JSON'],
  ]);
  command.action(async (server: string | undefined, flags: { store: string; json?: boolean }) => {
    const ctx = context();
    const store = await openFsStore(flags.store, { log: ctx.log });
    try {
      const names = server ? [server] : await store.listServers();
      const manifests: ServerManifest[] = [];
      for (const name of names) {
        const m = await store.manifest(name);
        if (!m && server) {
          throw new HavenError('STORE_SERVER_NOT_FOUND', `${flags.store} holds no copy of ${server}`, {
            kind: 'not-found',
            hint: 'List the servers it holds with `haven images --store PATH`.',
          });
        }
        if (m) manifests.push(m);
      }
      if (flags.json) {
        ctx.printJson(manifests.map(({ sourceDefinition: _d, ...m }) => m));
        return;
      }
      const tz = await ctx.timeZone();
      const rows: string[][] = [];
      for (const m of manifests) {
        for (const g of m.generations) {
          const tested = g.tests.at(-1);
          rows.push([
            m.server,
            `_${g.seq}`,
            formatTime(g.takenAt, tz),
            g.mode,
            g.disks.map((d) => `${g.disks.length > 1 ? `${d.name}:` : ''}${formatBytes(d.size)}`).join(' '),
            formatBytes(g.deltaBytes),
            tested ? `${tested.kind} ${tested.result} ${formatTime(tested.at, tz)}` : '-',
            m.activeAtDr?.generationId === g.id ? 'ACTIVE AT DR' : '',
          ]);
        }
      }
      ctx.printTable(
        ['server', 'gen', timeHeader('taken at', tz), 'mode', 'disks', 'delta', timeHeader('tested', tz), ''],
        rows,
      );
    } finally {
      await store.close();
    }
  });
}
