/**
 * `haven serve`: the scheduler, the HTTP API with live progress and /metrics, and the RPO checks,
 * in one process (docs/design.md §3 daemon/). Runs happen in this process; their alerts go through the
 * same notifier as `haven job run`'s.
 */
import type { AddressInfo } from 'node:net';
import {
  type Catalog,
  catalogPath,
  openCatalog,
  type RunTrigger,
  type ScheduleKind,
} from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { CLEAR_TEXT_FIX, clearTextExposure } from '../core/exposure.ts';
import type { Level, Logger } from '../core/log.ts';
import type { HavenPaths } from '../core/paths.ts';
import { Virsh } from '../engine/index.ts';
import { checkHostRpo } from '../hosts/index.ts';
import { checkRpo, EventLog, jobSelections, Notifier, statusRows } from '../jobs/index.ts';
import { buildApi } from './api.ts';
import { ContinuousJobs } from './continuous-jobs.ts';
import { DrillRunner } from './drill-runs.ts';
import { HostRunner } from './host-runs.ts';
import { EventHub } from './hub.ts';
import { listenError } from './listen-check.ts';
import { MaintenanceTimer } from './maintenance-timer.ts';
import { createMetrics } from './metrics.ts';
import { RunManager } from './run-manager.ts';
import { Scheduler } from './scheduler.ts';
import { ScrubRunner } from './scrub-runs.ts';
import { ensureToken } from './token.ts';

export interface DaemonOptions {
  config: HavenConfig;
  /** Re-reads the configuration (SIGHUP); a broken file keeps the old one. */
  reloadConfig?: () => HavenConfig;
  paths: HavenPaths;
  listen?: { host: string; port: number };
  log: Logger;
  consoleLevel?: Level;
  /** How often RPO objectives are checked (and the server list refreshed). Default 60 s. */
  rpoIntervalMs?: number;
  /**
   * How often retention and the stale-checkpoint sweep are considered (each keeps its own pace
   * across processes, jobs/maintenance.ts). Default hourly; also once at start.
   */
  maintenanceIntervalMs?: number;
}

export interface Daemon {
  url: string;
  tokenFile: string;
  catalog: Catalog;
  manager: RunManager;
  scheduler: Scheduler;
  reload(): void;
  close(timeoutMs?: number): Promise<void>;
}

/** Where the scheduler's fire times go: jobs to the run manager, drills and scrubs to theirs. */
function byKind(
  manager: RunManager,
  drills: DrillRunner,
  scrubs: ScrubRunner,
  hosts: HostRunner,
): Pick<ConstructorParameters<typeof Scheduler>[0], 'start' | 'isRunning'> {
  const kinds: Record<
    ScheduleKind,
    { start(name: string, trigger: RunTrigger): Promise<unknown>; isRunning(name: string): boolean }
  > = {
    job: manager,
    drill: drills,
    scrub: scrubs,
    host: hosts,
  };
  const runner = (kind: ScheduleKind) => kinds[kind];
  return {
    start: (kind, name, trigger) => runner(kind).start(name, trigger),
    isRunning: (kind, name) => runner(kind).isRunning(name),
  };
}

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const log = o.log;
  let config = o.config;
  const { token, path: tokenFile } = await ensureToken(o.paths.stateDir, log);
  const catalog = openCatalog(catalogPath(o.paths.stateDir), { log });
  for (const r of catalog.runs.abandonStale())
    log.warn(`run #${r.id} was left running by a process that ended; closed`);
  const hub = new EventHub(() => {
    const s = config.daemon.progressStreams;
    return { total: s.total, perPeer: s.perClient };
  });
  const notifier = () => Notifier.fromConfig(config.alerts, log);
  let events = new EventLog(catalog, notifier(), log, (e) => hub.publish('event', e));
  const manager = new RunManager({
    config: () => config,
    catalog,
    runDir: o.paths.runDir,
    logDir: o.paths.logDir,
    consoleLevel: o.consoleLevel ?? 'info',
    get events() {
      return events;
    },
    hub,
    log,
  } as ConstructorParameters<typeof RunManager>[0]);
  const { drills, hosts, scrubs } = runners(o, { config: () => config, catalog, events: () => events, log });
  const scheduler = new Scheduler({
    config: () => config,
    catalog,
    get events() {
      return events;
    },
    ...byKind(manager, drills, scrubs, hosts),
    log,
  } as ConstructorParameters<typeof Scheduler>[0]);

  const virsh = new Virsh({ log });
  const rpo = rpoChecks({ config: () => config, catalog, events: () => events, virsh, log });
  const selections = () => rpo.selections;

  const metrics = createMetrics({
    config: () => config,
    catalog,
    selections,
    running: (job) => manager.isRunning(job),
    nextRun: (job) => scheduler.next(job),
  });
  const app = await buildApi({
    token,
    config: () => config,
    catalog,
    manager,
    scheduler,
    hub,
    metrics,
    selections,
    tokenFile,
    log,
  });
  const url = await listenApi(app, o.listen ?? config.daemon.listen, config.daemon.tlsProxy, log, tokenFile);

  await rpo.check();
  scheduler.start();
  const continuous = ContinuousJobs.start(o.paths.runDir, catalog, log, () => ({ config, events }));
  const timer = setInterval(() => void rpo.check(), o.rpoIntervalMs ?? 60_000);
  timer.unref();
  const maintenance = new MaintenanceTimer({
    config: () => config,
    catalog,
    virsh,
    logDir: o.paths.logDir,
    log,
    intervalMs: o.maintenanceIntervalMs,
  });

  return {
    url,
    tokenFile,
    catalog,
    manager,
    scheduler,
    reload() {
      if (!o.reloadConfig) return;
      try {
        config = o.reloadConfig();
        events = new EventLog(catalog, notifier(), log, (e) => hub.publish('event', e));
        scheduler.reload();
        void continuous.look();
        log.info('configuration reloaded', { file: config.file });
      } catch (e) {
        log.error('the configuration could not be reloaded; keeping the one in use', { err: e });
      }
    },
    async close(timeoutMs = 30_000) {
      clearInterval(timer);
      scheduler.stop();
      await rpo.stop();
      await maintenance.stop();
      await Promise.all([
        manager.stopAll(timeoutMs),
        drills.stopAll(timeoutMs),
        hosts.stopAll(timeoutMs),
        scrubs.stopAll(timeoutMs),
        continuous.stopAll(),
      ]);
      hub.close();
      await app.close();
      await events.flush();
      catalog.close();
    },
  };
}

