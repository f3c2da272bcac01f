/**
 * Host backups and host drills (docs/hosts.md): one row each, inserted as `running` when
 * it starts so a crash leaves a trace that `abandonStale` closes, and finished with what it
 * stored (generation, bytes, whether new rescue media were made) or proved (the measured
 * recovery time). The newest good backup per host is what the host's RPO check and metrics read.
 */
import { type CatalogDb, limit, ms, nonEmpty, oneOf, type Row, rowReader, toJson } from './db.ts';
import { notFound } from './errors.ts';
import { pidAlive, RUN_TRIGGERS, type RunTrigger } from './runs.ts';

export const HOST_RUN_KINDS = ['backup', 'drill'] as const;
export type HostRunKind = (typeof HOST_RUN_KINDS)[number];
export const HOST_RUN_STATUSES = ['running', 'ok', 'failed', 'cancelled'] as const;
export type HostRunStatus = (typeof HOST_RUN_STATUSES)[number];

export interface HostRun {
  id: number;
  host: string;
  kind: HostRunKind;
  trigger: RunTrigger;
  status: HostRunStatus;
  startedAt: Date;
  finishedAt: Date | null;
  pid: number | null;
  /** The target name (backup) or the store (drill). */
  target: string | null;
  /** A backup stored new rescue media. */
  rescueMade: boolean | null;
  bytes: number | null;
  /** The backup generation stored (backup) or drilled (drill). */
  generationId: string | null;
  /** When the archive was taken. */
  takenAt: Date | null;
  /** A drill's measured recovery time. */
  seconds: number | null;
  summary: unknown;
  errorCode: string | null;
  errorMessage: string | null;
}

export interface FinishHostRun {
  status: Exclude<HostRunStatus, 'running'>;
  rescueMade?: boolean;
  bytes?: number;
  generationId?: string;
  takenAt?: Date;
  seconds?: number;
  summary?: unknown;
  errorCode?: string;
  errorMessage?: string;
  at?: Date;
}

const toHostRun = rowReader<HostRun>(
  'id host kind trigger status started_at:date finished_at:date pid target rescue_made:bool bytes generation_id taken_at:date seconds summary:json error_code error_message',
);

export class HostRunsTable {
  /** The prepared statements, by what they do. */
  private readonly q;

  constructor(private readonly c: CatalogDb) {
    this.q = {
      insert: c.prepare(`
        INSERT INTO host_runs (host, kind, trigger, status, started_at, pid, target)
        VALUES (@host, @kind, @trigger, 'running', @at, @pid, @target) RETURNING *`),
      finish: c.prepare(`
        UPDATE host_runs SET status = @status, finished_at = @at, rescue_made = @rescueMade, bytes = @bytes,
          generation_id = @generationId, taken_at = @takenAt, seconds = @seconds, summary = @summary,
          error_code = @errorCode, error_message = @errorMessage
        WHERE id = @id AND status = 'running' RETURNING *`),
      one: c.prepare('SELECT * FROM host_runs WHERE id = ?'),
      running: c.prepare("SELECT * FROM host_runs WHERE status = 'running'"),
      prune: c.prepare(`
        DELETE FROM host_runs WHERE status != 'running' AND started_at < @before
          AND id NOT IN (SELECT max(id) FROM host_runs WHERE status = 'ok' GROUP BY host, kind)`),
    };
  }

  start(o: { host: string; kind: HostRunKind; trigger: RunTrigger; target?: string; at?: Date }): HostRun {
    const row = {
      host: nonEmpty('host', o.host),
      kind: oneOf('host run kind', o.kind, HOST_RUN_KINDS),
      trigger: oneOf('trigger', o.trigger, RUN_TRIGGERS),
      at: ms(o.at),
      pid: process.pid,
      target: o.target ?? null,
    };
    return this.c.write(() => toHostRun(this.q.insert.get(row) as Row));
  }

  finish(id: number, f: FinishHostRun): HostRun {
    const row = {
      id,
      status: oneOf('host run status', f.status, HOST_RUN_STATUSES),
      at: ms(f.at),
      rescueMade: f.rescueMade === undefined ? null : f.rescueMade ? 1 : 0,
      bytes: f.bytes ?? null,
      generationId: f.generationId ?? null,
      takenAt: f.takenAt ? ms(f.takenAt) : null,
      seconds: f.seconds ?? null,
      summary: toJson(f.summary),
      errorCode: f.errorCode ?? null,
      errorMessage: f.errorMessage?.slice(0, 4000) ?? null,
    };
    return this.c.write(() => {
      const r = this.q.finish.get(row) as Row | undefined;
      if (!r) throw notFound('host run', String(id), { id });
      return toHostRun(r);
    });
  }

  get(id: number): HostRun | undefined {
    return this.c.read(() => {
      const r = this.q.one.get(id) as Row | undefined;
      return r ? toHostRun(r) : undefined;
    });
  }

  /** Newest first. */
  list(o: { host?: string; kind?: HostRunKind; status?: HostRunStatus; limit?: number } = {}): HostRun[] {
    const where: string[] = [];
    const args: Record<string, unknown> = { limit: limit(o.limit, 100) };
    if (o.host !== undefined) {
      where.push('host = @host');
      args.host = o.host;
    }
    if (o.kind !== undefined) {
      where.push('kind = @kind');
      args.kind = o.kind;
    }
    if (o.status !== undefined) {
      where.push('status = @status');
      args.status = o.status;
    }
    const sql = `SELECT * FROM host_runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT @limit`;
    return this.c.read(() => (this.c.prepare(sql).all(args) as Row[]).map(toHostRun));
  }

  /** The newest finished run of a kind for the host, and the newest good one. */
  latest(host: string, kind: HostRunKind): { last: HostRun | undefined; lastOk: HostRun | undefined } {
    const runs = this.list({ host, kind, limit: 50 }).filter((r) => r.status !== 'running');
    return {
      last: runs[0],
      lastOk: runs.find((r) => r.status === 'ok') ?? this.list({ host, kind, status: 'ok', limit: 1 })[0],
    };
  }

  /** Closes runs whose process ended without finishing them (a crash, a kill). */
  abandonStale(isAlive: (pid: number) => boolean = pidAlive, at?: Date): HostRun[] {
    return this.c.write(() => {
      const out: HostRun[] = [];
      for (const r of (this.q.running.all() as Row[]).map(toHostRun)) {
        if (r.pid === null || isAlive(r.pid)) continue;
        out.push(
          this.finish(r.id, {
            status: 'failed',
            errorCode: 'RUN_ABANDONED',
            errorMessage: `the process (pid ${r.pid}) ended before the ${r.kind} finished`,
            ...(at ? { at } : {}),
          }),
        );
      }
      return out;
    });
  }

  /** Deletes finished runs started before `before`, keeping each host's newest good one per kind. */
  prune(before: Date, o: { dryRun?: boolean } = {}): number {
    if (o.dryRun) {
      return this.c.read(
        () =>
          (
            this.c
              .prepare(
                `SELECT count(*) AS n FROM host_runs WHERE status != 'running' AND started_at < ?
                 AND id NOT IN (SELECT max(id) FROM host_runs WHERE status = 'ok' GROUP BY host, kind)`,
              )
              .get(ms(before)) as Row
          ).n as number,
      );
    }
    return this.c.write(() => this.q.prune.run({ before: ms(before) }).changes);
  }
}
