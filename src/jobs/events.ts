/**
 * Writing events to the catalog and handing them to the notifier. Every problem has a dedup key,
 * so it is alerted once and resolved once:
 *
 * | key                      | opened by                                    | resolved by                                |
 * | ------------------------ | -------------------------------------------- | ------------------------------------------ |
 * | `copy:<server>:<target>` | server.failed, verify.failed                 | the next good copy of that pair            |
 * | `run:<job>`              | run.failed (the run could not start its copies) | the next run that gets to copying      |
 * | `rpo:<server>:<target>`  | rpo.breached                                 | a good copy within the objective again     |
 * | `cache:<job>`            | cache.problem                                | a run of the job that staged without one   |
 */
import type { Catalog, EventInput, EventRecord } from '../catalog/catalog.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import type { Notifier } from './notify.ts';

export const dedupKeys = {
  copy: (server: string, target: string) => `copy:${server}:${target}`,
  run: (job: string) => `run:${job}`,
  rpo: (server: string, target: string) => `rpo:${server}:${target}`,
  cache: (job: string) => `cache:${job}`,
};

export class EventLog {
  private pending: Promise<void> = Promise.resolve();

  constructor(
    readonly catalog: Catalog,
    private readonly notifier: Notifier | undefined,
    private readonly log: Logger = silentLogger,
    /** Told about every event appended (the daemon streams them). */
    private readonly onEvent?: (e: EventRecord) => void,
  ) {}

  emit(input: EventInput): EventRecord {
    const ev = this.catalog.events.append(input);
    this.onEvent?.(ev);
    const level = ev.severity === 'info' ? 'verbose' : 'warn';
    this.log[level](`event ${ev.type}: ${ev.message}`, { event: ev.id, severity: ev.severity });
    this.queue(ev);
    return ev;
  }

  /** Sends (again) an event that is due and not alerted yet, e.g. after a failed delivery. */
  queue(ev: EventRecord): void {
    const notifier = this.notifier;
    if (!notifier) return;
    this.pending = this.pending
      .then(async () => {
        const r = await notifier.deliver(this.catalog, ev);
        for (const f of r.failed) {
          const failed = this.catalog.events.append({
            type: 'alert.failed',
            severity: 'warning',
            message: `the ${f.channel} alert for event #${ev.id} could not be sent: ${f.error.message}`,
            data: { event: ev.id, channel: f.channel, code: f.error.code },
          });
          this.onEvent?.(failed);
        }
      })
      .catch((e) => this.log.warn('alert delivery failed', { err: e }));
  }

  /**
   * Closes the problem `dedupKey`. When it was open, records `event` (an info event saying it is
   * over) and returns true.
   */
  resolve(dedupKey: string, event?: EventInput): boolean {
    const was = this.catalog.events.resolve(dedupKey);
    if (!was) return false;
    if (event) this.emit(event);
    return true;
  }

  /** Waits until every alert queued so far was sent (or failed). */
  async flush(): Promise<void> {
    await this.pending;
  }
}