/** The daemon's runners of scheduled work beside the jobs: drills, host backups, scrubs. */
function runners(
  o: DaemonOptions,
  shared: { config: () => HavenConfig; catalog: Catalog; events: () => EventLog; log: Logger },
) {
  const consoleLevel = o.consoleLevel ?? 'info';
  return {
    drills: new DrillRunner({ ...shared, runDir: o.paths.runDir, logDir: o.paths.logDir, consoleLevel }),
    hosts: new HostRunner({ ...shared, logDir: o.paths.logDir, consoleLevel }),
    scrubs: new ScrubRunner(shared),
  };
}

/**
 * Listens, logs the address, and warns when other hosts reach it over plain HTTP (judged by the
 * address actually bound: `--listen` may differ from the configuration, a name resolves).
 */
async function listenApi(
  app: Awaited<ReturnType<typeof buildApi>>,
  listen: { host: string; port: number },
  tlsProxy: readonly string[],
  log: Logger,
  tokenFile: string,
): Promise<string> {
  await app
    .listen({ host: listen.host, port: listen.port })
    .catch((e: unknown) => Promise.reject(listenError(e, listen)));
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  log.info(`listening on ${url}`, { tokenFile });
  const exposed = clearTextExposure(addr.address, addr.port, tlsProxy);
  if (exposed) log.warn(`${exposed}. ${CLEAR_TEXT_FIX}`);
  return url;
}

/** What the scheduler starts for each kind: job runs, drills, host backups. */
/**
 * The RPO checks: each refreshes which servers the jobs select (libvirt's list), then raises and
 * resolves `rpo.*` events. One at a time; stop() waits for the running one.
 */
function rpoChecks(o: {
  config: () => HavenConfig;
  catalog: Catalog;
  events: () => EventLog;
  virsh: Virsh;
  log: Logger;
}) {
  const { catalog, virsh, log } = o;
  let selections = new Map<string, string[]>();
  let closing = false;
  let checking: Promise<void> | undefined;
  const refreshSelections = async () => {
    selections = await jobSelections(virsh, Object.values(o.config().jobs));
  };
  const run = async () => {
    try {
      try {
        await refreshSelections();
      } catch (e) {
        log.warn('cannot list servers; RPO checks use what the catalog knows', { err: e });
      }
      if (closing) return;
      const r = checkRpo(statusRows({ config: o.config(), catalog, selections }), o.events());
      if (r.raised.length || r.resolved.length)
        log.info('RPO check', { raised: r.raised, resolved: r.resolved });
      const hostsRaised = checkHostRpo(o.config(), catalog, o.events());
      if (hostsRaised.length) log.info('host RPO check', { raised: hostsRaised });
    } catch (e) {
      // A busy catalog or a bug must not stop the daemon; the next check tries again.
      log.error('RPO check failed', { err: e });
    } finally {
      checking = undefined;
    }
  };
  return {
    get selections() {
      return selections;
    },
    check(): Promise<void> {
      if (closing || checking) return checking ?? Promise.resolve();
      checking = run();
      return checking;
    },
    async stop(): Promise<void> {
      closing = true;
      await checking;
    },
  };
}
