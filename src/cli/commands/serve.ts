/**
 * `haven serve [--listen ADDR]`: the daemon (scheduler, HTTP API, live progress, /metrics, RPO
 * checks and alerts) until SIGINT or SIGTERM; SIGHUP re-reads the configuration.
 * deploy/haven.service runs it under systemd.
 */
import type { Command } from 'commander';
import { loadConfigIfPresent } from '../../core/config.ts';
import { parseListen } from '../../core/config-values.ts';
import { UsageError } from '../../core/errors.ts';
import { startDaemon } from '../../daemon/index.ts';
import type { CliContext } from '../context.ts';
import { connectOption, examples } from '../options.ts';

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('serve')
    .description('run the daemon: scheduler, HTTP API (token in <state>/api-token), live progress, /metrics')
    .option('--listen <addr:port>', 'listen here instead of daemon.listen (default 127.0.0.1:8470)')
    .option('--rpo-interval <seconds>', 'how often RPO objectives are checked', '60');
  connectOption(command);
  examples(command, [
    ['haven serve', 'run the daemon on daemon.listen (default 127.0.0.1:8470)'],
    ['haven serve --listen 127.0.0.1:8471', 'run it on another port (the default one is taken)'],
    ['haven -c /etc/haven/haven.yaml serve -v', 'run it with this configuration, logging more'],
  ]);
  command.action(async (flags: { listen?: string; rpoInterval: string }) => {
    const ctx = context();
    const config = await ctx.config();
    let listen: { host: string; port: number } | undefined;
    if (flags.listen) {
      try {
        listen = parseListen(flags.listen);
      } catch (e) {
        throw new UsageError(`invalid --listen ${JSON.stringify(flags.listen)}: ${(e as Error).message}`);
      }
    }
    const rpoSeconds = Number(flags.rpoInterval);
    if (!Number.isFinite(rpoSeconds) || rpoSeconds < 1)
      throw new UsageError('--rpo-interval must be at least 1 (seconds)');
    const log = ctx.openRunLog('serve');
    // The stop signals are ours before anything starts: one that arrives while the daemon is still
    // starting (a service manager stopping it at once) waits for the start, then stops it cleanly,
    // instead of killing the process by the default action.
    let stopping: NodeJS.Signals | undefined;
    let wake: (() => void) | undefined;
    const stop = (signal: NodeJS.Signals) => {
      stopping = signal;
      wake?.();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const daemon = await startDaemon({
      config,
      reloadConfig: () =>
        loadConfigIfPresent(ctx.paths.config, {
          required: Boolean(ctx.options.config || process.env.HAVEN_CONFIG),
        }),
      paths: ctx.paths,
      listen,
      log,
      consoleLevel: ctx.options.debug ? 'debug' : ctx.options.verbose ? 'verbose' : 'info',
      rpoIntervalMs: rpoSeconds * 1000,
    }).catch((e: unknown) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      throw e;
    });
    ctx.print(`haven daemon listening on ${daemon.url} (API token in ${daemon.tokenFile})`);
    const hup = () => daemon.reload();
    process.on('SIGHUP', hup);
    if (stopping === undefined) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    log.info(`${stopping}: stopping; running copies are cancelled and resume next time`);
    process.off('SIGHUP', hup);
    await daemon.close();
  });
}
