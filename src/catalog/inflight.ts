/**
 * Deltas being sent, one per (server, target): enough for a crashed run's successor to resume
 * instead of starting over: the delta id the receiver staged under, the checkpoint (and the one
 * it is incremental from), and the NBD socket of the backup job libvirt may still be running.
 *
 * Setting a different delta for a pair that already has one is refused: two runs must never
 * send to the same server's store at once.
 */
import { type CatalogDb, ms, nonEmpty, optionalText, type Row, rowReader } from './db.ts';
import { CatalogError } from './errors.ts';
import type { TargetStoresTable } from './target-stores.ts';

export interface InflightDelta {
  server: string;
  target: string;
  deltaId: string;
  checkpoint: string;
  incrementalFrom: string | null;
  socket: string | null;
  runId: number | null;
  startedAt: Date;
  updatedAt: Date;
}

export interface InflightInput {
  server: string;
  target: string;
  deltaId: string;
  checkpoint: string;
  incrementalFrom?: string;
  socket?: string;
  runId?: number;
  startedAt?: Date;
}

const toInflight = rowReader<InflightDelta>(
  'server target delta_id checkpoint incremental_from socket run_id started_at:date',
);

export class InflightTable {
  private readonly one;
  private readonly all;
  private readonly insert;
  private readonly update;
  private readonly del;
  private readonly delIf;

  constructor(
    private readonly c: CatalogDb,
    private readonly targetStores: TargetStoresTable,
  ) {
    this.one = c.prepare('SELECT * FROM inflight WHERE server = ? AND target = ?');
    this.all = c.prepare('SELECT * FROM inflight ORDER BY server, target');
    this.insert = c.prepare(`
      INSERT INTO inflight (server, target, delta_id, checkpoint, incremental_from, socket, run_id, started_at, updated_at)
      VALUES (@server, @target, @deltaId, @checkpoint, @incrementalFrom, @socket, @runId, @startedAt, @now)`);
    // A resuming run keeps the delta and its start, and takes over with its own socket and run.
    this.update = c.prepare(`
      UPDATE inflight SET socket = @socket, run_id = coalesce(@runId, run_id), updated_at = @now
      WHERE server = @server AND target = @target`);
    this.del = c.prepare('DELETE FROM inflight WHERE server = ? AND target = ?');
    this.delIf = c.prepare('DELETE FROM inflight WHERE server = ? AND target = ? AND delta_id = ?');
  }

  /**
   * Records the delta in flight for (server, target), or, for the same delta id, takes it over
   * (new socket, new run). A different delta id there is CATALOG_DELTA_IN_FLIGHT.
   */
  set(input: InflightInput): InflightDelta {
    const now = Date.now();
    const row = {
      server: nonEmpty('server name', input.server),
      target: nonEmpty('target', input.target),
      deltaId: nonEmpty('delta id', input.deltaId),
      checkpoint: nonEmpty('checkpoint name', input.checkpoint),
      incrementalFrom: optionalText('incremental base checkpoint', input.incrementalFrom),
      socket: optionalText('socket path', input.socket),
      runId: input.runId ?? null,
      startedAt: ms(input.startedAt, now),
      now,
    };
    return this.c.write(() => {
      const existing = this.one.get(row.server, row.target) as Row | undefined;
      if (row.runId !== null) this.targetStores.noteRun(row.server, row.target, row.runId, now);
      if (!existing) this.insert.run(row);
      else if (existing.delta_id === row.deltaId && existing.checkpoint === row.checkpoint)
        this.update.run(row);
      else {
        throw new CatalogError(
          'CATALOG_DELTA_IN_FLIGHT',
          `delta ${String(existing.delta_id)} of ${row.server} to ${row.target} is still in flight`,
          {
            kind: 'conflict',
            hint: 'Another run is copying this server to this target, or one crashed: resume that delta or clear it first.',
            details: {
              server: row.server,
              target: row.target,
              deltaId: existing.delta_id,
              runId: existing.run_id,
            },
          },
        );
      }
      return toInflight(this.one.get(row.server, row.target) as Row);
    });
  }

  get(server: string, target: string): InflightDelta | undefined {
    return this.c.read(() => {
      const r = this.one.get(server, target) as Row | undefined;
      return r ? toInflight(r) : undefined;
    });
  }

  list(): InflightDelta[] {
    return this.c.read(() => (this.all.all() as Row[]).map(toInflight));
  }

  /**
   * Clears the pair's in-flight delta (it was committed, or abandoned). With `deltaId`, only if
   * that is still the one recorded. Returns whether something was cleared.
   */
  clear(server: string, target: string, deltaId?: string): boolean {
    return this.c.write(
      () =>
        (deltaId === undefined ? this.del.run(server, target) : this.delIf.run(server, target, deltaId))
          .changes > 0,
    );
  }
}
