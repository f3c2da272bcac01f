/**
 * `haven protect <server> --to <target> [--to <target2> …] --continuous`: protects one server
 * continuously until stopped (docs/continuous.md). Ctrl-C or SIGTERM lets every lane finish the
 * segment it ships, records the lanes' state, prints the final status and exits 130.
 */
import { asHavenError, UsageError } from '../../core/errors.ts';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../../core/units.ts';
import type { ProtectorStatus } from '../../engine/continuous/index.ts';
import type { ResolvedTarget } from '../../jobs/targets.ts';
import type { CliContext } from '../context.ts';
import { exitCodeFor } from '../exit-codes.ts';
import { interruptible } from '../interrupt.ts';

export interface ContinuousFlags {
  interval?: string;
  journal?: string;
  segment?: string;
  overwriteTarget?: boolean;
  job?: string;
  dryRun?: boolean;
  json?: boolean;
}

export interface ContinuousRequest {
  server: string;
  targets: ResolvedTarget[];
  copies: number;
  flags: ContinuousFlags;
}

export interface ContinuousSettings {
  intervalMs: number;
  windowMs: number;
  segmentBytes: number;
}

export const DEFAULT_INTERVAL = '2s';
export const DEFAULT_WINDOW = '2h';
export const DEFAULT_SEGMENT = '64MiB';

export function continuousSettings(f: ContinuousFlags): ContinuousSettings {
  const intervalMs = parseDuration(f.interval ?? DEFAULT_INTERVAL);
  const windowMs = parseDuration(f.journal ?? DEFAULT_WINDOW);
  const segmentBytes = parseSize(f.segment ?? DEFAULT_SEGMENT);
  if (intervalMs < 500) throw new UsageError('--interval must be at least 500ms');
  if (windowMs < intervalMs) throw new UsageError('--journal must be at least as long as --interval');
  if (segmentBytes < 1024 * 1024) throw new UsageError('--segment must be at least 1MiB');
  return { intervalMs, windowMs, segmentBytes };
}

function printStatus(ctx: CliContext, s: ProtectorStatus): void {
  ctx.print(`${s.server}: ${s.cycles} cycles, ${formatBytes(s.readBytes)} read (${s.domain})`);
  ctx.printTable(
    ['target', 'state', 'lag', 'pending', 'newest point', 'sent'],
    s.lanes.map((l) => [
      l.target,
      l.state,
      l.lagMs === null ? '-' : formatDuration(l.lagMs),
      formatBytes(l.pendingBytes),
      l.lastPoint ? `${l.lastPoint.id} (${l.lastPoint.takenAt})` : '-',
      formatBytes(l.wireBytes),
    ]),
  );
}

/** The plan: the server's disks must track changes; nothing is connected or written. */
async function plan(ctx: CliContext, r: ContinuousRequest, s: ContinuousSettings): Promise<void> {
  const { Virsh, getServer } = await import('../../virt/index.ts');
  const { continuousDisks } = await import('../../engine/continuous/index.ts');
  const virsh = new Virsh({ log: ctx.log, session: true });
  try {
    const server = await getServer(virsh, r.server, { log: ctx.log });
    const disks = continuousDisks(server);
    const out = {
      server: server.name,
      state: server.state,
      targets: r.targets.map((t) => t.name),
      ...s,
      disks: disks.map((d) => ({ name: d.name, target: d.target, size: d.size, format: d.format })),
    };
    if (r.flags.json) {
      ctx.printJson(out);
      return;
    }
    ctx.print(
      `Plan for ${out.server} (${out.state}) → ${out.targets.join(', ')}: a point every ${formatDuration(s.intervalMs)}, journal ${formatDuration(s.windowMs)} — nothing changed`,
    );
    ctx.printTable(
      ['disk', 'target', 'size', 'format'],
      out.disks.map((d) => [d.name, d.target, formatBytes(d.size), d.format]),
    );
  } finally {
    virsh.close();
  }
}

export async function protectContinuousCommand(ctx: CliContext, r: ContinuousRequest): Promise<void> {
  const settings = continuousSettings(r.flags);
  if (r.flags.dryRun) return plan(ctx, r, settings);
  const [{ Virsh }, { catalogPath, openCatalog }, { protectContinuously }] = await Promise.all([
    import('../../virt/index.ts'),
    import('../../catalog/catalog.ts'),
    import('../../jobs/continuous.ts'),
  ]);
  const log = ctx.openRunLog(`protect-${r.server}`);
  const virsh = new Virsh({ log, session: true });
  const catalog = openCatalog(catalogPath(ctx.paths.stateDir), { log });
  let last = 0;
  try {
    await interruptible(`protect --continuous ${r.server}`, async (signal) => {
      const status = await protectContinuously({
        server: r.server,
        targets: r.targets,
        virsh,
        runDir: ctx.paths.runDir,
        catalog,
        job: r.flags.job ?? 'manual',
        copies: r.copies,
        ...settings,
        overwrite: r.flags.overwriteTarget === true,
        signal,
        log,
        onStatus: (s) => {
          if (r.flags.json || Date.now() - last < 10_000) return;
          last = Date.now();
          for (const l of s.lanes) {
            ctx.log.info(`${l.target}: ${l.state}, lag ${l.lagMs === null ? '-' : formatDuration(l.lagMs)}`);
          }
        },
      });
      // Protection ends only when stopped: one result (the final status), and the exit code of
      // a stopped command (130), so that a supervisor sees it was stopped, not finished.
      const reason = asHavenError(signal.reason ?? new Error('stopped'));
      if (r.flags.json) ctx.printJson({ ...status, stopped: reason.message });
      else printStatus(ctx, status);
      ctx.stderr.write(`haven: [${reason.code}]: ${reason.message}\n`);
      process.exitCode = exitCodeFor('interrupted');
    });
  } finally {
    virsh.close();
    catalog.close();
  }
}
