/**
 * A continuous lane as `haven status`, the dashboard and /metrics show it (docs/continuous.md,
 * "Visibility"): its state now, its lag and what it still has to send, from the record the
 * protector keeps in the catalog.
 *
 * A record outlives the process that wrote it: a protector killed (SIGKILL, a crashed host, a
 * daemon stopped hard) leaves its last state, often `syncing`, behind. Shown as it is, that would
 * claim replication runs while nothing does. So a record whose process is gone shows as
 * `stopped`, the state the engine gives a lane nobody drives, rather than `disconnected`, which
 * promises a reconnect with back-off that no process will make; the state it recorded stays
 * beside it, and `stale` says why the two differ. The next protector of the server resumes from
 * that record (its pending set is the intent log), so nothing is lost by calling it stopped.
 */
import { type ContinuousLane, pidAlive } from '../catalog/catalog.ts';
import type { LaneState } from '../engine/continuous/index.ts';

export interface LaneStatus {
  /** What the lane does now: the recorded state, or `stopped` when its process is gone. */
  state: LaneState;
  /** The state its protector last recorded. */
  recordedState: LaneState;
  /** The process that recorded it is gone: the record is its last word, nothing replicates. */
  stale: boolean;
  /** The protector's process (the daemon's for `mode: continuous` jobs). */
  pid: number | null;
  /** Age of the newest point the target acknowledged; null before the first. */
  lagMs: number | null;
  /** Bytes changed on the server that the target still lacks (the pending set). */
  pendingBytes: number;
  lastPointId: string | null;
  lastPointAt: Date | null;
  /** When the protector last wrote the record (each cycle, and at each change of state). */
  updatedAt: Date;
  errorCode: string | null;
  errorMessage: string | null;
}

export function laneStatus(
  lane: ContinuousLane,
  now: Date,
  isAlive: (pid: number) => boolean = pidAlive,
): LaneStatus {
  // Only the engine writes the state (a LaneState); the catalog keeps it as text.
  const recorded = lane.state as LaneState;
  // A record without a pid cannot be judged: it is shown as written. A pid reused by another
  // process after the protector died makes a stale record look live, as for runs (runs.ts).
  const stale = recorded !== 'stopped' && lane.pid !== null && !isAlive(lane.pid);
  return {
    state: stale ? 'stopped' : recorded,
    recordedState: recorded,
    stale,
    pid: lane.pid,
    lagMs: lane.lastPointAt ? Math.max(0, now.getTime() - lane.lastPointAt.getTime()) : null,
    pendingBytes: lane.pendingBytes,
    lastPointId: lane.lastPointId,
    lastPointAt: lane.lastPointAt,
    updatedAt: lane.updatedAt,
    errorCode: lane.errorCode,
    errorMessage: lane.errorMessage,
  };
}
