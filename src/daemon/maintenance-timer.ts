/**
 * The daemon's retention: jobs/maintenance.ts once at start and then every interval (default
 * hourly). Each part keeps its own pace across every Haven process of the host (logs and history
 * hourly, the stale-checkpoint sweep daily), so a CLI run that already pruned is not repeated.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import type { Virsh } from '../engine/index.ts';
import { RETENTION_EVERY_MS, runMaintenance } from '../jobs/index.ts';

export interface MaintenanceTimerOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  virsh: Virsh;
  logDir: string;
  log: Logger;
  intervalMs?: number;
}

export class MaintenanceTimer {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: MaintenanceTimerOptions) {
    void this.run();
    this.timer = setInterval(() => void this.run(), o.intervalMs ?? RETENTION_EVERY_MS);
    this.timer.unref();
  }

  /** One round now, unless one is going (then that one). */
  run(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.round().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async round(): Promise<void> {
    const { log } = this.o;
    try {
      const r = await runMaintenance({
        config: this.o.config(),
        logDir: this.o.logDir,
        catalog: this.o.catalog,
        virsh: this.o.virsh,
        log,
      });
      const sweep = r.checkpoints?.servers.filter((s) => (s.result?.deleted.length ?? 0) > 0) ?? [];
      if (r.logs?.deleted.length || r.history?.runs || r.history?.events || sweep.length) {
        log.info('retention', {
          logsDeleted: r.logs?.deleted.length ?? 0,
          runsDeleted: r.history?.runs ?? 0,
          eventsDeleted: r.history?.events ?? 0,
          checkpointsDeleted: Object.fromEntries(sweep.map((s) => [s.server, s.result?.deleted ?? []])),
        });
      }
    } catch (e) {
      // libvirt down or a busy catalog: the next round tries again.
      log.warn('retention failed; trying again at the next round', { err: e });
    }
  }

  /** Stops the timer and waits for a round in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
