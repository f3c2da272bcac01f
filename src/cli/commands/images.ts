/**
 * `haven images [server] --store PATH [--points]`: the generations a store holds, read from the
 * store's own manifests (docs/design.md §4.4: works at the DR site with nothing else), and the
 * point-in-time journal of servers protected continuously (docs/continuous.md): its window
 * (oldest and newest point, count), and with --points every point `--at` can select. Hosts'
 * rescue media and backup archives (docs/hosts.md) follow in a table of their own; `--hosts` lists
 * only them (as JSON: the host manifests).
 */
import type { Command } from 'commander';
import { HavenError } from '../../core/errors.ts';
import { formatBytes, formatDuration } from '../../core/units.ts';
import { type HostManifest, HostStore } from '../../store/host/index.ts';
import { type AnyStore, openStore, type ServerManifest } from '../../store/index.ts';
import type { JournalInfo, JournalPoint } from '../../store/types.ts';
import type { CliContext } from '../context.ts';
import { examples } from '../options.ts';
import { formatTime, timeHeader } from '../when.ts';

type Listed = Omit<ServerManifest, 'sourceDefinition'> & {
  journal?: JournalInfo;
  points?: JournalPoint[];
};

function generationRows(listed: Listed[], tz: string | undefined): string[][] {
  const rows: string[][] = [];
  for (const m of listed) {
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
  return rows;
}

function printJournals(ctx: CliContext, listed: Listed[], tz: string | undefined): void {
  const journals = listed.filter((m) => m.journal);
  if (journals.length === 0) return;
  ctx.print('');
  ctx.printTable(
    ['server', 'journal', 'points', timeHeader('oldest point', tz), timeHeader('newest point', tz), 'state'],
    journals.map((m) => {
      const j = m.journal as JournalInfo;
      return [
        m.server,
        formatDuration(j.windowMs),
        String(j.points),
        j.oldest ? formatTime(j.oldest.takenAt, tz) : '-',
        j.newest ? `${j.newest.id} ${formatTime(j.newest.takenAt, tz)}` : '-',
        j.tail && !j.tail.consistent ? 'resyncing' : 'consistent',
      ];
    }),
  );
  for (const m of journals) {
    if (!m.points) continue;
    ctx.print('');
    ctx.printTable(
      ['server', 'point', timeHeader('taken at', tz), timeHeader('committed at', tz)],
      m.points.map((p) => [m.server, p.id, formatTime(p.takenAt, tz), formatTime(p.committedAt, tz)]),
    );
  }
}

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

/** The servers to list (all, or `server`) with their journals; `server` unknown is an error. */
async function listServers(
  store: AnyStore,
  server: string | undefined,
  flags: { store: string; points?: boolean },
): Promise<Listed[]> {
  const names = server
    ? [server]
    : [...new Set([...(await store.listServers()), ...(await store.listJournals())])].sort();
  const listed: Listed[] = [];
  for (const name of names) {
    const m = await store.manifest(name);
    const journal = await store.journalInfo(name);
    if (!m && !journal && server) {
      throw new HavenError('STORE_SERVER_NOT_FOUND', `${flags.store} holds no copy of ${server}`, {
        kind: 'not-found',
        hint: 'List the servers it holds with `haven images --store PATH`.',
      });
    }
    if (!m && !journal) continue;
    const { sourceDefinition: _d, ...rest } = m ?? {
      server: name,
      copies: 0,
      generations: [],
      sourceDefinition: '',
      bootPriority: 100,
    };
    listed.push({
      ...rest,
      ...(journal ? { journal } : {}),
      ...(journal && flags.points ? { points: await store.journalPoints(name) } : {}),
    });
  }
  return listed;
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('images')
    .description('list the generations of each server in a store, and its journal of points')
    .argument('[server]', 'only this server')
    .requiredOption('--store <path>', 'the store directory')
    .option(
      '--rbd <location>',
      'an rbd store whose directory is missing here: rebuild it from this pool (docs/store-rbd.md)',
    )
    .option('--points', 'list every point of the journals')
    .option('--hosts', 'only the hosts’ rescue media and backup archives')
    .option('--json', 'print as JSON');
  examples(command, [
    ['haven images --store /srv/haven', 'every server in the store with its generations'],
    ['haven images web01 --store /srv/haven --json', 'the generations of web01, as JSON'],
    [
      'haven images web01 --store /srv/haven --points',
      'the points of web01’s journal (continuous protection)',
    ],
    ['haven images --hosts --store /srv/haven', 'the hosts’ rescue media and backup archives'],
  ]);
  command.action(
    async (
      server: string | undefined,
      flags: { store: string; rbd?: string; hosts?: boolean; points?: boolean; json?: boolean },
    ) => {
      const ctx = context();
      const store = await openStore(flags.store, { log: ctx.log, ...(flags.rbd ? { rbd: flags.rbd } : {}) });
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
        const listed = await listServers(store, server, flags);
        if (flags.json) {
          ctx.printJson(listed);
          return;
        }
        const tz = await ctx.timeZone();
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
          generationRows(listed, tz),
        );
        printJournals(ctx, listed, tz);
        if (hosts.length) printHosts(ctx, hosts, tz);
      } finally {
        await store.close();
      }
    },
  );
}
