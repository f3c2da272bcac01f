/**
 * `haven protect <server> --to <target>`: one replication run of one server (docs/design.md §4–§6).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { asHavenError, type HavenError, UsageError } from '../../core/errors.ts';
import { timeZoneName } from '../../core/time-format.ts';
import { formatBytes, formatDuration, parseRate } from '../../core/units.ts';
import type { ProtectPlan, ProtectResult } from '../../engine/index.ts';
import type { ServerOutcome } from '../../jobs/copy.ts';
import { EarlyConnection, type ResolvedTarget, resolveTarget } from '../../jobs/targets.ts';
import { DESCRIPTOR_FILE } from '../../store/fs/layout.ts';
import type { CliContext } from '../context.ts';
import { catalogForDryRun } from '../dry-run.ts';
import { interruptible } from '../interrupt.ts';
import { connectOption, examples, intFlag } from '../options.ts';
import { formatTime } from '../when.ts';
import { type ContinuousFlags, protectContinuousCommand } from './protect-continuous.ts';

/**
 * Whether a receiver started before anything was checked (EarlyConnection) changes nothing when
 * it goes unused: a TLS listener (already running, its store open), or a local store that exists
 * and needs no staging drive. A local receiver creates a missing store and mounts a staging drive
 * as it starts, and an SSH one may do either on the remote host, so bad input (an unknown
 * server) would leave them behind; those start once the server is known, as before.
 */
function earlyIsHarmless(t: ResolvedTarget): boolean {
  if (t.endpoint.kind === 'tls') return true;
  return (
    t.endpoint.kind === 'local' &&
    t.receiveArgs.length === 0 &&
    existsSync(join(t.endpoint.path, DESCRIPTOR_FILE))
  );
}

/**
 * The engine and everything a run needs, loaded only after the receiver was started: its start-up
 * then overlaps this process's loading (EarlyConnection).
 */
async function loadRunModules() {
  const [engine, catalog, copy, guard, bar] = await Promise.all([
    import('../../engine/index.ts'),
    import('../../catalog/catalog.ts'),
    import('../../jobs/copy.ts'),
    import('../../recovery/guard.ts'),
    import('../progress-bar.ts'),
  ]);
  return {
    Virsh: engine.Virsh,
    DEFAULT_RECONNECTS: engine.DEFAULT_RECONNECTS,
    catalogPath: catalog.catalogPath,
    openCatalog: catalog.openCatalog,
    copyServer: copy.copyServer,
    guardAfterRefusal: guard.guardAfterRefusal,
    progressBar: bar.progressBar,
  };
}

interface ProtectFlags extends ContinuousFlags {
  to: string[];
  continuous?: boolean;
  copies?: string;
  bwlimit?: string;
  compress?: string;
  consistency?: string;
  quiesce: boolean;
  dryRun?: boolean;
  json?: boolean;
  job?: string;
  sshOption?: string[];
  remoteCommand?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
  retries?: string;
  resync?: boolean;
}

function printPlan(ctx: CliContext, plan: ProtectPlan, tz: string | undefined): void {
  ctx.print(
    `Plan for ${plan.server} (${plan.state}) → ${plan.target} [store ${plan.storeId ?? 'none yet: a run creates it'}] — nothing changed`,
  );
  ctx.print(
    plan.newest
      ? `  target's newest copy: _${plan.newest.seq} from ${plan.newest.pointInTime} taken ${formatTime(plan.newest.takenAt, tz)} (${timeZoneName(tz)})`
      : '  target has no copy of this server yet: full copy',
  );
  ctx.print(`  base checkpoint: ${plan.base ?? '(none: full copy or checksum resync)'}`);
  if (plan.resync === 'operator')
    ctx.print('  checksum resync (--resync): every chunk would be read and compared, what differs sent');
  if (plan.resync === 'target')
    ctx.print(
      '  checksum resync: the target holds damaged chunks only the source can repair; every chunk would be compared',
    );
  ctx.print(
    `  consistency: ${plan.consistency}${plan.resumeJob ? '; a crashed run’s backup job will be continued' : ''}`,
  );
  ctx.printTable(
    ['disk', 'target', 'size', 'format', 'mode'],
    plan.disks.map((d) => [d.name, d.target, formatBytes(d.size), d.format, d.mode]),
  );
}

