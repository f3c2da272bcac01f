/**
 * Runs (one execution of a job, an ad hoc protect, a drill, a failback or a verify) and their
 * per-server results. A run is inserted as `running` when it starts, so a crash leaves a trace
 * that `abandonStale` later closes as failed, rather than a run that never happened.
 */
import {
  type CatalogDb,
  count,
  limit,
  ms,
  nonEmpty,
  numOrNull,
  oneOf,
  optionalText,
  type Row,
  rowReader,
  strOrNull,
  toJson,
} from './db.ts';
import { CatalogError, notFound } from './errors.ts';
import type { StatusTable } from './status.ts';
import type { TargetStoresTable } from './target-stores.ts';

export const RUN_KINDS = ['protect', 'job', 'drill', 'failback', 'verify'] as const;
export const RUN_TRIGGERS = ['manual', 'schedule', 'missed', 'api'] as const;
export const RUN_STATUSES = ['running', 'ok', 'failed', 'partial', 'cancelled'] as const;
export const SERVER_RESULT_STATUSES = ['running', 'ok', 'failed', 'skipped', 'cancelled'] as const;
export const TRANSFER_MODES = ['full', 'incremental', 'resync'] as const;

export type RunKind = (typeof RUN_KINDS)[number];
export type RunTrigger = (typeof RUN_TRIGGERS)[number];
export type RunStatus = (typeof RUN_STATUSES)[number];
export type FinalRunStatus = Exclude<RunStatus, 'running'>;
export type ServerResultStatus = (typeof SERVER_RESULT_STATUSES)[number];
export type TransferMode = (typeof TRANSFER_MODES)[number];

/** Runs of these kinds copy data, so their results feed server_status. */
const COPYING_KINDS: readonly RunKind[] = ['protect', 'job'];

export interface Run {
  id: number;
  kind: RunKind;
  /** Job or drill name; null for ad hoc commands. */
  job: string | null;
  trigger: RunTrigger;
  status: RunStatus;
  startedAt: Date;
  finishedAt: Date | null;
  /** Process that ran it, to tell a crashed run from a running one. */
  pid: number | null;
  /** Whatever the runner recorded at the end (JSON). */
  summary: unknown;
  errorCode: string | null;
  errorMessage: string | null;
}

export interface ServerResult {
  runId: number;
  server: string;
  /** A stable key of the target (its URL or store id). */
  target: string;
  status: ServerResultStatus;
  mode: TransferMode | null;
  startedAt: Date;
  finishedAt: Date | null;
  bytesRead: number;
  bytesSent: number;
  durationMs: number | null;
  /** The generation written at the target. */
  generationId: string | null;
  /** The point in time the copy shows (checkpoint or shutdown time). */
  copyAt: Date | null;
  errorCode: string | null;
  errorMessage: string | null;
  attempts: number;
  /** The target store's space after the copy, as its receiver reported it; null when not told. */
  storeTotalBytes: number | null;
  storeFreeBytes: number | null;
}

export interface RunDetail extends Run {
  servers: ServerResult[];
}

export interface StartRun {
  kind: RunKind;
  job?: string;
  trigger: RunTrigger;
  at?: Date;
  /** Defaults to this process. */
  pid?: number;
}

export interface FinishRun {
  status: FinalRunStatus;
  summary?: unknown;
  errorCode?: string;
  errorMessage?: string;
  at?: Date;
}

export interface ServerResultInput {
  server: string;
  target: string;
  status: ServerResultStatus;
  mode?: TransferMode;
  startedAt?: Date;
  /** Defaults to now for a final status. */
  finishedAt?: Date;
  bytesRead?: number;
  bytesSent?: number;
  durationMs?: number;
  generationId?: string;
  copyAt?: Date;
  errorCode?: string;
  errorMessage?: string;
  attempts?: number;
  storeTotalBytes?: number;
  storeFreeBytes?: number;
}

export interface RunFilter {
  kind?: RunKind;
  job?: string;
  status?: RunStatus;
  trigger?: RunTrigger;
  /** Only runs started at or after this time. */
  since?: Date;
  /** Only runs with a smaller id (paging back through history). */
  beforeId?: number;
  /** Default 50, at most 10000. */
  limit?: number;
}

