/**
 * Periodic clean-up: log retention, catalog history retention and the stale-checkpoint sweep, as
 * the daemon runs them on a timer and `haven prune` runs them at once. Each part keeps its own
 * pace, shared by every Haven process on the host: logs and history at most hourly (a stamp file
 * in the log directory, a claim in the catalog), the checkpoint sweep, which asks libvirt about
 * every server with checkpoints, at most daily. `force` runs every part now.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import type { Virsh } from '../engine/index.ts';
import {
  claimLogRetention,
  type HistoryRetentionResult,
  type LogRetentionResult,
  pruneHistory,
  pruneLogs,
  RETENTION_EVERY_MS,
} from './retention.ts';
import { type CheckpointSweep, sweepCheckpoints } from './stale-checkpoints.ts';

export const SWEEP_EVERY_MS = 24 * 3_600_000;

export interface MaintenanceOptions {
  config: HavenConfig;
  logDir: string;
  /** Without it, only the log directory is looked after. */
  catalog?: Catalog;
  /** Without it, no checkpoint sweep. */
  virsh?: Virsh;
  log: Logger;
  now?: Date;
  /** Run every part now, whatever the stamps say. */
  force?: boolean;
  dryRun?: boolean;
  /** Log files never deleted (this process's own). */
  keepLogs?: readonly string[];
}

/** What each part did; null when it was not due (or had nothing to work on). */
export interface MaintenanceReport {
  dryRun: boolean;
  logs: LogRetentionResult | null;
  history: HistoryRetentionResult | null;
  checkpoints: CheckpointSweep | null;
}

function due(o: MaintenanceOptions, task: string, everyMs: number, now: Date): boolean {
  if (!o.catalog) return false;
  if (!o.force) return o.catalog.maintenance.claim(task, everyMs, now);
  if (!o.dryRun) o.catalog.maintenance.stamp(task, now);
  return true;
}

export async function runMaintenance(o: MaintenanceOptions): Promise<MaintenanceReport> {
  const now = o.now ?? new Date();
  const dryRun = o.dryRun === true;
  const report: MaintenanceReport = { dryRun, logs: null, history: null, checkpoints: null };
  const logsDue = o.force ? true : await claimLogRetention(o.logDir, now);
  if (logsDue) {
    report.logs = await pruneLogs(o.logDir, o.config.retention.logs, {
      now,
      dryRun,
      keep: o.keepLogs,
      log: o.log,
    });
  }
  if (due(o, 'history', RETENTION_EVERY_MS, now)) {
    report.history = pruneHistory(o.catalog!, o.config.retention, { now, dryRun });
    o.log.verbose('history retention', { ...report.history, dryRun });
  }
  if (o.virsh && due(o, 'checkpoints', SWEEP_EVERY_MS, now)) {
    report.checkpoints = await sweepCheckpoints({
      config: o.config,
      catalog: o.catalog!,
      virsh: o.virsh,
      log: o.log,
      now,
      dryRun,
    });
  }
  return report;
}
