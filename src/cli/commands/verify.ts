/**
 * `haven verify [server] --store PATH`: re-reads every image and checks it against the chunk
 * digests in its manifest, every point of every point-in-time journal (docs/continuous.md), and
 * every host's rescue media and backup archives against their digests (docs/hosts.md). Exit code
 * 8 (integrity) on any mismatch.
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/units.ts';
import { HostStore, type HostVerifyReport, verifyHosts } from '../../store/host/index.ts';
import { emptyVerifyReport, openStore, type Store, type VerifyOptions } from '../../store/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_CODES } from '../exit-codes.ts';
import { examples, parseSeq } from '../options.ts';
import { progressBar, readingSnapshot } from '../progress-bar.ts';

type VerifyReport = Awaited<ReturnType<Store['verify']>>;

/**
 * `store.verify`, with `--generation` as every command reads it: a sequence number (`1`, `_1`)
 * picks that generation of each server checked, anything else is a generation id.
 */
async function verifyStore(
  store: Store,
  server: string | undefined,
  generation: string | undefined,
  options: Omit<VerifyOptions, 'generationId'>,
): Promise<VerifyReport> {
  if (generation === undefined || !/^_?\d+$/.test(generation))
    return store.verify(server, { ...options, generationId: generation });
  const seq = parseSeq(generation);
  const total: VerifyReport = emptyVerifyReport();
  for (const name of server === undefined ? await store.listServers() : [server]) {
    const id = (await store.manifest(name))?.generations.find((g) => g.seq === seq)?.id;
    // A server without that generation is reported by the store as an unknown generation.
    const r = await store.verify(name, { ...options, generationId: id ?? `_${seq}` });
    total.ok &&= r.ok;
    total.checkedServers += r.checkedServers;
    total.checkedGenerations += r.checkedGenerations;
    total.checkedBytes += r.checkedBytes;
    total.problems.push(...r.problems);
  }
  return total;
}

/**
 * The hosts' rescue media and archives (docs/hosts.md): all of them when no server is named, one
 * host's when the name is a host's; undefined when the name is a server's.
 */
async function verifyHostFiles(
  store: Store,
  server: string | undefined,
  flags: { generation?: string; quick?: boolean },
  log: CliContext['log'],
): Promise<HostVerifyReport | undefined> {
  const hosts = new HostStore(store.location, store.descriptor, { log });
  if (server !== undefined && !(await hosts.listHosts()).includes(server)) return undefined;
  const id =
    flags.generation !== undefined && !/^_?\d+$/.test(flags.generation) ? flags.generation : undefined;
  return verifyHosts(hosts, server, { readFiles: !flags.quick, ...(id ? { generationId: id } : {}) });
}

function printHosts(ctx: CliContext, r: HostVerifyReport): void {
  ctx.print(
    `${r.ok ? 'OK' : 'FAILED'}: ${r.checkedHosts} host(s), ${r.checkedFiles} file(s), ${formatBytes(r.checkedBytes)} read`,
  );
  for (const p of r.problems) {
    ctx.print(
      `  [${p.code}] ${p.host}${p.file ? ` ${p.file}` : p.seq ? ` ${p.kind} _${p.seq}` : ''}: ${p.message}`,
    );
  }
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('verify')
    .description('re-read the images and journals of a store and check their manifests and digests')
    .argument('[server]', 'only this server (or host)')
    .requiredOption('--store <path>', 'the store directory')
    .option(
      '--rbd <location>',
      'an rbd store whose directory is missing here: rebuild it from this pool (docs/store-rbd.md)',
    )
    .option(
      '--generation <k>',
      'only this generation: 1 = newest, 2 = the one before, … (as haven images lists them), or its id',
    )
    .option('--quick', 'check structure only (manifests, files, sizes), do not read images')
    .option('--json', 'print the report as JSON');
  examples(command, [
    ['haven verify --store /srv/haven', 're-read every image in the store and check every digest'],
    ['haven verify web01 --store /srv/haven --generation 1', 'check only the newest generation of web01'],
    ['haven verify --store /srv/haven --quick --json', 'check structure only (no image read), as JSON'],
  ]);
  command.action(
    async (
      server: string | undefined,
      flags: { store: string; rbd?: string; generation?: string; quick?: boolean; json?: boolean },
    ) => {
      const ctx = context();
      const store = await openStore(flags.store, { log: ctx.log, ...(flags.rbd ? { rbd: flags.rbd } : {}) });
      const bar = progressBar(ctx.stderr, ctx.progressMode(flags.json), 'verify');
      const started = performance.now();
      let report: Awaited<ReturnType<typeof store.verify>>;
      let hosts: HostVerifyReport | undefined;
      try {
        hosts = await verifyHostFiles(store, server, flags, ctx.log);
        const onlyHost = server !== undefined && hosts !== undefined;
        report = onlyHost
          ? emptyVerifyReport()
          : await verifyStore(store, server, flags.generation, {
              readImages: !flags.quick,
              onProgress: (done, total) =>
                bar.update(readingSnapshot(done, total, performance.now() - started)),
            });
      } finally {
        bar.stop();
        await store.close();
      }
      const ok = report.ok && (hosts?.ok ?? true);
      if (flags.json) ctx.printJson(hosts ? { ...report, ok, hosts } : report);
      else {
        ctx.print(
          `${report.ok ? 'OK' : 'FAILED'}: ${report.checkedServers} server(s), ${report.checkedGenerations} generation(s), ${report.checkedPoints} journal point(s), ${formatBytes(report.checkedBytes)} read`,
        );
        for (const j of report.journals) {
          ctx.print(
            `  journal ${j.server}: ${j.points} point(s) ${j.oldest ?? '-'} … ${j.newest ?? '-'}, ${j.damaged.length ? `${j.damaged.length} damaged (from ${j.damaged[0]})` : 'all sound'}`,
          );
        }
        for (const p of report.problems) {
          ctx.print(
            `  [${p.code}] ${p.server}${p.seq ? ` _${p.seq}` : ''}${p.pointId ? ` point ${p.pointId}` : ''}${p.disk ? ` ${p.disk}` : ''}: ${p.message}${p.badChunks?.length ? ` (chunks ${p.badChunks.join(', ')})` : ''}`,
          );
        }
        // A store without hosts says nothing of them (the servers' line already says OK).
        if (hosts && (hosts.checkedHosts > 0 || hosts.problems.length > 0)) printHosts(ctx, hosts);
      }
      if (!ok) {
        // The report is already printed (as JSON too), so no second error document: exit 8.
        ctx.stderr.write(
          `haven: error [VERIFY_FAILED]: ${report.problems.length + (hosts?.problems.length ?? 0)} problem(s) found in ${flags.store}\n` +
            '  The damaged generations are listed. The next `haven protect` of a damaged newest generation does a checksum resync that sends its damaged chunks again from the source; before a run builds on any damaged generation it repairs each damaged chunk from another generation that holds it intact, or has the source send it again.\n',
        );
        process.exitCode = EXIT_CODES.integrity;
      }
    },
  );
}