export const toRun = rowReader<Run>(
  'id kind job trigger status started_at:date finished_at:date pid summary:json error_code error_message',
);

export const toResult = rowReader<ServerResult>(
  'run_id server target status mode started_at:date finished_at:date bytes_read bytes_sent duration_ms generation_id copy_at:date error_code error_message attempts store_total_bytes store_free_bytes',
);

/** True when a process with this pid exists on this host. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class RunsTable {
  private readonly insert;
  private readonly finishStmt;
  private readonly one;
  private readonly list_;
  private readonly serversOf;
  private readonly upsertResult;
  private readonly running;
  private readonly abandonResults;
  private readonly runningResults;
  private readonly pruneStmt;
  private readonly prunableStmt;

  constructor(
    private readonly c: CatalogDb,
    private readonly status: StatusTable,
    private readonly targetStores: TargetStoresTable,
  ) {
    this.insert = c.prepare(
      `INSERT INTO runs (kind, job, trigger, started_at, pid) VALUES (@kind, @job, @trigger, @at, @pid) RETURNING *`,
    );
    this.finishStmt = c.prepare(`
      UPDATE runs SET status = @status, finished_at = @at, summary = @summary, error_code = @errorCode,
        error_message = @errorMessage
      WHERE id = @id RETURNING *`);
    this.one = c.prepare('SELECT * FROM runs WHERE id = ?');
    // Optional filters as "(@x IS NULL OR col = @x)": one statement, prepared once.
    this.list_ = c.prepare(`
      SELECT * FROM runs
      WHERE (@kind IS NULL OR kind = @kind) AND (@job IS NULL OR job = @job)
        AND (@status IS NULL OR status = @status) AND (@trigger IS NULL OR trigger = @trigger)
        AND (@since IS NULL OR started_at >= @since) AND (@beforeId IS NULL OR id < @beforeId)
      ORDER BY id DESC LIMIT @limit`);
    this.serversOf = c.prepare('SELECT * FROM run_servers WHERE run_id = ? ORDER BY server, target');
    this.upsertResult = c.prepare(`
      INSERT INTO run_servers (run_id, server, target, status, mode, started_at, finished_at, bytes_read,
        bytes_sent, duration_ms, generation_id, copy_at, error_code, error_message, attempts, store_total_bytes,
        store_free_bytes)
      VALUES (@runId, @server, @target, @status, @mode, @startedAt, @finishedAt, @bytesRead, @bytesSent,
        @durationMs, @generationId, @copyAt, @errorCode, @errorMessage, @attempts, @storeTotalBytes,
        @storeFreeBytes)
      ON CONFLICT (run_id, server, target) DO UPDATE SET
        status = excluded.status, mode = coalesce(excluded.mode, mode), finished_at = excluded.finished_at,
        bytes_read = excluded.bytes_read, bytes_sent = excluded.bytes_sent, duration_ms = excluded.duration_ms,
        generation_id = coalesce(excluded.generation_id, generation_id), copy_at = coalesce(excluded.copy_at, copy_at),
        error_code = excluded.error_code, error_message = excluded.error_message, attempts = excluded.attempts,
        store_total_bytes = coalesce(excluded.store_total_bytes, store_total_bytes),
        store_free_bytes = coalesce(excluded.store_free_bytes, store_free_bytes)
      RETURNING *`);
    this.running = c.prepare(`SELECT * FROM runs WHERE status = 'running' ORDER BY id`);
    this.abandonResults = c.prepare(`
      UPDATE run_servers SET status = 'failed', finished_at = @at, error_code = 'RUN_ABANDONED',
        error_message = 'the process running this copy ended without finishing it'
      WHERE run_id = @id AND status = 'running' RETURNING *`);
    this.runningResults = c.prepare(`
      SELECT rs.*, r.pid AS pid FROM run_servers rs JOIN runs r ON r.id = rs.run_id
      WHERE rs.status = 'running' AND r.status = 'running' AND (@server IS NULL OR rs.server = @server)
      ORDER BY rs.run_id, rs.server, rs.target`);
    // Runs something still points at stay whatever their age: a pair's last run (haven status
    // links to it), a schedule's last run, an in-flight delta's run, and each job's newest run.
    const prunable = `FROM runs WHERE status != 'running' AND started_at < @before
      AND id NOT IN (SELECT last_run_id FROM server_status WHERE last_run_id IS NOT NULL)
      AND id NOT IN (SELECT last_run_id FROM schedule_state WHERE last_run_id IS NOT NULL)
      AND id NOT IN (SELECT run_id FROM inflight WHERE run_id IS NOT NULL)
      AND id NOT IN (SELECT max(id) FROM runs WHERE status != 'running' AND job IS NOT NULL GROUP BY kind, job)`;
    this.pruneStmt = c.prepare(`DELETE ${prunable}`);
    this.prunableStmt = c.prepare(`SELECT count(*) AS n ${prunable}`);
  }

  start(input: StartRun): Run {
    const row = {
      kind: oneOf('run kind', input.kind, RUN_KINDS),
      job: optionalText('job name', input.job),
      trigger: oneOf('run trigger', input.trigger, RUN_TRIGGERS),
      at: ms(input.at),
      pid: input.pid ?? process.pid,
    };
    return this.c.write(() => toRun(this.insert.get(row) as Row));
  }

  /** Closes a running run. Finishing one twice is a CATALOG_RUN_FINISHED conflict. */
  finish(id: number, input: FinishRun): Run {
    const row = {
      id,
      status: oneOf(
        'run status',
        input.status,
        RUN_STATUSES.filter((s) => s !== 'running'),
      ),
      at: ms(input.at),
      summary: toJson(input.summary),
      errorCode: optionalText('error code', input.errorCode),
      errorMessage: input.errorMessage ?? null,
    };
    return this.c.write(() => {
      const before = this.one.get(id) as Row | undefined;
      if (!before) throw notFound('run', `#${id}`, { id });
      if (before.status !== 'running') {
        throw new CatalogError(
          'CATALOG_RUN_FINISHED',
          `run #${id} already finished (${String(before.status)})`,
          {
            kind: 'conflict',
            details: { id, status: before.status },
          },
        );
      }
      return toRun(this.finishStmt.get(row) as Row);
    });
  }

  get(id: number): RunDetail | undefined {
    return this.c.read(() => {
      const r = this.one.get(id) as Row | undefined;
      if (!r) return undefined;
      return { ...toRun(r), servers: (this.serversOf.all(id) as Row[]).map(toResult) };
    });
  }

  /** Newest first. */
  list(filter: RunFilter = {}): Run[] {
    const params = {
      kind: filter.kind === undefined ? null : oneOf('run kind', filter.kind, RUN_KINDS),
      job: filter.job ?? null,
      status: filter.status === undefined ? null : oneOf('run status', filter.status, RUN_STATUSES),
      trigger: filter.trigger === undefined ? null : oneOf('run trigger', filter.trigger, RUN_TRIGGERS),
      since: filter.since === undefined ? null : ms(filter.since),
      beforeId: filter.beforeId ?? null,
      limit: limit(filter.limit, 50),
    };
    return this.c.read(() => (this.list_.all(params) as Row[]).map(toRun));
  }

  servers(runId: number): ServerResult[] {
    return this.c.read(() => (this.serversOf.all(runId) as Row[]).map(toResult));
  }

  /**
   * Records (or updates: same run, server and target) one server's result. A final result of a
   * protect or job run also updates that server's status for the target, in the same
   * transaction.
   */
  recordServer(runId: number, input: ServerResultInput): ServerResult {
    const status = oneOf('server result status', input.status, SERVER_RESULT_STATUSES);
    const final = status !== 'running';
    const now = Date.now();
    const row = {
      runId,
      server: nonEmpty('server name', input.server),
      target: nonEmpty('target', input.target),
      status,
      mode: input.mode === undefined ? null : oneOf('transfer mode', input.mode, TRANSFER_MODES),
      startedAt: ms(input.startedAt, now),
      finishedAt: input.finishedAt !== undefined ? ms(input.finishedAt) : final ? now : null,
      bytesRead: count('bytes read', input.bytesRead ?? 0),
      bytesSent: count('bytes sent', input.bytesSent ?? 0),
      durationMs: input.durationMs === undefined ? null : count('duration', input.durationMs),
      generationId: optionalText('generation id', input.generationId),
      copyAt: input.copyAt === undefined ? null : ms(input.copyAt),
      errorCode: optionalText('error code', input.errorCode),
      errorMessage: input.errorMessage ?? null,
      attempts: count('attempts', input.attempts ?? 1),
      storeTotalBytes:
        input.storeTotalBytes === undefined ? null : count('store total bytes', input.storeTotalBytes),
      storeFreeBytes:
        input.storeFreeBytes === undefined ? null : count('store free bytes', input.storeFreeBytes),
    };
    return this.c.write(() => {
      const run = this.one.get(runId) as Row | undefined;
      if (!run) throw notFound('run', `#${runId}`, { id: runId });
      const result = toResult(this.upsertResult.get(row) as Row);
      if (final && COPYING_KINDS.includes(run.kind as RunKind)) this.applyStatus(result, strOrNull(run.job));
      if (status === 'ok' && result.generationId !== null) {
        this.targetStores.noteGeneration(result.server, result.target, result.generationId, now);
      }
      return result;
    });
  }

  private applyStatus(result: ServerResult, job: string | null): void {
    const good = result.status === 'ok';
    const finishedAt = result.finishedAt?.getTime() ?? Date.now();
    this.status.apply({
      server: result.server,
      target: result.target,
      job,
      runId: result.runId,
      at: finishedAt,
      result: result.status,
      mode: result.mode,
      bytesRead: result.bytesRead,
      bytesSent: result.bytesSent,
      durationMs: result.durationMs,
      errorCode: result.errorCode,
      errorMessage: result.errorMessage,
      goodAt: good ? (result.copyAt?.getTime() ?? finishedAt) : null,
      goodGeneration: good ? result.generationId : null,
    });
  }

  /**
   * Closes runs left `running` by processes that no longer exist (a crash, a kill -9, a reboot):
   * status failed, error RUN_ABANDONED, and so are their unfinished server results.
   */
  abandonStale(isAlive: (pid: number) => boolean = pidAlive, at?: Date): Run[] {
    const when = ms(at);
    return this.c.write(() => {
      const closed: Run[] = [];
      for (const r of this.running.all() as Row[]) {
        const pid = numOrNull(r.pid);
        if (pid === null || isAlive(pid)) continue;
        for (const res of (this.abandonResults.all({ id: r.id, at: when }) as Row[]).map(toResult)) {
          if (COPYING_KINDS.includes(r.kind as RunKind)) this.applyStatus(res, strOrNull(r.job));
        }
        closed.push(
          toRun(
            this.finishStmt.get({
              id: r.id,
              status: 'failed',
              at: when,
              summary: r.summary ?? null,
              errorCode: 'RUN_ABANDONED',
              errorMessage: `process ${pid} ended without finishing this run`,
            }) as Row,
          ),
        );
      }
      return closed;
    });
  }

  /**
   * Results still `running` in runs still `running` (one server's, or all), with the pid of the
   * process running them: what `haven forget` must not pull the records from under. Call
   * `abandonStale` first so a crashed run does not count.
   */
  inProgress(server?: string): Array<ServerResult & { pid: number | null }> {
    return this.c.read(() =>
      (this.runningResults.all({ server: server ?? null }) as Row[]).map((r) => ({
        ...toResult(r),
        pid: numOrNull(r.pid),
      })),
    );
  }

  /**
   * Deletes finished runs (and their results) started before `before`, except those something
   * still points at: a pair's or a schedule's last run, an in-flight delta's, each job's newest.
   * Returns how many went (with `dryRun`, how many would).
   */
  prune(before: Date, options: { dryRun?: boolean } = {}): number {
    const t = { before: ms(before) };
    if (options.dryRun) return this.c.read(() => (this.prunableStmt.get(t) as { n: number }).n);
    return this.c.write(() => this.pruneStmt.run(t).changes);
  }
}
