/**
 * When each periodic clean-up last ran. The daemon and every CLI run that did work ask the same
 * question ("is the hourly retention due?"); `claim` answers and stamps in one transaction, so of
 * two processes asking at once only one does the work.
 */
import { type CatalogDb, date, ms, nonEmpty, type Row } from './db.ts';

export class MaintenanceTable {
  private readonly one;
  private readonly upsert;

  constructor(private readonly c: CatalogDb) {
    this.one = c.prepare('SELECT last_at FROM maintenance WHERE task = ?');
    this.upsert = c.prepare(`
      INSERT INTO maintenance (task, last_at) VALUES (?, ?)
      ON CONFLICT (task) DO UPDATE SET last_at = excluded.last_at`);
  }

  /**
   * True (and stamped now) when `task` has not run within `everyMs` before `now`; false when it
   * has, and nothing changes. A stamp in the future (a clock set back) counts as due.
   */
  claim(task: string, everyMs: number, now?: Date): boolean {
    const t = nonEmpty('maintenance task', task);
    const at = ms(now);
    return this.c.write(() => {
      const r = this.one.get(t) as Row | undefined;
      const last = r?.last_at as number | undefined;
      if (last !== undefined && last <= at && at - last < everyMs) return false;
      this.upsert.run(t, at);
      return true;
    });
  }

  /** Stamps `task` as done at `now` (an explicit `haven prune`). */
  stamp(task: string, now?: Date): void {
    const t = nonEmpty('maintenance task', task);
    const at = ms(now);
    this.c.write(() => this.upsert.run(t, at));
  }

  lastRun(task: string): Date | undefined {
    return this.c.read(() => {
      const r = this.one.get(task) as Row | undefined;
      return r ? date(r.last_at) : undefined;
    });
  }
}
