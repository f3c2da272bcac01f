/**
 * Scheduled scrubbing (issue 13.5): the daemon runs `haven verify` on a store of this DR host on
 * each scrub's schedule (`scrubs.<name>` in the configuration), like a ZFS scrub. Each scrub is a
 * run of kind `verify` (job = the scrub's name, a result per server: ok, or failed with the first
 * problem). A server with damage raises `scrub.damaged` (severity error: alerted once by the
 * configured email and webhook, then recorded as the same problem until it is gone); a clean one
 * resolves it with `scrub.passed`. Damage in a newest generation is also marked for the next run
 * to send again from the source (store/common/resend.ts), which the event says.
 */
import type { Catalog, RunTrigger } from '../catalog/catalog.ts';
import type { HavenConfig, ScrubConfig } from '../core/config.ts';
import { asHavenError, HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { EventLog } from '../jobs/index.ts';
import { openStore, type VerifyProblem } from '../store/index.ts';
import { RunSlots } from './run-slots.ts';

export interface ScrubRunnerOptions {
  config: () => HavenConfig;
  catalog: Catalog;
  events: () => EventLog;
  log: Logger;
}

export interface ScrubResult {
  runId: number;
  ok: boolean;
  problems: number;
}

const dedupKey = (scrub: string, server: string) => `scrub:${scrub}:${server}`;

/** Verifies the scrub's store and records the run, per server, and its events. */
export async function runRecordedScrub(
  settings: ScrubConfig,
  o: { catalog: Catalog; events: EventLog; trigger: RunTrigger; signal?: AbortSignal; log: Logger },
): Promise<ScrubResult> {
  const { catalog, events } = o;
  const run = catalog.runs.start({ kind: 'verify', job: settings.name, trigger: o.trigger });
  try {
    const store = await openStore(settings.store, { log: o.log });
    let report: Awaited<ReturnType<typeof store.verify>>;
    let servers: string[];
    try {
      servers = await store.listServers();
      report = await store.verify(undefined, { readImages: true, ...(o.signal ? { signal: o.signal } : {}) });
    } finally {
      await store.close();
    }
    const byServer = new Map<string, VerifyProblem[]>();
    for (const p of report.problems) byServer.set(p.server, [...(byServer.get(p.server) ?? []), p]);
    for (const server of new Set([...servers, ...byServer.keys()]))
      recordServer(settings, run.id, server, byServer.get(server) ?? [], o);
    catalog.runs.finish(run.id, {
      status: report.ok ? 'ok' : 'failed',
      ...(report.problems[0]
        ? {
            errorCode: report.problems[0].code,
            errorMessage: `${report.problems.length} problem(s) in ${settings.store}, first: ${report.problems[0].message}`,
          }
        : {}),
      summary: { store: settings.store, problems: report.problems.length, checkedBytes: report.checkedBytes },
    });
    return { runId: run.id, ok: report.ok, problems: report.problems.length };
  } catch (e) {
    const err = asHavenError(e);
    catalog.runs.finish(run.id, { status: 'failed', errorCode: err.code, errorMessage: err.message });
    events.emit({
      type: 'scrub.failed',
      severity: 'error',
      job: settings.name,
      runId: run.id,
      message: `scrub ${settings.name} could not check ${settings.store}: ${err.message}`,
      data: { code: err.code, store: settings.store },
      dedupKey: `scrub-store:${settings.name}`,
    });
    throw err;
  }
}

function recordServer(
  settings: ScrubConfig,
  runId: number,
  server: string,
  problems: VerifyProblem[],
  o: { catalog: Catalog; events: EventLog },
): void {
  const first = problems[0];
  o.catalog.runs.recordServer(runId, {
    server,
    target: settings.store,
    status: first ? 'failed' : 'ok',
    ...(first ? { errorCode: first.code, errorMessage: first.message } : {}),
  });
  const key = dedupKey(settings.name, server);
  if (!first) {
    if (o.catalog.events.resolve(key)) {
      o.events.emit({
        type: 'scrub.passed',
        severity: 'info',
        server,
        job: settings.name,
        runId,
        message: `scrub ${settings.name}: ${server} verifies again in ${settings.store}`,
        data: { store: settings.store },
      });
    }
    return;
  }
  const damaged = problems.filter((p) => p.code === 'STORE_DIGEST_MISMATCH');
  o.events.emit({
    type: 'scrub.damaged',
    severity: 'error',
    server,
    job: settings.name,
    runId,
    message: `scrub ${settings.name}: ${server} has ${problems.length} problem(s) in ${settings.store}: ${first.message}${damaged.length ? '; the next haven protect sends damaged chunks of the newest generation again from the source' : ''}`,
    data: {
      store: settings.store,
      problems: problems.map((p) => ({
        code: p.code,
        seq: p.seq,
        disk: p.disk,
        badChunks: p.badChunks?.length,
      })),
    },
    dedupKey: key,
  });
}

/** The daemon's scheduled scrubs: one run of a scrub at a time. */
export class ScrubRunner {
  private readonly slots = new RunSlots();

  constructor(private readonly o: ScrubRunnerOptions) {}

  isRunning(name: string): boolean {
    return this.slots.isRunning(name);
  }

  start(name: string, trigger: RunTrigger): Promise<ScrubResult> {
    const settings = this.o.config().scrubs[name];
    if (!settings) {
      return Promise.reject(
        new HavenError('SCRUB_NOT_FOUND', `no scrub named ${name} in the configuration`, {
          kind: 'not-found',
          hint: 'Scrubs are configured under scrubs: in haven.yaml; reload the daemon (haven serve) after adding one.',
          details: { scrub: name },
        }),
      );
    }
    const log = this.o.log.child({ scrub: name });
    const abort = new AbortController();
    const done = runRecordedScrub(settings, {
      catalog: this.o.catalog,
      events: this.o.events(),
      trigger,
      signal: abort.signal,
      log,
    });
    this.slots.hold(name, abort, done);
    void done.then(
      (r) =>
        log.info(
          `scrub ${name} (run #${r.runId}): ${r.ok ? 'the store verifies' : `${r.problems} problem(s)`}`,
        ),
      (e) => log.error(`scrub ${name} could not run`, { err: e }),
    );
    return done;
  }

  /** Stops every scrub and waits at most `timeoutMs`. */
  stopAll(timeoutMs: number): Promise<void> {
    return this.slots.stopAll(timeoutMs);
  }
}
