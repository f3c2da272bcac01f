/**
 * `haven switchover <server> --store S --primary P` (issue 15, docs/continuous.md "Planned
 * switchover"): moves a continuously protected server from the primary to the DR site with no
 * write lost, then leaves the DR copy as the writer and the primary as failback's target.
 *
 * Run at the DR site, where the store is, like `haven activate`:
 *
 * 1. the primary must answer and run the server (else this is no planned switchover: an
 *    unplanned failover is `haven activate --at`);
 * 2. the guest is shut down cleanly on the primary (ACPI, then waiting): from then on its disks do
 *    not change;
 * 3. the primary's protector sees the domain off and takes one more cycle through its images
 *    (protector.ts). That cycle's segment is marked `sourceOff`, so the DR site waits for a
 *    consistent point taken with the server off and newer than the newest point before the
 *    shutdown: it holds every write the server made. No clock is compared across the sites;
 * 4. the server is activated from that point (`activateServers --at`), which finds the primary
 *    shut off and guards it there, so its stale copy cannot start;
 * 5. from then on the store records the server as active at the DR site: the primary's lanes are
 *    refused (`CONTINUOUS_DR_NEWER`), and `haven failback` is the way back (the reverse direction).
 *
 * A switchover that cannot finish before the activation (shutdown or drain too slow, the
 * activation refused) starts the server on the primary again, so a planned move never leaves the
 * service down; the error says why.
 */
