/**
 * Host backups and host drills as recorded runs, shared by the CLI and the daemon: a row in the
 * catalog's host runs, and events whose problems are alerted once and resolved once
 * (docs/hosts.md, "Events and alerts"):
 *
 * | key                          | opened by           | resolved by                            |
 * | ---------------------------- | ------------------- | -------------------------------------- |
 * | `host-backup:<host>`         | host.backup.failed  | the next good backup (host.backup.ok)  |
 * | `host-drill:<store>:<host>`  | host.drill.failed   | the next passing drill                 |
 * | `host-rpo:<host>`            | host.rpo.breached   | a backup within the objective again    |
 */
import type { Catalog, HostRun, RunTrigger } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { asHavenError } from '../core/errors.ts';
import { formatBytes, formatDuration } from '../core/units.ts';
import type { EventLog } from '../jobs/index.ts';
import { backupHost, type HostBackupOptions, type HostBackupReport } from './backup.ts';
import { drillHost, type HostDrillOptions, type HostDrillResult, hostDrillDedupKey } from './drill.ts';

export const hostDedupKeys = {
  backup: (host: string) => `host-backup:${host}`,
  rpo: (host: string) => `host-rpo:${host}`,
};

export interface Recorder {
  catalog: Catalog;
  events: EventLog;
  trigger: RunTrigger;
}

export async function runRecordedHostBackup(
  o: HostBackupOptions & Recorder,
): Promise<{ runId: number; report: HostBackupReport }> {
  const { catalog, events, trigger, ...options } = o;
  const host = o.host.name;
  const run = catalog.hostRuns.start({
    host,
    kind: 'backup',
    trigger,
    target: o.target ?? o.host.target ?? '',
  });
  try {
    const report = await backupHost(options);
    const bytes = (report.rescue.stored?.bytes ?? 0) + (report.backup.stored?.bytes ?? 0);
    catalog.hostRuns.finish(run.id, {
      status: 'ok',
      rescueMade: report.rescue.made,
      bytes,
      ...(report.backup.stored ? { generationId: report.backup.stored.id } : {}),
      ...(report.backup.takenAt ? { takenAt: new Date(report.backup.takenAt) } : {}),
      summary: report,
    });
    events.resolve(hostDedupKeys.backup(host));
    events.emit({
      type: 'host.backup.ok',
      severity: 'info',
      server: host,
      target: report.target,
      runId: run.id,
      message: `host ${host}: backup stored (${formatBytes(report.backup.stored?.bytes ?? 0)})${report.rescue.made ? `, with new rescue media: ${report.rescue.reason}` : ''}`,
      data: { rescueMade: report.rescue.made, seconds: report.seconds },
    });
    checkHostRpo(o.config, catalog, events);
    return { runId: run.id, report };
  } catch (e) {
    const err = asHavenError(e);
    const cancelled = err.kind === 'interrupted' || o.signal?.aborted === true;
    catalog.hostRuns.finish(run.id, {
      status: cancelled ? 'cancelled' : 'failed',
      errorCode: err.code,
      errorMessage: err.message,
    });
    if (!cancelled) {
      events.emit({
        type: 'host.backup.failed',
        severity: 'error',
        server: host,
        runId: run.id,
        message: `host ${host}: backup failed: ${err.message.split('\n')[0]}`,
        data: { code: err.code, details: err.details },
        dedupKey: hostDedupKeys.backup(host),
      });
    }
    throw err;
  }
}

export async function runRecordedHostDrill(
  o: HostDrillOptions & Recorder,
): Promise<{ runId: number; result: HostDrillResult }> {
  const { catalog, events, trigger, ...options } = o;
  const run = catalog.hostRuns.start({ host: o.host, kind: 'drill', trigger, target: o.store.location });
  const result = await drillHost(options);
  catalog.hostRuns.finish(run.id, {
    status: result.result === 'pass' ? 'ok' : o.signal?.aborted ? 'cancelled' : 'failed',
    seconds: result.seconds,
    ...(result.backup ? { generationId: result.backup.id, takenAt: new Date(result.backup.takenAt) } : {}),
    summary: result,
    ...(result.error
      ? { errorCode: String(result.error.code), errorMessage: String(result.error.message) }
      : {}),
  });
  const key = hostDrillDedupKey(o.store.descriptor.id, o.host);
  const data = { ...result, consoleTail: result.consoleTail?.slice(-2000) };
  if (result.result === 'pass') {
    events.resolve(key);
    events.emit({
      type: 'host.drill.passed',
      severity: 'info',
      server: o.host,
      runId: run.id,
      message: `drill of host ${o.host} passed: backup _${result.backup?.seq} recovered and booted in ${formatDuration(result.seconds * 1000)}`,
      data,
    });
  } else if (!o.signal?.aborted) {
    events.emit({
      type: 'host.drill.failed',
      severity: 'error',
      server: o.host,
      runId: run.id,
      message: `drill of host ${o.host} failed: ${result.detail?.split('\n')[0] ?? 'unknown reason'}`,
      data,
      dedupKey: key,
    });
  }
  return { runId: run.id, result };
}

/** Newest good backup of a host and its age, from the catalog. */
export function hostBackupAge(
  catalog: Catalog,
  host: string,
  now = new Date(),
): { lastOk: HostRun | undefined; ageMs: number | null } {
  const { lastOk } = catalog.hostRuns.latest(host, 'backup');
  const at = lastOk?.takenAt ?? lastOk?.finishedAt;
  return { lastOk, ageMs: at ? now.getTime() - at.getTime() : null };
}

/**
 * Raises `host.rpo.breached` once for each host whose newest good backup is older than its
 * objective (or that has tried and never succeeded), and resolves it when a backup is in time.
 */
export function checkHostRpo(
  config: HavenConfig,
  catalog: Catalog,
  events: EventLog,
  now = new Date(),
): string[] {
  const raised: string[] = [];
  for (const h of Object.values(config.hosts)) {
    if (h.rpoMs === undefined) continue;
    const key = hostDedupKeys.rpo(h.name);
    const { ageMs } = hostBackupAge(catalog, h.name, now);
    const tried = catalog.hostRuns.latest(h.name, 'backup').last !== undefined;
    const breached = ageMs === null ? tried : ageMs > h.rpoMs;
    if (breached) {
      if (catalog.events.openProblem(key)) continue;
      events.emit({
        type: 'host.rpo.breached',
        severity: 'error',
        server: h.name,
        message:
          ageMs === null
            ? `host ${h.name}: no good backup yet (objective ${formatDuration(h.rpoMs)})`
            : `host ${h.name}: the newest backup is ${formatDuration(ageMs)} old, beyond the objective of ${formatDuration(h.rpoMs)}`,
        data: { rpoMs: h.rpoMs, ageMs },
        dedupKey: key,
        at: now,
      });
      raised.push(key);
    } else if (ageMs !== null) {
      events.resolve(key, {
        type: 'host.rpo.recovered',
        severity: 'info',
        server: h.name,
        message: `host ${h.name}: within the objective of ${formatDuration(h.rpoMs)} again`,
        at: now,
      });
    }
  }
  return raised;
}
