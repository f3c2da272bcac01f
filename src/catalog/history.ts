/**
 * History for charts and counters: per-server results over time, read by finish time (the
 * dashboard's series, docs/daemon.md) or by run id (metrics that must count each finished run
 * once, daemon/metrics.ts). Read-only: everything here was written by RunsTable.
 */
import { type CatalogDb, dateOrNull, limit, ms, type Row, str, strOrNull } from './db.ts';
import { type Run, type RunKind, type ServerResult, toResult, toRun } from './runs.ts';

/** A final per-server result with what its run was. */
export interface HistoryResult extends ServerResult {
  kind: RunKind;
  /** The job (or drill) the run belonged to; null for ad hoc commands. */
  job: string | null;
}

export interface HistoryFilter {
  /** Results that finished at or after this time. */
  since: Date;
  server?: string;
  target?: string;
  /** The newest this many (default 10000, at most 50000); returned oldest first. */
  limit?: number;
}

/** The newest good copy of a pair before some time: where its age series starts. */
export interface GoodCopyBefore {
  server: string;
  target: string;
  /** The point in time the copy shows (copy_at, else the finish time). */
  goodAt: Date;
}

/** A finished run with its results, for counting each once (metrics). */
export interface SettledRun extends Run {
  servers: ServerResult[];
}

function toHistory(r: Row): HistoryResult {
  return { ...toResult(r), kind: r.run_kind as RunKind, job: strOrNull(r.run_job) };
}

const COPYING = "('protect', 'job')";

export class HistoryTable {
  private readonly copies_;
  private readonly drills_;
  private readonly capacity_;
  private readonly goodBefore;
  private readonly after;
  private readonly resultsOf;

  constructor(private readonly c: CatalogDb) {
    const results = (kinds: string, extra = '') => `
      SELECT rs.*, r.kind AS run_kind, r.job AS run_job FROM run_servers rs JOIN runs r ON r.id = rs.run_id
      WHERE r.kind IN ${kinds} AND rs.status != 'running' AND rs.finished_at >= @since ${extra}
        AND (@server IS NULL OR rs.server = @server) AND (@target IS NULL OR rs.target = @target)
      ORDER BY rs.finished_at DESC, rs.run_id DESC LIMIT @limit`;
    this.copies_ = c.prepare(results(COPYING));
    this.drills_ = c.prepare(results("('drill')"));
    this.capacity_ = c.prepare(results(COPYING, 'AND rs.store_total_bytes IS NOT NULL'));
    this.goodBefore = c.prepare(`
      SELECT rs.server, rs.target, max(coalesce(rs.copy_at, rs.finished_at)) AS good_at
      FROM run_servers rs JOIN runs r ON r.id = rs.run_id
      WHERE r.kind IN ${COPYING} AND rs.status = 'ok' AND rs.finished_at < @before
      GROUP BY rs.server, rs.target`);
    this.after = c.prepare('SELECT * FROM runs WHERE id > @after ORDER BY id LIMIT @limit');
    this.resultsOf = c.prepare('SELECT * FROM run_servers WHERE run_id = ? ORDER BY server, target');
  }

  private read(stmt: typeof this.copies_, f: HistoryFilter): HistoryResult[] {
    const params = {
      since: ms(f.since),
      server: f.server ?? null,
      target: f.target ?? null,
      limit: limit(f.limit, 10_000, 50_000),
    };
    return this.c.read(() => (stmt.all(params) as Row[]).map(toHistory).reverse());
  }

  /** Final results of copies (protect and job runs), oldest first. */
  copies(f: HistoryFilter): HistoryResult[] {
    return this.read(this.copies_, f);
  }

  /** Final results of drills (target: the store; durationMs: the measured recovery time). */
  drills(f: HistoryFilter): HistoryResult[] {
    return this.read(this.drills_, f);
  }

  /** Copies whose receiver reported the store's space, oldest first. */
  capacity(f: HistoryFilter): HistoryResult[] {
    return this.read(this.capacity_, f);
  }

  /** Each pair's newest good copy among results that finished before `before`. */
  goodCopiesBefore(before: Date): GoodCopyBefore[] {
    return this.c.read(() =>
      (this.goodBefore.all({ before: ms(before) }) as Row[]).flatMap((r) => {
        const goodAt = dateOrNull(r.good_at);
        return goodAt ? [{ server: str(r.server), target: str(r.target), goodAt }] : [];
      }),
    );
  }

  /** Runs with an id above `afterId`, oldest first, each with its results. */
  runsAfter(afterId: number, max = 1000): SettledRun[] {
    return this.c.read(() =>
      (this.after.all({ after: afterId, limit: limit(max, 1000) }) as Row[]).map((r) => ({
        ...toRun(r),
        servers: (this.resultsOf.all(r.id) as Row[]).map(toResult),
      })),
    );
  }
}
