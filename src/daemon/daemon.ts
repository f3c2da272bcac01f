/**
 * `haven serve`: the scheduler, the HTTP API with live progress and /metrics, and the RPO checks,
 * in one process (DESIGN §3 daemon/). Runs happen in this process; their alerts go through the
 * same notifier as `haven job run`'s.
 */
import type { AddressInfo } from 'node:net';
import { type Catalog, catalogPath, openCatalog } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import type { Level, Logger } from '../core/log.ts';
import type { HavenPaths } from '../core/paths.ts';
import { Virsh } from '../engine/index.ts';
import { checkRpo, EventLog, Notifier, selectJobServers, statusRows } from '../jobs/index.ts';
import { buildApi } from './api.ts';
import { DrillRunner } from './drill-runs.ts';
import { EventHub } from './hub.ts';
import { MaintenanceTimer } from './maintenance-timer.ts';
import { createMetrics } from './metrics.ts';
import { RunManager } from './run-manager.ts';
import { Scheduler } from './scheduler.ts';
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

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const log = o.log;
  let config = o.config;
  const { token, path: tokenFile } = await ensureToken(o.paths.stateDir, log);
  const catalog = openCatalog(catalogPath(o.paths.stateDir), { log });
  for (const r of catalog.runs.abandonStale())
    log.warn(`run #${r.id} was left running by a process that ended; closed`);
  const hub = new EventHub();
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
  const drills = new DrillRunner({
    config: () => config,
    catalog,
    events: () => events,
    runDir: o.paths.runDir,
    logDir: o.paths.logDir,
    consoleLevel: o.consoleLevel ?? 'info',
    log,
  });
  const scheduler = new Scheduler({
    config: () => config,
    catalog,
    get events() {
      return events;
    },
    start: (kind, name, trigger) =>
      kind === 'drill' ? drills.start(name, trigger) : manager.start(name, trigger),
    isRunning: (kind, name) => (kind === 'drill' ? drills.isRunning(name) : manager.isRunning(name)),
    log,
  } as ConstructorParameters<typeof Scheduler>[0]);

  let selections = new Map<string, string[]>();
  const virsh = new Virsh({ log });
  const refreshSelections = async () => {
    const next = new Map<string, string[]>();
    for (const job of Object.values(config.jobs)) {
      next.set(
        job.name,
        (await selectJobServers(virsh, job.servers, log)).selected.map((s) => s.name),
      );
    }
    selections = next;
  };
  let closing = false;
  let checking: Promise<void> | undefined;
  const rpoCheck = (): Promise<void> => {
    if (closing || checking) return checking ?? Promise.resolve();
    checking = (async () => {
      try {
        try {
          await refreshSelections();
        } catch (e) {
          log.warn('cannot list servers; RPO checks use what the catalog knows', { err: e });
        }
        if (closing) return;
        const r = checkRpo(statusRows({ config, catalog, selections }), events);
        if (r.raised.length || r.resolved.length)
          log.info('RPO check', { raised: r.raised, resolved: r.resolved });
      } catch (e) {
        // A busy catalog or a bug must not stop the daemon; the next check tries again.
        log.error('RPO check failed', { err: e });
      } finally {
        checking = undefined;
      }
    })();
    return checking;
  };

  const metrics = createMetrics({
    config: () => config,
    catalog,
    selections: () => selections,
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
    selections: () => selections,
    tokenFile,
    log,
  });
  const listen = o.listen ?? config.daemon.listen;
  await app.listen({ host: listen.host, port: listen.port });
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  log.info(`listening on ${url}`, { tokenFile });

  await rpoCheck();
  scheduler.start();
  const timer = setInterval(() => void rpoCheck(), o.rpoIntervalMs ?? 60_000);
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
        log.info('configuration reloaded', { file: config.file });
      } catch (e) {
        log.error('the configuration could not be reloaded; keeping the one in use', { err: e });
      }
    },
    async close(timeoutMs = 30_000) {
      closing = true;
      clearInterval(timer);
      scheduler.stop();
      await checking;
      await maintenance.stop();
      await Promise.all([manager.stopAll(timeoutMs), drills.stopAll(timeoutMs)]);
      hub.close();
      await app.close();
      await events.flush();
      catalog.close();
    },
  };
}