import { asHavenError, type HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import type { JournalPoint } from '../store/types.ts';
import { domainState, isActiveState, shutdownDomain, startDomain, Virsh } from '../virt/index.ts';
import { type ActivateOptions, type ActivationResult, activateServers } from './activate.ts';
import { recoveryError, unknownServer } from './errors.ts';
import { primaryStatus, primaryUri } from './primary.ts';

export interface SwitchoverOptions
  extends Pick<ActivateOptions, 'store' | 'virsh' | 'name' | 'rules' | 'networks' | 'signal' | 'log'> {
  server: string;
  /** The primary: a libvirt URI or an ssh host (primary.ts). */
  primary: string;
  /** How long the guest may take to shut down (default 5 min). */
  shutdownTimeoutMs?: number;
  /** How long to wait for the final point once the guest is off (default 5 min). */
  drainTimeoutMs?: number;
  /** Check and show the plan; nothing is shut down or started. */
  dryRun?: boolean;
  /** Progress, once a second while waiting. */
  onProgress?: (p: SwitchoverProgress) => void;
}

export interface SwitchoverProgress {
  phase: 'shutdown' | 'drain' | 'activate';
  waitedMs: number;
  newest: JournalPoint | null;
}

export interface SwitchoverReport {
  server: string;
  primary: string;
  dryRun: boolean;
  /** The journal's newest point when the switchover began. */
  before: JournalPoint | null;
  /** The point the DR copy started from: taken with the server shut off on the primary. */
  final?: JournalPoint;
  shutdownMs?: number;
  drainMs?: number;
  activation?: ActivationResult;
  /** The switchover failed before the activation and the server was started on the primary again. */
  restartedOnPrimary?: boolean;
  error?: ReturnType<HavenError['toJSON']>;
  /** The error itself, for the exit code (not in the JSON). */
  firstError?: HavenError;
}

const POLL_MS = 500;

export async function switchover(o: SwitchoverOptions): Promise<SwitchoverReport> {
  checkName('server', o.server);
  const uri = primaryUri(o.primary);
  const report: SwitchoverReport = {
    server: o.server,
    primary: uri,
    dryRun: Boolean(o.dryRun),
    before: null,
  };
  const primary = new Virsh({ uri, log: o.log, timeoutMs: 60_000 });
  try {
    const before = await checkBefore(o, uri);
    report.before = before;
    if (o.dryRun) {
      await activate(o, before, true, report);
      return report;
    }
    try {
      const final = await stopAndDrain(o, primary, report);
      await activate(o, final, false, report);
    } catch (e) {
      // Nothing runs at the DR site (an activation that fails undoes itself): the server goes
      // back to work where it was.
      if (report.activation?.status !== 'running')
        report.restartedOnPrimary = await restartOnPrimary(primary, o.server, o.log);
      throw e;
    }
  } catch (e) {
    const err = asHavenError(e);
    report.error = err.toJSON();
    report.firstError = err;
  } finally {
    primary.close();
  }
  return report;
}

/** The store keeps a journal for the server and the primary runs it: what a switchover needs. */
async function checkBefore(o: SwitchoverOptions, uri: string): Promise<JournalPoint> {
  const { store, server } = o;
  const info = await store.journalInfo?.(server);
  if (!info?.newest) {
    const known = info ? [] : await store.listServers();
    if (!info && !known.includes(server)) throw unknownServer(server, store.location, known);
    throw recoveryError(
      'RECOVERY_NO_JOURNAL',
      'not-found',
      `the store holds no journal of points for ${server}: a switchover needs continuous protection`,
      {
        hint: `Protect it with \`haven protect ${server} --to ${store.location} --continuous\` (or a mode: continuous job) and switch over once its first point is committed.`,
        details: { server },
      },
    );
  }
  const manifest = await store.manifest(server);
  if (manifest?.activeAtDr)
    throw recoveryError('RECOVERY_ALREADY_ACTIVE', 'conflict', `${server} already runs at the DR site`, {
      hint: 'Fail back with `haven failback`, or give the copy up with `haven deactivate`.',
      details: { server, activeAtDr: manifest.activeAtDr },
    });
  const p = await primaryStatus(uri, server, { log: o.log });
  if (!p.reachable)
    throw recoveryError(
      'RECOVERY_SWITCHOVER_UNREACHABLE',
      'unavailable',
      `the primary (${uri}) does not answer: ${p.error ?? 'unreachable'}`,
      {
        hint: `A switchover needs the primary. If it is lost, fail over instead: \`haven activate ${server} --store ${store.location} --at <time|point>\`.`,
        details: { server, primary: uri },
      },
    );
  if (!p.running)
    throw recoveryError(
      'RECOVERY_SWITCHOVER_NOT_RUNNING',
      'refused',
      `${server} is ${p.defined ? p.state : 'not defined'} on the primary (${uri}): a switchover moves a running server`,
      {
        hint: `Its newest point here is ${info.newest.id} (taken ${info.newest.takenAt}); start that with \`haven activate ${server} --store ${store.location} --at ${info.newest.id} --primary ${uri}\`.`,
        details: { server, primary: uri, state: p.state ?? null },
      },
    );
  return info.newest;
}

/** Shuts the guest down on the primary and waits for the point taken from its quiet disks. */
async function stopAndDrain(
  o: SwitchoverOptions,
  primary: Virsh,
  report: SwitchoverReport,
): Promise<JournalPoint> {
  const started = Date.now();
  const shutdownTimeoutMs = o.shutdownTimeoutMs ?? 300_000;
  const progress = setInterval(
    () => o.onProgress?.({ phase: 'shutdown', waitedMs: Date.now() - started, newest: report.before }),
    1000,
  );
  let stopped: Awaited<ReturnType<typeof shutdownDomain>>;
  try {
    o.log.info('shutting the server down on the primary', { server: o.server, primary: primary.uri });
    stopped = await shutdownDomain(primary, o.server, { timeoutMs: shutdownTimeoutMs });
  } finally {
    clearInterval(progress);
  }
  report.shutdownMs = Date.now() - started;
  if (!stopped.stopped)
    throw recoveryError(
      'RECOVERY_SWITCHOVER_TIMEOUT',
      'unavailable',
      `${o.server} did not shut down on the primary within ${Math.round(shutdownTimeoutMs / 1000)} s (it is ${stopped.state})`,
      {
        hint: 'Find out why the guest ignores the shutdown (its console), then run `haven switchover` again, with a longer --shutdown-timeout if it only needs time.',
        details: { server: o.server, phase: 'shutdown', state: stopped.state },
      },
    );
  const final = await waitForFinalPoint(o, report.before);
  report.final = final;
  report.drainMs = Date.now() - started - report.shutdownMs;
  o.log.info('final point committed', { point: final.id, takenAt: final.takenAt, drainMs: report.drainMs });
  return final;
}

/** The newest point, once it is newer than `before` and was read from the shut-off server. */
async function waitForFinalPoint(o: SwitchoverOptions, before: JournalPoint | null): Promise<JournalPoint> {
  const started = Date.now();
  const timeoutMs = o.drainTimeoutMs ?? 300_000;
  let newest: JournalPoint | null = before;
  let lastReport = 0;
  for (;;) {
    o.signal?.throwIfAborted();
    newest = (await o.store.journalInfo?.(o.server))?.newest ?? null;
    if (newest?.sourceOff && newest.seq > (before?.seq ?? 0)) return newest;
    const waited = Date.now() - started;
    if (waited >= timeoutMs)
      throw recoveryError(
        'RECOVERY_SWITCHOVER_TIMEOUT',
        'unavailable',
        `no point from ${o.server}'s shut-off disks reached the store within ${Math.round(timeoutMs / 1000)} s (newest: ${newest?.id ?? 'none'}, ${newest?.takenAt ?? '-'})`,
        {
          hint: `Is the server's continuous protection running on the primary? \`haven status\` there shows its lane; start it (\`haven protect ${o.server} --to … --continuous\`) and run \`haven switchover\` again.`,
          details: { server: o.server, phase: 'drain', newest: newest?.id ?? null },
        },
      );
    if (Date.now() - lastReport >= 1000) {
      lastReport = Date.now();
      o.onProgress?.({ phase: 'drain', waitedMs: waited, newest });
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Starts the server at the DR site from `point`; the result goes into `into` even on failure. */
async function activate(
  o: SwitchoverOptions,
  point: JournalPoint,
  dryRun: boolean,
  into: SwitchoverReport,
): Promise<void> {
  o.onProgress?.({ phase: 'activate', waitedMs: 0, newest: point });
  const report = await activateServers({
    store: o.store,
    servers: [o.server],
    at: point.id,
    dryRun,
    name: o.name,
    // A dry run leaves the primary running, so the primary's check would refuse it: the plan
    // shows what the DR site would start; the real run checks and guards the primary.
    ...(dryRun ? {} : { primary: o.primary }),
    virsh: o.virsh,
    rules: o.rules,
    networks: o.networks,
    signal: o.signal,
    log: o.log,
  });
  const result = report.servers[0];
  if (!result) throw unknownServer(o.server, o.store.location, await o.store.listServers());
  into.activation = result;
  if (report.firstError) throw report.firstError;
}

async function restartOnPrimary(primary: Virsh, server: string, log: Logger): Promise<boolean> {
  try {
    const { state } = await domainState(primary, server);
    if (isActiveState(state)) return false;
    await startDomain(primary, server);
    log.warn('switchover abandoned: the server was started on the primary again', { server });
    return true;
  } catch (e) {
    log.error('switchover abandoned, and the server could not be started on the primary again', {
      server,
      err: e,
    });
    return false;
  }
}
