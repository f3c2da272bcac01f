/**
 * `haven verify [server] --store PATH`: re-reads every image and checks it against the chunk
 * digests in its manifest, and every host's rescue media and backup archives against their
 * digests (docs/hosts.md). Exit code 8 (integrity) on any mismatch.
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/units.ts';
import { HostStore, type HostVerifyReport, verifyHosts } from '../../store/host/index.ts';
import { openFsStore } from '../../store/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_CODES } from '../exit-codes.ts';
import { progressBar } from '../progress-bar.ts';

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
  program
    .command('verify')
    .description('re-read the images of a store and check their manifests and digests')
    .argument('[server]', 'only this server (or host)')
    .requiredOption('--store <path>', 'the store directory')
    .option('--generation <id>', 'only this generation (id)')
    .option('--quick', 'check structure only (manifests, files, sizes), do not read images')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        server: string | undefined,
        flags: { store: string; generation?: string; quick?: boolean; json?: boolean },
      ) => {
        const ctx = context();
        const store = await openFsStore(flags.store, { log: ctx.log });
        const bar = progressBar(ctx.stderr, ctx.progressMode(flags.json), 'verify');
        const started = performance.now();
        let report: Awaited<ReturnType<typeof store.verify>>;
        let hosts: Awaited<ReturnType<typeof verifyHosts>> | undefined;
        try {
          const hostStore = new HostStore(store.location, store.descriptor, { log: ctx.log });
          const isHost = server !== undefined && (await hostStore.listHosts()).includes(server);
          if (server === undefined || isHost) {
            hosts = await verifyHosts(hostStore, server, {
              readFiles: !flags.quick,
              ...(flags.generation ? { generationId: flags.generation } : {}),
            });
          }
          report = isHost
            ? { ok: true, checkedServers: 0, checkedGenerations: 0, checkedBytes: 0, problems: [] }
            : await store.verify(server, {
                generationId: flags.generation,
                readImages: !flags.quick,
                onProgress: (done, total) =>
                  bar.update({
                    phase: 'reading',
                    bytesDone: done,
                    bytesTotal: total,
                    bytesSent: 0,
                    rate: (done / Math.max(1, performance.now() - started)) * 1000,
                    etaMs: undefined,
                    elapsedMs: performance.now() - started,
                  }),
              });
        } finally {
          bar.stop();
          await store.close();
        }
        const ok = report.ok && (hosts?.ok ?? true);
        if (flags.json) ctx.printJson(hosts ? { ...report, ok, hosts } : report);
        else {
          ctx.print(
            `${report.ok ? 'OK' : 'FAILED'}: ${report.checkedServers} server(s), ${report.checkedGenerations} generation(s), ${formatBytes(report.checkedBytes)} read`,
          );
          for (const p of report.problems) {
            ctx.print(
              `  [${p.code}] ${p.server}${p.seq ? ` _${p.seq}` : ''}${p.disk ? ` ${p.disk}` : ''}: ${p.message}${p.badChunks?.length ? ` (chunks ${p.badChunks.join(', ')})` : ''}`,
            );
          }
          if (hosts) printHosts(ctx, hosts);
        }
        if (!ok) {
          // The report is already printed (as JSON too), so no second error document: exit 8.
          ctx.stderr.write(
            `haven: error [VERIFY_FAILED]: ${report.problems.length + (hosts?.problems.length ?? 0)} problem(s) found in ${flags.store}\n` +
              '  The damaged generations are listed; the next run of an affected server does a checksum resync.\n',
          );
          process.exitCode = EXIT_CODES.integrity;
        }
      },
    );
}
