/**
 * Which store each target name reached, per server. Results and status are recorded under the
 * name the operator used (a configured target, or the URL given to `haven protect`); checkpoint
 * deliveries and in-flight deltas under the id of the store that answered. `haven forget` and the
 * stale-checkpoint rule go from names to stores through this table.
 *
 * It fills itself: a good result names its generation, whose delivery names the store (generation
 * ids are UUIDs); an in-flight delta names its run, whose only result for that server names the
 * target. Migration 2 filled it from the history there was.
 */
import { type CatalogDb, type Row, rowReader } from './db.ts';

export interface TargetStore {
  server: string;
  target: string;
  storeId: string;
  /** The last time a copy or delta of the server went to this store under this name. */
  seenAt: Date;
}

const toTargetStore = rowReader<TargetStore>('server target store_id seen_at:date');

export class TargetStoresTable {
  private readonly fromGeneration;
  private readonly fromRun;
  private readonly ofServer;
  private readonly all;
  private readonly delPair;
  private readonly delStore;

  constructor(private readonly c: CatalogDb) {
    const upsert =
      'ON CONFLICT (server, target, store_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)';
    this.fromGeneration = c.prepare(`
      INSERT INTO target_stores (server, target, store_id, seen_at)
      SELECT @server, @target, d.target, @at FROM deliveries d JOIN checkpoints c ON c.id = d.checkpoint_id
      WHERE c.server = @server AND d.generation_id = @generationId ${upsert}`);
    // Only when the run has exactly one result for the server: a job with two targets would be
    // ambiguous, and its deliveries name the stores soon enough.
    this.fromRun = c.prepare(`
      INSERT INTO target_stores (server, target, store_id, seen_at)
      SELECT @server, min(rs.target), @storeId, @at FROM run_servers rs
      WHERE rs.run_id = @runId AND rs.server = @server HAVING count(*) = 1 ${upsert}`);
    this.ofServer = c.prepare('SELECT * FROM target_stores WHERE server = ? ORDER BY target, store_id');
    this.all = c.prepare('SELECT * FROM target_stores ORDER BY server, target, store_id');
    this.delPair = c.prepare('DELETE FROM target_stores WHERE server = ? AND target = ?');
    this.delStore = c.prepare('DELETE FROM target_stores WHERE server = ? AND store_id = ?');
  }

  /** Called inside RunsTable's transaction for a good result. */
  noteGeneration(server: string, target: string, generationId: string, at: number): void {
    this.fromGeneration.run({ server, target, generationId, at });
  }

  /** Called inside InflightTable's transaction when a delta is recorded. */
  noteRun(server: string, storeId: string, runId: number, at: number): void {
    this.fromRun.run({ server, storeId, runId, at });
  }

  /** One server's mappings, or every one. */
  list(server?: string): TargetStore[] {
    return this.c.read(() =>
      ((server === undefined ? this.all.all() : this.ofServer.all(server)) as Row[]).map(toTargetStore),
    );
  }

  /** Drops what the name mapped to for the server. Returns how many rows went. */
  forget(server: string, target: string): number {
    return this.c.write(() => this.delPair.run(server, target).changes);
  }

  /** Drops every name that reached the store for the server. */
  forgetStore(server: string, storeId: string): number {
    return this.c.write(() => this.delStore.run(server, storeId).changes);
  }
}
