/**
 * Continuous protection's state on the primary (docs/continuous.md): per server, its generation
 * identifiers and the newest checkpoint of its chain; per lane (server, target), its pending set
 * (the intent log), what that set is relative to, its state and its newest point; per server, a
 * switchover asked for and how far it got. The protector writes a cycle's state in one
 * transaction before it deletes the previous checkpoint, so a killed protector resumes from the
 * pending sets plus libvirt's bitmap since the recorded checkpoint.
 *
 * The lane's record is the engine's, kept as JSON: the catalog does not interpret it.
 */
import { type CatalogDb, nonEmpty, type Row, rowReader, toJson } from './db.ts';

export interface ContinuousServer {
  server: string;
  /** Generation identifiers (engine's GenerationIds), or null before the first decision. */
  ids: unknown;
  checkpoint: string | null;
  job: string | null;
  pid: number | null;
  updatedAt: Date;
}

export interface ContinuousLane {
  server: string;
  target: string;
  storeId: string | null;
  state: string;
  /** The engine's lane record (pending sets and what they are relative to). */
  record: unknown;
  pendingBytes: number;
  lastPointId: string | null;
  /** When the newest point the target acknowledged was taken: the lag is measured from it. */
  lastPointAt: Date | null;
  errorCode: string | null;
  errorMessage: string | null;
  pid: number | null;
  updatedAt: Date;
}

/** What the protector records for a lane; the catalog adds its server, pid and time. */
export type ContinuousLaneInput = Omit<ContinuousLane, 'server' | 'pid' | 'updatedAt'>;

export type SwitchoverState = 'requested' | 'draining' | 'drained' | 'failed';

export interface Switchover {
  server: string;
  target: string;
  state: SwitchoverState;
  /** The point that holds the server's last write (once drained). */
  pointId: string | null;
  error: string | null;
  requestedAt: Date;
  updatedAt: Date;
}

const toServer = rowReader<ContinuousServer>('server ids:json checkpoint job pid updated_at:date');

const toLane = rowReader<ContinuousLane>(
  'server target store_id state record:json pending_bytes last_point_id last_point_at:date error_code error_message pid updated_at:date',
);

const toSwitchover = rowReader<Switchover>(
  'server target state point_id error requested_at:date updated_at:date',
);

export class ContinuousTable {
  private readonly getServer;
  private readonly putServer;
  private readonly lanesOf;
  private readonly allLanes;
  private readonly putLane;
  private readonly delServer;
  private readonly delLanes;
  private readonly delLane;
  private readonly getSwitch;
  private readonly putSwitch;
  private readonly setSwitch;
  private readonly delSwitch;

  constructor(private readonly c: CatalogDb) {
    this.getServer = c.prepare('SELECT * FROM continuous WHERE server = ?');
    this.putServer = c.prepare(`
      INSERT INTO continuous (server, ids, checkpoint, job, pid, updated_at)
      VALUES (@server, @ids, @checkpoint, @job, @pid, @at)
      ON CONFLICT (server) DO UPDATE SET ids = excluded.ids, checkpoint = excluded.checkpoint,
        job = excluded.job, pid = excluded.pid, updated_at = excluded.updated_at`);
    this.lanesOf = c.prepare('SELECT * FROM continuous_lanes WHERE server = ? ORDER BY target');
    this.allLanes = c.prepare('SELECT * FROM continuous_lanes ORDER BY server, target');
    this.putLane = c.prepare(`
      INSERT INTO continuous_lanes (server, target, store_id, state, record, pending_bytes,
        last_point_id, last_point_at, error_code, error_message, pid, updated_at)
      VALUES (@server, @target, @storeId, @state, @record, @pendingBytes, @lastPointId,
        @lastPointAt, @errorCode, @errorMessage, @pid, @at)
      ON CONFLICT (server, target) DO UPDATE SET store_id = excluded.store_id,
        state = excluded.state, record = excluded.record, pending_bytes = excluded.pending_bytes,
        last_point_id = excluded.last_point_id, last_point_at = excluded.last_point_at,
        error_code = excluded.error_code, error_message = excluded.error_message,
        pid = excluded.pid, updated_at = excluded.updated_at`);
    this.delServer = c.prepare('DELETE FROM continuous WHERE server = ?');
    this.delLanes = c.prepare('DELETE FROM continuous_lanes WHERE server = ?');
    this.delLane = c.prepare('DELETE FROM continuous_lanes WHERE server = ? AND target = ?');
    this.getSwitch = c.prepare('SELECT * FROM switchovers WHERE server = ?');
    this.putSwitch = c.prepare(`
      INSERT INTO switchovers (server, target, state, point_id, error, requested_at, updated_at)
      VALUES (@server, @target, 'requested', NULL, NULL, @at, @at)
      ON CONFLICT (server) DO UPDATE SET target = excluded.target, state = 'requested',
        point_id = NULL, error = NULL, requested_at = excluded.requested_at,
        updated_at = excluded.updated_at`);
    this.setSwitch = c.prepare(`
      UPDATE switchovers SET state = @state, point_id = @pointId, error = @error, updated_at = @at
      WHERE server = @server`);
    this.delSwitch = c.prepare('DELETE FROM switchovers WHERE server = ?');
  }

