/**
 * The daemon's scheduled host backups (docs/hosts.md): `hosts.<name>.schedule` fires
 * `haven host backup <name>` in this process, one run per host at a time, each with its own log
 * file, recorded in the catalog's host runs with events like the CLI's (hosts/record.ts). The
 * host RPO check (`host.rpo.breached`) runs with the server RPO checks.
 */
import { join } from 'node:path';
import type { RunTrigger } from '../catalog/catalog.ts';
import { createLogger } from '../core/log.ts';
import { type HostBackupReport, runRecordedHostBackup, unknownHost } from '../hosts/index.ts';
import { type DrillRunnerOptions, stopRuns } from './drill-runs.ts';

/** As a drill runner's (the same daemon services), without the run directory. */
export type HostRunnerOptions = Omit<DrillRunnerOptions, 'runDir'>;

export class HostRunner {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<unknown> }>();

  constructor(private readonly o: HostRunnerOptions) {}

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  start(name: string, trigger: RunTrigger): Promise<{ runId: number; report: HostBackupReport }> {
    const config = this.o.config();
    const host = config.hosts[name];
    if (!host) return Promise.reject(unknownHost(name, Object.keys(config.hosts)));
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const logFile = join(this.o.logDir, `host-backup-${name}-${stamp}-${process.pid}.log`);
    const root = createLogger({ consoleLevel: this.o.consoleLevel, filePath: logFile });
    const log = root.child({ host: name });
    const abort = new AbortController();
    const done = runRecordedHostBackup({
      host,
      config,
      log,
      signal: abort.signal,
      catalog: this.o.catalog,
      events: this.o.events(),
      trigger,
    });
    this.running.set(name, { abort, done });
    void done
      .then(
        ({ runId, report }) =>
          this.o.log.info(
            `host backup ${name} (run #${runId}): stored${report.rescue.made ? ' with new rescue media' : ''}`,
          ),
        (e) => this.o.log.error(`host backup ${name} failed`, { err: e }),
      )
      .finally(() => {
        this.running.delete(name);
        root.close();
      });
    return done;
  }

  /** Stops every host backup (the target discards its incomplete file) and waits at most `timeoutMs`. */
  stopAll(timeoutMs: number): Promise<void> {
    return stopRuns(this.running, timeoutMs);
  }
}
