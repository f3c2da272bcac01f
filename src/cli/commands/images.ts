/**
 * `haven images [server] --store PATH`: the generations a store holds, read from the store's own
 * manifests (DESIGN §4.4: works at the DR site with nothing else). Hosts' rescue media and backup
 * archives (docs/hosts.md) follow in a table of their own; `--hosts` lists only them (as JSON: the
 * host manifests).
 */
import type { Command } from 'commander';
import { HavenError } from '../../core/errors.ts';
import { formatBytes } from '../../core/units.ts';
import { type HostManifest, HostStore } from '../../store/host/index.ts';
import { openFsStore, type ServerManifest } from '../../store/index.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

function printHosts(ctx: CliContext, hosts: HostManifest[], tz: string | undefined): void {
  const rows: string[][] = [];
  for (const m of hosts) {
    for (const g of [...m.rescue, ...m.backup]) {
      const tested = g.tests.at(-1);
      rows.push([
        m.host,
        g.kind,
        `_${g.seq}`,
        formatTime(g.takenAt, tz),
        formatBytes(g.size),
        tested ? `${tested.kind} ${tested.result} ${formatTime(tested.at, tz)}` : '-',
      ]);
    }
  }
  ctx.printTable(['host', 'file', 'gen', timeHeader('taken at', tz), 'size', timeHeader('tested', tz)], rows);
}

/** The host manifests to list: all, or the one `server` names when it is a host. */
async function hostManifests(store: HostStore, server: string | undefined) {
  const names = await store.listHosts();
  const hosts: HostManifest[] = [];
  for (const h of names) {
    const m = server === undefined || server === h ? await store.manifest(h) : null;
    if (m) hosts.push(m);
  }
  return { hosts, isHost: server !== undefined && names.includes(server) };
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('images')
    .description('list the generations of each server in a store')
    .argument('[server]', 'only this server')
    .requiredOption('--store <path>', 'the store directory')
    .option('--hosts', 'only the hosts’ rescue media and backup archives')
    .option('--json', 'print as JSON');
  examples(command, [
    ['haven images --store /srv/haven', 'every server in the store with its generations'],
    ['haven images web01 --store /srv/haven --json', 'the generations of web01, as JSON'],
    ['haven images --hosts --store /srv/haven', 'the hosts’ rescue media and backup archives'],
  ]);
  command.action(
    async (server: string | undefined, flags: { store: string; hosts?: boolean; json?: boolean }) => {
      const ctx = context();
      const store = await openFsStore(flags.store, { log: ctx.log });
      try {
        const { hosts, isHost } = await hostManifests(
          new HostStore(store.location, store.descriptor, { log: ctx.log }),
          server,
        );
        if (flags.hosts || isHost) {
          if (flags.json) ctx.printJson(hosts);
          else printHosts(ctx, hosts, await ctx.timeZone());
          return;
        }
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
          [
            'server',
            'gen',
            timeHeader('taken at', tz),
            'mode',
            'disks',
            'delta',
            timeHeader('tested', tz),
            '',
          ],
          rows,
        );
        if (hosts.length) printHosts(ctx, hosts, tz);
      } finally {
        await store.close();
      }
    },
  );
}
