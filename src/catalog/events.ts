/**
 * The event log (what happened, for the dashboard, the API's SSE stream and alerts) and the
 * alert bookkeeping beside it.
 *
 * A *problem* is an open condition named by a dedup key, e.g. `rpo:web01:dr1`. Each warning or
 * worse event carrying the key opens the problem or adds to it; the alerter asks
 * `isAlertedAndOpen(key, severity)` and sends only when the problem was not alerted yet (or only
 * at a lower severity: an escalation is news), then calls `markAlerted`. When the condition
 * clears, `resolve(key)` closes the problem, and the next occurrence opens a new one. So: one
 * alert per problem, not one per minute.
 */
import {
  type CatalogDb,
  limit,
  ms,
  nonEmpty,
  oneOf,
  optionalText,
  type Row,
  rowReader,
  toJson,
} from './db.ts';
import { badValue, notFound } from './errors.ts';

export const SEVERITIES = ['info', 'warning', 'error', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Numeric order of severities: info 0 ... critical 3. */
export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** Event types are dotted lower-case words: run.started, rpo.breached, cache.problem. */
const TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

export interface EventRecord {
  id: number;
  at: Date;
  severity: Severity;
  type: string;
  server: string | null;
  job: string | null;
  target: string | null;
  runId: number | null;
  message: string;
  data: unknown;
  dedupKey: string | null;
  alertedAt: Date | null;
}

export interface EventInput {
  type: string;
  severity: Severity;
  message: string;
  server?: string;
  job?: string;
  target?: string;
  runId?: number;
  data?: unknown;
  dedupKey?: string;
  at?: Date;
}

export interface EventFilter {
  /** Only events after this id, oldest first (tailing). Without it: newest first. */
  afterId?: number;
  /** Only events before this id (paging back). */
  beforeId?: number;
  minSeverity?: Severity;
  type?: string;
  server?: string;
  job?: string;
  target?: string;
  since?: Date;
  /** Default 100, at most 10000. */
  limit?: number;
}

export interface Problem {
  dedupKey: string;
  openedAt: Date;
  firstEventId: number;
  lastEventId: number;
  lastSeenAt: Date;
  occurrences: number;
  /** The highest severity seen while open. */
  severity: Severity;
  alertedAt: Date | null;
  alertedSeverity: Severity | null;
}

const toEvent = rowReader<EventRecord>(
  'id at:date severity type server job target run_id message data:json dedup_key alerted_at:date',
);

const toProblem = rowReader<Problem>(
  'dedup_key opened_at:date first_event_id last_event_id last_seen_at:date occurrences severity alerted_at:date alerted_severity',
);

export class EventsTable {
  private readonly insert;
  private readonly one;
  private readonly listAfter;
  private readonly listDesc;
  private readonly openStmt;
  private readonly problem;
  private readonly problems;
  private readonly alertEvent;
  private readonly alertProblem;
  private readonly resolveStmt;
  private readonly pruneStmt;
  private readonly prunableStmt;

  constructor(private readonly c: CatalogDb) {
    this.insert = c.prepare(`
      INSERT INTO events (at, severity, type, server, job, target, run_id, message, data, dedup_key)
      VALUES (@at, @severity, @type, @server, @job, @target, @runId, @message, @data, @dedupKey) RETURNING *`);
    this.one = c.prepare('SELECT * FROM events WHERE id = ?');
    const where = `(@minRank IS NULL OR CASE severity WHEN 'info' THEN 0 WHEN 'warning' THEN 1 WHEN 'error' THEN 2
        ELSE 3 END >= @minRank)
      AND (@type IS NULL OR type = @type) AND (@server IS NULL OR server = @server)
      AND (@job IS NULL OR job = @job) AND (@target IS NULL OR target = @target)
      AND (@since IS NULL OR at >= @since) AND (@beforeId IS NULL OR id < @beforeId)`;
    this.listAfter = c.prepare(
      `SELECT * FROM events WHERE id > @afterId AND ${where} ORDER BY id LIMIT @limit`,
    );
    this.listDesc = c.prepare(`SELECT * FROM events WHERE ${where} ORDER BY id DESC LIMIT @limit`);
    this.openStmt = c.prepare(`
      INSERT INTO problems (dedup_key, opened_at, first_event_id, last_event_id, last_seen_at, severity)
      VALUES (@dedupKey, @at, @id, @id, @at, @severity)
      ON CONFLICT (dedup_key) DO UPDATE SET
        last_event_id = excluded.last_event_id, last_seen_at = excluded.last_seen_at,
        occurrences = occurrences + 1,
        severity = CASE WHEN @rank > (CASE severity WHEN 'info' THEN 0 WHEN 'warning' THEN 1 WHEN 'error' THEN 2
          ELSE 3 END) THEN excluded.severity ELSE severity END`);
    this.problem = c.prepare('SELECT * FROM problems WHERE dedup_key = ?');
    this.problems = c.prepare('SELECT * FROM problems ORDER BY opened_at, dedup_key');
    this.alertEvent = c.prepare('UPDATE events SET alerted_at = ? WHERE id = ? RETURNING *');
    // Keep the highest severity alerted so far, so only an escalation alerts again.
    this.alertProblem = c.prepare(`
      UPDATE problems SET alerted_at = @at, alerted_severity = CASE
        WHEN alerted_severity IS NULL OR @rank > (CASE alerted_severity WHEN 'info' THEN 0 WHEN 'warning' THEN 1
          WHEN 'error' THEN 2 ELSE 3 END) THEN @severity ELSE alerted_severity END
      WHERE dedup_key = @dedupKey`);
    this.resolveStmt = c.prepare('DELETE FROM problems WHERE dedup_key = ?');
    // An open problem's first and last events stay: its alert and the dashboard link to them.
    const prunable = `FROM events WHERE at < @before
      AND id NOT IN (SELECT first_event_id FROM problems) AND id NOT IN (SELECT last_event_id FROM problems)`;
    this.pruneStmt = c.prepare(`DELETE ${prunable}`);
    this.prunableStmt = c.prepare(`SELECT count(*) AS n ${prunable}`);
  }

  /** Appends an event; a warning or worse with a dedup key opens (or adds to) its problem. */
  append(input: EventInput): EventRecord {
    if (typeof input.type !== 'string' || !TYPE.test(input.type)) {
      throw badValue('event type', input.type, 'dotted lower-case words such as run.failed');
    }
    const row = {
      at: ms(input.at),
      severity: oneOf('severity', input.severity, SEVERITIES),
      type: input.type,
      server: optionalText('server name', input.server),
      job: optionalText('job name', input.job),
      target: optionalText('target', input.target),
      runId: input.runId ?? null,
      message: nonEmpty('event message', input.message),
      data: toJson(input.data),
      dedupKey: optionalText('dedup key', input.dedupKey),
    };
    return this.c.write(() => {
      const ev = toEvent(this.insert.get(row) as Row);
      if (ev.dedupKey !== null && ev.severity !== 'info') {
        this.openStmt.run({
          dedupKey: ev.dedupKey,
          at: row.at,
          id: ev.id,
          severity: ev.severity,
          rank: severityRank(ev.severity),
        });
      }
      return ev;
    });
  }

  get(id: number): EventRecord | undefined {
    return this.c.read(() => {
      const r = this.one.get(id) as Row | undefined;
      return r ? toEvent(r) : undefined;
    });
  }

  /** Newest first, or oldest first after `afterId` (for tailing). */
  list(filter: EventFilter = {}): EventRecord[] {
    const params = {
      afterId: filter.afterId ?? null,
      beforeId: filter.beforeId ?? null,
      minRank:
        filter.minSeverity === undefined
          ? null
          : severityRank(oneOf('severity', filter.minSeverity, SEVERITIES)),
      type: filter.type ?? null,
      server: filter.server ?? null,
      job: filter.job ?? null,
      target: filter.target ?? null,
      since: filter.since === undefined ? null : ms(filter.since),
      limit: limit(filter.limit, 100),
    };
    return this.c.read(() =>
      ((params.afterId === null ? this.listDesc : this.listAfter).all(params) as Row[]).map(toEvent),
    );
  }

  /** Notes that an alert went out for this event (and for its problem, if it has one). */
  markAlerted(id: number, at?: Date): EventRecord {
    const when = ms(at);
    return this.c.write(() => {
      const r = this.alertEvent.get(when, id) as Row | undefined;
      if (!r) throw notFound('event', `#${id}`, { id });
      const ev = toEvent(r);
      if (ev.dedupKey !== null) {
        this.alertProblem.run({
          at: when,
          dedupKey: ev.dedupKey,
          severity: ev.severity,
          rank: severityRank(ev.severity),
        });
      }
      return ev;
    });
  }

  /**
   * True when the problem is open and an alert at `severity` or higher already went out for it:
   * the caller should not alert again.
   */
  isAlertedAndOpen(dedupKey: string, severity: Severity = 'info'): boolean {
    const p = this.openProblem(dedupKey);
    return (
      p !== undefined &&
      p.alertedSeverity !== null &&
      severityRank(p.alertedSeverity) >= severityRank(oneOf('severity', severity, SEVERITIES))
    );
  }

  openProblem(dedupKey: string): Problem | undefined {
    return this.c.read(() => {
      const r = this.problem.get(dedupKey) as Row | undefined;
      return r ? toProblem(r) : undefined;
    });
  }

  openProblems(): Problem[] {
    return this.c.read(() => (this.problems.all() as Row[]).map(toProblem));
  }

  /** Closes the problem; returns it as it was, or undefined if it was not open. */
  resolve(dedupKey: string): Problem | undefined {
    return this.c.write(() => {
      const r = this.problem.get(dedupKey) as Row | undefined;
      if (!r) return undefined;
      this.resolveStmt.run(dedupKey);
      return toProblem(r);
    });
  }

  /**
   * Deletes events older than `before`, except the first and last of each open problem (open
   * problems keep their counts). Returns how many went (with `dryRun`, how many would).
   */
  prune(before: Date, options: { dryRun?: boolean } = {}): number {
    const t = { before: ms(before) };
    if (options.dryRun) return this.c.read(() => (this.prunableStmt.get(t) as { n: number }).n);
    return this.c.write(() => this.pruneStmt.run(t).changes);
  }
}
