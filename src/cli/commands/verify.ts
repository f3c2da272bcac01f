/**
 * `haven verify [server] --store PATH`: re-reads every image and checks it against the chunk
 * digests in its manifest. Exit code 8 (integrity) on any mismatch.
 */
import type { Command } from 'commander';
import { formatBytes } from '../../core/units.ts';
import { openFsStore } from '../../store/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_CODES } from '../exit-codes.ts';
import { progressBar } from '../progress-bar.ts';

export default function register(program: Command, context: () => CliContext): void {
  program
    .command('verify')
    .description('re-read the images of a store and check their manifests and digests')
    .argument('[server]', 'only this server')
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
        const bar = progressBar(ctx.stderr, ctx.interactive && !flags.json, 'verify');
        const started = performance.now();
        let report: Awaited<ReturnType<typeof store.verify>>;
        try {
          report = await store.verify(server, {
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
        if (flags.json) ctx.printJson(report);
        else {
          ctx.print(
            `${report.ok ? 'OK' : 'FAILED'}: ${report.checkedServers} server(s), ${report.checkedGenerations} generation(s), ${formatBytes(report.checkedBytes)} read`,
          );
          for (const p of report.problems) {
            ctx.print(
              `  [${p.code}] ${p.server}${p.seq ? ` _${p.seq}` : ''}${p.disk ? ` ${p.disk}` : ''}: ${p.message}${p.badChunks?.length ? ` (chunks ${p.badChunks.join(', ')})` : ''}`,
            );
          }
        }
        if (!report.ok) {
          // The report is already printed (as JSON too), so no second error document: exit 8.
          ctx.stderr.write(
            `haven: error [VERIFY_FAILED]: ${report.problems.length} problem(s) found in ${flags.store}\n` +
              '  The damaged generations are listed. Before a run builds on a damaged generation it repairs each damaged chunk from another generation that holds it intact, and refuses (nothing changed) where none does.\n',
          );
          process.exitCode = EXIT_CODES.integrity;
        }
      },
    );
}
