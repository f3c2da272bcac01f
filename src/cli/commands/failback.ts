/**
 * `haven failback <server> --store PATH --to <primary>` (at the DR site) and its other end,
 * `haven failback-receive <server> --stdio` (run on the primary by the former, locally or through
 * ssh; not for direct use). docs/recovery.md describes the passes.
 */
import { fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { asHavenError, UsageError } from '../../core/errors.ts';
import { formatBytes, formatDuration, parseDuration } from '../../core/units.ts';
import { type FailbackPass, failback, serveFailback } from '../../recovery/index.ts';
import { openStore } from '../../store/index.ts';
import { JoinedStream } from '../../transport/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';
import { connectOption, examples } from '../options.ts';
import { progressBar } from '../progress-bar.ts';

interface FailbackFlags {
  store: string;
  to: string;
  primaryUri?: string;
  start: boolean;
  compress?: string;
  shutdownTimeout?: string;
  forceOff?: boolean;
  sshOption?: string[];
  remoteCommand?: string;
  follow?: boolean;
  interval?: string;
  connect?: string;
  json?: boolean;
}

interface ReceiveFlags {
  stdio?: boolean;
  sourceName?: string;
  since?: string;
  drPoint?: string;
  final?: boolean;
  start: boolean;
  connect?: string;
}

/** stdin/stdout as one Duplex (pipes and sockets as non-blocking sockets, as `haven receive`). */
function stdioStream(): Duplex {
  const asSocket = (fd: number) => {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  };
  const input: Readable = asSocket(0)
    ? new Socket({ fd: 0, readable: true, writable: false })
    : process.stdin;
  const output: Writable = asSocket(1)
    ? new Socket({ fd: 1, readable: false, writable: true })
    : process.stdout;
  return new JoinedStream(input, output, { mapError: (e) => asHavenError(e) });
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('failback')
    .description('send what changed at the DR site back to the primary and start the server there')
    .argument('<server>', 'the server active at the DR site')
    .requiredOption('--store <path>', 'the store at this DR site')
    .requiredOption('--to <primary>', 'the primary: ssh://[user@]host[:port], [user@]host, or local')
    .option('--primary-uri <uri>', 'libvirt URI the receiver uses on the primary (default its own)')
    .option('--no-start', 'leave the server shut off on the primary')
    .option('--compress <level>', 'zstd level on the wire, 0 = off', '3')
    .option('--shutdown-timeout <duration>', 'how long the DR copy may take to shut down', '5m')
    .option('--force-off', 'power the DR copy off if it ignores the shutdown request')
    .option(
      '--follow',
      'replicate the running DR copy into the primary every --interval until stopped, instead of finishing',
    )
    .option('--interval <duration>', 'with --follow: time between passes (at least 5s)', '30s')
    .option('--ssh-option <opt...>', 'extra ssh arguments')
    .option('--remote-command <cmd>', 'how to run haven on the primary (default "haven")');
  connectOption(command).option('--json', 'print the result as JSON');
  examples(command, [
    [
      'haven failback web01 --store /srv/haven --to ssh://root@primary',
      'send what changed at the DR site back to the primary and start web01 there',
    ],
    [
      'haven failback web01 --store /srv/haven --to root@primary --no-start --force-off',
      'fail back, powering off a DR copy that ignores the shutdown, and leave web01 off',
    ],
    [
      'haven failback web01 --store /srv/haven --to root@primary --follow --interval 10s',
      'after a switchover, keep the primary’s disks within seconds of the DR copy until Ctrl-C',
    ],
  ]);
  command.action(async (server: string, flags: FailbackFlags) => {
    const ctx = context();
    const compress = Number(flags.compress ?? '3');
    if (!Number.isInteger(compress) || compress < 0 || compress > 19) {
      throw new UsageError(`--compress must be 0 to 19, got ${JSON.stringify(flags.compress)}`);
    }
    const follow = flags.follow ? followOptions(ctx, flags) : undefined;
    const log = ctx.openRunLog(`failback-${server}`);
    const store = await openStore(flags.store, { log });
    const bar = progressBar(ctx.stderr, ctx.progressMode(flags.json), server);
    try {
      const r = await interruptible(`failback ${server}`, (signal) =>
        failback({
          store,
          server,
          to: flags.to,
          virsh: new Virsh({ uri: flags.connect, log }),
          runDir: ctx.paths.runDir,
          primaryUri: flags.primaryUri,
          start: flags.start,
          compress,
          shutdownTimeoutMs: parseDuration(flags.shutdownTimeout ?? '5m'),
          forceOff: flags.forceOff,
          link: { sshOptions: flags.sshOption, remoteCommand: flags.remoteCommand },
          onProgress: (s) => bar.update({ ...s, phase: `${s.pass}: ${s.phase}` }),
          ...(follow ? { follow } : {}),
          signal,
          log,
        }),
      );
      bar.stop();
      // Following ends only when stopped (exit 130, as `protect --continuous`) or when the DR
      // copy stops (exit 0: run failback again to finish).
      if (r.following?.ended === 'stopped') process.exitCode = exitCodeFor('interrupted');
      if (flags.json) {
        ctx.printJson(r);
        return;
      }
      ctx.print(
        r.following
          ? `${server}: followed the DR copy into ${r.primary} for ${formatDuration(r.seconds * 1000)}, ${r.following.passes} passes, ${formatBytes(r.wireBytes)} on the wire; ${r.following.ended === 'stopped' ? 'stopped' : 'the DR copy stopped'}: \`haven failback ${server} --store ${flags.store} --to ${flags.to}\` finishes`
          : `${server}: failed back to ${r.primary} in ${formatDuration(r.seconds * 1000)}, ${formatBytes(r.wireBytes)} on the wire${r.started ? '; running on the primary' : ''}`,
      );
      ctx.printTable(
        ['pass', 'mode', 'data', 'zeroed', 'on the wire', 'time'],
        r.passes.map((p) => [
          p.pass,
          p.mode,
          formatBytes(p.dataBytes),
          formatBytes(p.zeroBytes),
          formatBytes(p.wireBytes),
          formatDuration(p.durationMs),
        ]),
      );
    } catch (e) {
      bar.stop();
      throw e;
    } finally {
      await store.close();
    }
  });

  registerReceive(program, context);
}

/** --follow: the interval, and a line on stderr per pass (the bar shows the pass in flight). */
function followOptions(
  ctx: CliContext,
  flags: FailbackFlags,
): { intervalMs: number; onPass: (p: FailbackPass) => void } {
  const intervalMs = parseDuration(flags.interval ?? '30s');
  if (intervalMs < 5000) throw new UsageError('--interval must be at least 5s');
  const quiet = ctx.progressMode(flags.json) === 'off';
  return {
    intervalMs,
    onPass: (p) => {
      if (!quiet)
        ctx.stderr.write(
          `pass ${p.pointInTime}: ${p.mode}, ${formatBytes(p.dataBytes)} data, ${formatBytes(p.wireBytes)} on the wire, ${formatDuration(p.durationMs)}\n`,
        );
    },
  };
}

function registerReceive(program: Command, context: () => CliContext): void {
  const receive = program
    .command('failback-receive')
    .description('(run by `haven failback`) receive a failback pass into a server’s own images')
    .argument('<server>', 'the server’s domain on this host')
    .requiredOption('--stdio', 'serve the stream on stdin/stdout')
    .option('--source-name <name>', 'the server’s domain name at the DR site')
    .option('--since <bitmap>', 'bitmap proving where this host’s images stand')
    .option('--dr-point <checkpoint>', 'the DR checkpoint those images equal')
    .option('--final', 'the last pass: clear the guard and start the server afterwards')
    .option('--no-start', 'do not start the server after the last pass');
  connectOption(receive, 'on this host');
  examples(receive, [
    [
      'haven failback-receive web01 --stdio --since haven-20261205T211500Z-1a2b3c',
      'what haven failback runs on the primary for a live pass (not for direct use)',
    ],
  ]);
  receive.action(async (server: string, flags: ReceiveFlags) => {
    const ctx = context();
    const log = ctx.openRunLog(`failback-receive-${server}`);
    const stream = stdioStream();
    try {
      await serveFailback(stream, {
        domain: server,
        ...(flags.sourceName ? { sourceName: flags.sourceName } : {}),
        ...(flags.since ? { since: flags.since } : {}),
        ...(flags.drPoint ? { drPoint: flags.drPoint } : {}),
        final: Boolean(flags.final),
        start: flags.start,
        virsh: new Virsh({ uri: flags.connect, log }),
        runDir: ctx.paths.runDir,
        log,
      });
    } finally {
      await new Promise<void>((resolve) => {
        if (stream.writableFinished || stream.destroyed) return resolve();
        stream.end(() => resolve());
        setTimeout(resolve, 5000).unref();
      });
      stream.destroy();
    }
  });
}
