/**
 * Per protected server and target: the newest good copy, and how the last run went. Kept as its
 * own table, updated in the same transaction as each final per-server result of a protect or
 * job run, so `haven status` and /metrics read one row per pair instead of scanning history.
 */
import { type CatalogDb, type Row, rowReader } from './db.ts';
import type { ServerResultStatus, TransferMode } from './runs.ts';

export interface ServerStatus {
  server: string;
  target: string;
  /** The job of the last run that copied this pair; null for ad hoc `haven protect`. */
  job: string | null;
  /** Point in time of the newest good copy at the target (what the RPO is measured against). */
  lastGoodAt: Date | null;
  lastGoodGeneration: string | null;
  lastRunId: number | null;
  lastRunAt: Date | null;
  lastResult: ServerResultStatus | null;
  lastMode: TransferMode | null;
  lastBytesRead: number | null;
  lastBytesSent: number | null;
  lastDurationMs: number | null;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
}

/** What a final per-server result contributes. */
export interface StatusUpdate {
  server: string;
  target: string;
  job: string | null;
  runId: number;
  at: number;
  result: ServerResultStatus;
  mode: TransferMode | null;
  bytesRead: number;
  bytesSent: number;
  durationMs: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  /** Set only for a good copy: its point in time and generation. */
  goodAt: number | null;
  goodGeneration: string | null;
}

const toStatus = rowReader<ServerStatus>(
  'server target job last_good_at:date last_good_generation last_run_id last_run_at:date last_result last_mode last_bytes_read last_bytes_sent last_duration_ms last_error_code last_error_message',
);

export class StatusTable {
  private readonly upsert;
  private readonly point;
  private readonly one;
  private readonly all;
  private readonly byServer;
  private readonly delOne;
  private readonly delServer;

  constructor(private readonly c: CatalogDb) {
    // A good copy only moves last_good_at forward: a late result of an older run must not make
    // the newest copy look older than it is. (SET expressions all see the row as it was.)
    this.upsert = c.prepare(`
      INSERT INTO server_status (server, target, job, last_good_at, last_good_generation, last_run_id,
        last_run_at, last_result, last_mode, last_bytes_read, last_bytes_sent, last_duration_ms,
        last_error_code, last_error_message)
      VALUES (@server, @target, @job, @goodAt, @goodGeneration, @runId, @at, @result, @mode,
        @bytesRead, @bytesSent, @durationMs, @errorCode, @errorMessage)
      ON CONFLICT (server, target) DO UPDATE SET
        job = excluded.job,
        last_good_generation = CASE
          WHEN excluded.last_good_at IS NOT NULL AND (last_good_at IS NULL OR excluded.last_good_at >= last_good_at)
          THEN excluded.last_good_generation ELSE last_good_generation END,
        last_good_at = CASE
          WHEN excluded.last_good_at IS NOT NULL AND (last_good_at IS NULL OR excluded.last_good_at >= last_good_at)
          THEN excluded.last_good_at ELSE last_good_at END,
        last_run_id = excluded.last_run_id,
        last_run_at = excluded.last_run_at,
        last_result = excluded.last_result,
        last_mode = excluded.last_mode,
        last_bytes_read = excluded.last_bytes_read,
        last_bytes_sent = excluded.last_bytes_sent,
        last_duration_ms = excluded.last_duration_ms,
        last_error_code = excluded.last_error_code,
        last_error_message = excluded.last_error_message`);
    // A continuous lane's newest point: the copy's age without a run per point.
    this.point = c.prepare(`
      INSERT INTO server_status (server, target, job, last_good_at, last_good_generation, last_result, last_mode)
      VALUES (@server, @target, @job, @at, @point, 'ok', 'incremental')
      ON CONFLICT (server, target) DO UPDATE SET job = excluded.job,
        last_good_generation = CASE WHEN last_good_at IS NULL OR excluded.last_good_at >= last_good_at
          THEN excluded.last_good_generation ELSE last_good_generation END,
        last_good_at = max(coalesce(last_good_at, 0), excluded.last_good_at)`);
    this.one = c.prepare('SELECT * FROM server_status WHERE server = ? AND target = ?');
    this.all = c.prepare('SELECT * FROM server_status ORDER BY server, target');
    this.byServer = c.prepare('SELECT * FROM server_status WHERE server = ? ORDER BY target');
    this.delOne = c.prepare('DELETE FROM server_status WHERE server = ? AND target = ?');
    this.delServer = c.prepare('DELETE FROM server_status WHERE server = ?');
  }

  /** Called by RunsTable inside its transaction. */
  apply(u: StatusUpdate): void {
    this.upsert.run(u);
  }

  /** A point of continuous protection reached the target (docs/continuous.md). */
  notePoint(server: string, target: string, job: string | null, at: Date, pointId: string): void {
    this.c.write(() => this.point.run({ server, target, job, at: at.getTime(), point: pointId }));
  }

  get(server: string, target: string): ServerStatus | undefined {
    return this.c.read(() => {
      const r = this.one.get(server, target) as Row | undefined;
      return r ? toStatus(r) : undefined;
    });
  }

  /** Every pair, or one server's, ordered by server then target. */
  list(filter: { server?: string } = {}): ServerStatus[] {
    return this.c.read(() =>
      ((filter.server === undefined ? this.all.all() : this.byServer.all(filter.server)) as Row[]).map(
        toStatus,
      ),
    );
  }

  /** Drops a server's status (one target, or all): the server is no longer protected there. */
  forget(server: string, target?: string): number {
    return this.c.write(() =>
      target === undefined ? this.delServer.run(server).changes : this.delOne.run(server, target).changes,
    );
  }
}