function printResult(ctx: CliContext, r: ProtectResult): void {
  ctx.print(
    `${r.server} → ${r.target}: generation _${r.generation.seq} (${r.mode}, ${r.sourceKind}${r.quiesced ? ', quiesced' : ''}) in ${formatDuration(r.durationMs)}`,
  );
  ctx.printTable(
    ['disk', 'size', 'mode', 'read', 'sent data', 'zeroed', 'unchanged'],
    r.disks.map((d) => [
      d.name,
      formatBytes(d.size),
      d.mode,
      formatBytes(d.readBytes),
      formatBytes(d.dataBytes),
      formatBytes(d.zeroBytes),
      formatBytes(d.skippedBytes),
    ]),
  );
  ctx.print(
    `  on the wire: ${formatBytes(r.bytesSent)}${r.resumedBytes ? `; resumed, ${formatBytes(r.resumedBytes)} already staged` : ''}${r.attempts > 1 ? `; ${r.attempts} attempts` : ''}`,
  );
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('protect')
    .description('replicate one server to a target now: full the first time, incremental after')
    .argument('<server>', 'libvirt domain name')
    .requiredOption(
      '--to <target>',
      'target: a configured target name, a store path (absolute, or ./relative), ssh://[user@]host[:port]/path or tls://host:port; repeat with --continuous for several',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--copies <n>', 'generations to keep at the target (default 3, or the target’s setting)')
    .option('--bwlimit <rate>', 'bandwidth limit on the wire, e.g. 50MiB/s (default unlimited)')
    .option('--compress <level>', 'zstd level 1–19, 0 = off (default 3 for remote targets, 0 for local)')
    .option('--consistency <mode>', 'live (default) or shutdown (clean shutdown, copy, start again)')
    .option('--no-quiesce', 'do not freeze guest filesystems through the guest agent')
    .option('--job <name>', 'job name recorded with the generation', 'manual')
    .option('--ssh-option <opt...>', 'extra ssh arguments for ssh:// targets')
    .option('--remote-command <cmd>', 'how to run haven on an ssh:// target (default "haven")')
    .option('--tls-ca <file>', 'CA certificate of a tls:// receiver')
    .option('--tls-cert <file>', 'client certificate for a tls:// receiver')
    .option('--tls-key <file>', 'client key for a tls:// receiver')
    .option('--token-file <file>', 'token a tls:// receiver requires')
    .option('--retries <n>', 'reconnections after a broken connection (default 3)')
    .option(
      '--resync',
      'checksum resync: read every chunk, compare its digest with the target’s newest copy and send what differs',
    )
    .option('--continuous', 'replicate continuously until stopped: a journal of points at each target')
    .option('--interval <duration>', 'continuous: a point at most this often (default 2s)')
    .option('--journal <duration>', 'continuous: how long the targets keep points (default 2h)')
    .option('--segment <size>', 'continuous: most data one segment carries (default 64MiB)')
    .option('--overwrite-target', 'continuous: overwrite a target that holds another lineage')
    .option('--dry-run', 'show the plan (what would be read and sent) and change nothing')
    .option('--json', 'print the result as JSON');
  connectOption(command);
  examples(command, [
    [
      'haven protect web01 --to /srv/haven',
      'copy web01 to a local store now: full the first time, incremental after',
    ],
    [
      'haven protect web01 --to ssh://root@dr1/srv/haven --bwlimit 50MiB/s --compress 3',
      'copy over ssh, at most 50 MiB/s on the wire',
    ],
    [
      'haven protect web01 --to dr1 --dry-run',
      'show what a copy to the configured target dr1 would read and send',
    ],
    [
      'haven protect web01 --to dr1 --resync',
      'compare every chunk with the target’s copy and send what differs (after damage, or to be sure)',
    ],
  ]);
  command.action(async (serverName: string, flags: ProtectFlags) => {
    const ctx = context();
    const consistency = flags.consistency ?? 'live';
    if (consistency !== 'live' && consistency !== 'shutdown') {
      throw new UsageError(`--consistency must be live or shutdown, got ${JSON.stringify(consistency)}`);
    }
    const config = await ctx.config();
    if (flags.to.length > 1 && !flags.continuous) {
      throw new UsageError('only --continuous protects to several targets at once; name one --to');
    }
    const resolve = (to: string) =>
      resolveTarget(to, config, {
        copies: intFlag('copies', flags.copies, 1, 1000),
        bandwidth: flags.bwlimit === undefined ? undefined : parseRate(flags.bwlimit),
        compress: intFlag('compress', flags.compress, 0, 19),
        ssh: { options: flags.sshOption, command: flags.remoteCommand },
        tls: { ca: flags.tlsCa, cert: flags.tlsCert, key: flags.tlsKey, tokenFile: flags.tokenFile },
      });
    if (flags.continuous && flags.resync) {
      throw new UsageError(
        '--resync is for one run; continuous protection compares every chunk on its own when a lane starts',
      );
    }
    if (flags.continuous) {
      const targets = flags.to.map(resolve);
      await protectContinuousCommand(ctx, {
        server: serverName,
        targets,
        copies: targets[0]?.copies ?? 3,
        flags,
      });
      return;
    }
    const target = resolve(flags.to[0] ?? '');
    const request: Request = {
      server: serverName,
      flags,
      target,
      consistency,
      reconnects: intFlag('retries', flags.retries, 0, 100),
    };
    await (flags.dryRun ? plan(ctx, request) : run(ctx, request));
  });
}

/** A protect command line, checked. */
interface Request {
  server: string;
  flags: ProtectFlags;
  target: ResolvedTarget;
  consistency: 'live' | 'shutdown';
  /** --retries: reconnections within the run. */
  reconnects: number | undefined;
}

/** One attempt (reconnections inside it resume the delta), recorded as a run of kind protect. */
async function run(ctx: CliContext, r: Request): Promise<void> {
  const { server, flags, target } = r;
  const log = ctx.openRunLog(`protect-${server}`);
  const early = earlyIsHarmless(target) ? new EarlyConnection(target, log) : undefined;
  try {
    const m = await loadRunModules();
    const virsh = new m.Virsh({ log, session: true });
    const catalog = m.openCatalog(m.catalogPath(ctx.paths.stateDir), { log });
    const runId = catalog.runs.start({ kind: 'protect', job: flags.job ?? 'manual', trigger: 'manual' }).id;
    const bar = m.progressBar(ctx.stderr, ctx.progressMode(flags.json), server);
    const finish = (status: 'ok' | 'failed' | 'cancelled', e?: HavenError, generation?: string) =>
      catalog.runs.finish(runId, {
        status,
        ...(e ? { errorCode: e.code, errorMessage: e.message } : {}),
        summary: { ...(generation ? { generation } : {}), logFile: log.filePath },
      });
    try {
      let out: ServerOutcome;
      try {
        out = await interruptible(`protect ${server}`, async (signal) => {
          const o = await m.copyServer({
            server,
            target,
            virsh,
            runDir: ctx.paths.runDir,
            job: flags.job,
            copies: target.copies,
            early,
            consistency: r.consistency,
            quiesce: flags.quiesce,
            catalog,
            runId,
            retries: 0,
            reconnects: r.reconnects ?? m.DEFAULT_RECONNECTS,
            resync: flags.resync,
            onProgress: (s) => bar.update(s),
            signal,
            log,
          });
          // Stopped by a signal: unwound like any failure, reported by interruptible.
          if (o.status === 'cancelled') throw o.error;
          return o;
        });
      } catch (e) {
        bar.stop();
        const err = asHavenError(e);
        finish(err.kind === 'interrupted' ? 'cancelled' : 'failed', err);
        throw err;
      }
      bar.stop();
      if (out.error) {
        // Refused because the server runs at the DR site: keep it from starting here too.
        await m.guardAfterRefusal(virsh, server, out.error, log);
        finish('failed', out.error);
        throw out.error;
      }
      const result = out.result!;
      finish('ok', undefined, result.generation.id);
      if (flags.json) ctx.printJson(result);
      else printResult(ctx, result);
    } finally {
      virsh.close();
      catalog.close();
    }
  } finally {
    await early?.discard();
  }
}

/**
 * `--dry-run`: the plan, and nothing else anywhere: no catalog, no log file, no store (a target
 * without one says so), no receiver that changes anything, no libvirt call that writes.
 */
async function plan(ctx: CliContext, r: Request): Promise<void> {
  const { server: serverName, flags, target, consistency, reconnects } = r;
  const { Virsh, DEFAULT_RECONNECTS, copyServer } = await loadRunModules();
  const virsh = new Virsh({ log: ctx.log, session: true });
  const catalog = await catalogForDryRun(ctx.paths.stateDir, ctx.log);
  try {
    const out = await interruptible(`protect --dry-run ${serverName}`, (signal) =>
      copyServer({
        server: serverName,
        target,
        virsh,
        runDir: ctx.paths.runDir,
        copies: target.copies,
        consistency,
        catalog,
        reconnects: reconnects ?? DEFAULT_RECONNECTS,
        dryRun: true,
        resync: flags.resync,
        signal,
        log: ctx.log,
      }),
    );
    if (out.error) throw out.error;
    if (flags.json) ctx.printJson(out.plan);
    else printPlan(ctx, out.plan!, (await ctx.config()).timezone);
  } finally {
    virsh.close();
    catalog?.close();
  }
}
