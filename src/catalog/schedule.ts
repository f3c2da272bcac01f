/**
 * Scheduler state per job, drill, scrub and host backup, so the daemon knows after a restart what
 * already ran and what it missed: the last run, the last fire time it acted on, and the next one it computed.
 */
import { type CatalogDb, ms, nonEmpty, oneOf, type Row, rowReader } from './db.ts';

export const SCHEDULE_KINDS = ['job', 'drill', 'scrub', 'host'] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

export interface ScheduleState {
  kind: ScheduleKind;
  name: string;
  lastRunAt: Date | null;
  /** The scheduled fire time the last run was started for (not when it actually started). */
  lastFireAt: Date | null;
  nextRunAt: Date | null;
  lastRunId: number | null;
  updatedAt: Date;
}

/** Fields to change: undefined keeps the stored value, null clears it. */
export interface ScheduleUpdate {
  lastRunAt?: Date | null;
  lastFireAt?: Date | null;
  nextRunAt?: Date | null;
  lastRunId?: number | null;
}

const toState = rowReader<ScheduleState>(
  'kind name last_run_at:date last_fire_at:date next_run_at:date last_run_id updated_at:date',
);

function keep(flag: unknown): number {
  return flag === undefined ? 1 : 0;
}

function timeOrNull(d: Date | null | undefined): number | null {
  return d === undefined || d === null ? null : ms(d);
}

export class ScheduleTable {
  private readonly one;
  private readonly all;
  private readonly upsert;
  private readonly del;

  constructor(private readonly c: CatalogDb) {
    this.one = c.prepare('SELECT * FROM schedule_state WHERE kind = ? AND name = ?');
    this.all = c.prepare('SELECT * FROM schedule_state ORDER BY kind, name');
    // @keepX = 1 keeps the stored value; a partial update is one statement, prepared once.
    this.upsert = c.prepare(`
      INSERT INTO schedule_state (kind, name, last_run_at, last_fire_at, next_run_at, last_run_id, updated_at)
      VALUES (@kind, @name, @lastRunAt, @lastFireAt, @nextRunAt, @lastRunId, @now)
      ON CONFLICT (kind, name) DO UPDATE SET
        last_run_at = CASE WHEN @keepLastRunAt THEN last_run_at ELSE excluded.last_run_at END,
        last_fire_at = CASE WHEN @keepLastFireAt THEN last_fire_at ELSE excluded.last_fire_at END,
        next_run_at = CASE WHEN @keepNextRunAt THEN next_run_at ELSE excluded.next_run_at END,
        last_run_id = CASE WHEN @keepLastRunId THEN last_run_id ELSE excluded.last_run_id END,
        updated_at = excluded.updated_at
      RETURNING *`);
    this.del = c.prepare('DELETE FROM schedule_state WHERE kind = ? AND name = ?');
  }

  get(kind: ScheduleKind, name: string): ScheduleState | undefined {
    return this.c.read(() => {
      const r = this.one.get(kind, name) as Row | undefined;
      return r ? toState(r) : undefined;
    });
  }

  list(): ScheduleState[] {
    return this.c.read(() => (this.all.all() as Row[]).map(toState));
  }

  /** Creates or changes the state of one job or drill; fields not given are kept. */
  update(kind: ScheduleKind, name: string, u: ScheduleUpdate): ScheduleState {
    const row = {
      kind: oneOf('schedule kind', kind, SCHEDULE_KINDS),
      name: nonEmpty('name', name),
      lastRunAt: timeOrNull(u.lastRunAt),
      lastFireAt: timeOrNull(u.lastFireAt),
      nextRunAt: timeOrNull(u.nextRunAt),
      lastRunId: u.lastRunId ?? null,
      keepLastRunAt: keep(u.lastRunAt),
      keepLastFireAt: keep(u.lastFireAt),
      keepNextRunAt: keep(u.nextRunAt),
      keepLastRunId: keep(u.lastRunId),
      now: Date.now(),
    };
    return this.c.write(() => toState(this.upsert.get(row) as Row));
  }

  /** Drops the state of a job or drill that was removed from the configuration. */
  forget(kind: ScheduleKind, name: string): boolean {
    return this.c.write(() => this.del.run(kind, name).changes > 0);
  }
}
