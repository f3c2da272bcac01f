/**
 * A drill as a recorded run: `haven drill` and the daemon's schedule both run a configured drill
 * through here, so each is a run of kind `drill` in the catalog with a result per server, and its
 * outcomes are events: a failed drill opens a problem that is alerted once, a passing one
 * resolves it (docs/recovery.md "Drills").
 */
import { join } from 'node:path';
import type { Catalog, RunTrigger } from '../catalog/catalog.ts';
import type { DrillConfig, HavenConfig } from '../core/config.ts';
import { asHavenError, HavenError } from '../core/errors.ts';
import { createLogger, type Level, type Logger } from '../core/log.ts';
import type { HostDrillResult } from '../hosts/index.ts';
import type { EventLog } from '../jobs/index.ts';
import { type DrillReport, type RecoveryEvent, type RunDrillDeps, runDrill } from '../recovery/index.ts';
import { Virsh } from '../virt/index.ts';
import { runDrillHosts } from './drill-hosts.ts';
import { RunSlots } from './run-slots.ts';

export interface RecordedDrillOptions extends Omit<RunDrillDeps, 'onEvent'> {
  settings: DrillConfig;
  catalog: Catalog;
  events: EventLog;
  trigger: RunTrigger;
  logFile?: string;
}

export interface RecordedDrill {
  runId: number;
  report: DrillReport;
  /** The drill's `hosts:`, each also a host run of its own (docs/hosts.md). */
  hosts: HostDrillResult[];
}

function recordEvent(events: EventLog, e: RecoveryEvent, runId: number, drill: string): void {
  events.emit({
    type: e.type,
    severity: e.severity,
    message: e.message,
    server: e.server,
    job: drill,
    runId,
    data: e.data,
    dedupKey: e.dedupKey,
  });
  if (e.type === 'drill.passed') events.catalog.events.resolve(e.dedupKey);
}

/** Runs the drill and records it; throws only when the store cannot be opened (recorded too). */
export async function runRecordedDrill(o: RecordedDrillOptions): Promise<RecordedDrill> {
  const { settings, catalog, events, trigger, logFile, ...deps } = o;
  const run = catalog.runs.start({ kind: 'drill', job: settings.name, trigger });
  try {
    const report = await runDrill(settings, {
      ...deps,
      onEvent: (e) => recordEvent(events, e, run.id, settings.name),
    });
    const hosts = deps.signal?.aborted
      ? []
      : await runDrillHosts({
          settings,
          catalog,
          events,
          trigger,
          virsh: deps.virsh,
          runDir: deps.runDir,
          log: deps.log,
          ...(deps.signal ? { signal: deps.signal } : {}),
        });
    const passed = report.passed + hosts.filter((h) => h.result === 'pass').length;
    const failed = report.failed + hosts.filter((h) => h.result !== 'pass').length;
    catalog.transaction(() => {
      for (const r of report.results) {
        catalog.runs.recordServer(run.id, {
          server: r.server,
          target: report.store,
          status: r.result === 'pass' ? 'ok' : 'failed',
          durationMs: Math.round(r.seconds * 1000),
          ...(r.generation ? { generationId: r.generation.id } : {}),
          ...(r.error ? { errorCode: r.error.code as string, errorMessage: r.error.message as string } : {}),
        });
      }
      const verdict = failed === 0 ? 'ok' : passed === 0 ? 'failed' : 'partial';
      catalog.runs.finish(run.id, {
        // Stopped by the operator or the daemon: not a verdict on the servers it did not finish.
        status: deps.signal?.aborted ? 'cancelled' : verdict,
        summary: {
          passed,
          failed,
          ...(hosts.length
            ? { hosts: hosts.map((h) => ({ host: h.host, result: h.result, seconds: h.seconds })) }
            : {}),
          ...(logFile ? { logFile } : {}),
        },
      });
    });
    return { runId: run.id, report, hosts };
  } catch (e) {
    const err = asHavenError(e);
    catalog.runs.finish(run.id, { status: 'failed', errorCode: err.code, errorMessage: err.message });
    events.emit({
      type: 'drill.failed',
      severity: 'error',
      job: settings.name,
      runId: run.id,
      message: `drill ${settings.name} could not run: ${err.message}`,
      data: { code: err.code, store: settings.store },
      dedupKey: `drill-store:${settings.name}`,
    });
    throw err;
  }
}

export interface DrillRunnerOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  events: () => EventLog;
  runDir: string;
  logDir: string;
  consoleLevel: Level;
  log: Logger;
}

/** The daemon's scheduled drills: one run of a drill at a time, each with its own log file. */
export class DrillRunner {
  private readonly slots = new RunSlots();

  constructor(private readonly o: DrillRunnerOptions) {}

  isRunning(name: string): boolean {
    return this.slots.isRunning(name);
  }

  start(name: string, trigger: RunTrigger): Promise<RecordedDrill> {
    const config = this.o.config();
    const settings = config.drills[name];
    if (!settings) {
      return Promise.reject(
        new HavenError('DRILL_NOT_FOUND', `no drill named ${name} in the configuration`, {
          kind: 'not-found',
          hint: 'Drills are configured under drills: in haven.yaml; reload the daemon after adding one.',
          details: { drill: name },
        }),
      );
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const logFile = join(this.o.logDir, `drill-${name}-${stamp}-${process.pid}.log`);
    const root = createLogger({ consoleLevel: this.o.consoleLevel, filePath: logFile });
    const log = root.child({ drill: name });
    const abort = new AbortController();
    const done = runRecordedDrill({
      settings,
      catalog: this.o.catalog,
      events: this.o.events(),
      trigger,
      logFile,
      virsh: new Virsh({ log }),
      runDir: this.o.runDir,
      rules: config.definitions,
      networks: { site: config.networks },
      log,
      signal: abort.signal,
    });
    this.slots.hold(name, abort, done);
    void done
      .then(
        ({ runId, report, hosts }) =>
          this.o.log.info(
            `drill ${name} (run #${runId}): ${report.passed} passed, ${report.failed} failed${hosts.length ? `; hosts: ${hosts.map((h) => `${h.host} ${h.result}`).join(', ')}` : ''}`,
          ),
        (e) => this.o.log.error(`drill ${name} could not run`, { err: e }),
      )
      .finally(() => root.close());
    return done;
  }

  /** Stops every drill (its domains are removed by the drill itself) and waits at most `timeoutMs`. */
  stopAll(timeoutMs: number): Promise<void> {
    return this.slots.stopAll(timeoutMs);
  }
}

/** Aborts every run of a runner and waits until they end, at most `timeoutMs`. */
export async function stopRuns(
  running: Map<string, { abort: AbortController; done: Promise<unknown> }>,
  timeoutMs: number,
): Promise<void> {
  const all = [...running.values()];
  for (const r of all) r.abort.abort();
  await Promise.race([
    Promise.allSettled(all.map((r) => r.done)),
    new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
  ]);
}