  server(server: string): ContinuousServer | null {
    return this.c.read(() => {
      const r = this.getServer.get(server) as Row | undefined;
      return r ? toServer(r) : null;
    });
  }

  lanes(server?: string): ContinuousLane[] {
    return this.c.read(() =>
      ((server === undefined ? this.allLanes.all() : this.lanesOf.all(server)) as Row[]).map(toLane),
    );
  }

  /** One cycle: the server's row and every lane's, together. */
  saveCycle(
    s: { server: string; ids: unknown; checkpoint: string | null; job: string | null; pid: number },
    lanes: readonly ContinuousLaneInput[],
  ): void {
    nonEmpty('server', s.server);
    this.c.write(() => {
      const at = Date.now();
      this.putServer.run({
        server: s.server,
        ids: toJson(s.ids ?? null),
        checkpoint: s.checkpoint,
        job: s.job,
        pid: s.pid,
        at,
      });
      for (const l of lanes) this.putLane.run(this.laneParams(s.server, l, s.pid, at));
    });
  }

  saveLane(server: string, lane: ContinuousLaneInput, pid: number): void {
    this.c.write(() => this.putLane.run(this.laneParams(server, lane, pid, Date.now())));
  }

  private laneParams(server: string, l: ContinuousLaneInput, pid: number, at: number) {
    return {
      server,
      target: nonEmpty('target', l.target),
      storeId: l.storeId,
      state: nonEmpty('state', l.state),
      record: toJson(l.record),
      pendingBytes: l.pendingBytes,
      lastPointId: l.lastPointId,
      lastPointAt: l.lastPointAt?.getTime() ?? null,
      errorCode: l.errorCode,
      errorMessage: l.errorMessage,
      pid,
      at,
    };
  }

  /** Drops the server's continuous state (all lanes), or one lane. */
  forget(server: string, target?: string): void {
    this.c.write(() => {
      if (target === undefined) {
        this.delServer.run(server);
        this.delLanes.run(server);
      } else {
        this.delLane.run(server, target);
      }
    });
  }

  requestSwitchover(server: string, target: string): Switchover {
    return this.c.write(() => {
      this.putSwitch.run({ server, target, at: Date.now() });
      return toSwitchover(this.getSwitch.get(server) as Row);
    });
  }

  switchover(server: string): Switchover | null {
    return this.c.read(() => {
      const r = this.getSwitch.get(server) as Row | undefined;
      return r ? toSwitchover(r) : null;
    });
  }

  updateSwitchover(
    server: string,
    u: { state: SwitchoverState; pointId?: string | null; error?: string | null },
  ): void {
    this.c.write(() =>
      this.setSwitch.run({
        server,
        state: u.state,
        pointId: u.pointId ?? null,
        error: u.error ?? null,
        at: Date.now(),
      }),
    );
  }

  clearSwitchover(server: string): void {
    this.c.write(() => this.delSwitch.run(server));
  }
}
