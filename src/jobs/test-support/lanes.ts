/**
 * Test support only: continuous lane records as a protector writes them to the catalog (through
 * the same state store, jobs/continuous.ts), for the status, dashboard and metrics tests.
 */
import { spawnSync } from 'node:child_process';
import type { Catalog } from '../../catalog/catalog.ts';
import type { LaneRecord, LaneState } from '../../engine/continuous/index.ts';
import { catalogState } from '../continuous.ts';

export interface LaneFacts {
  target: string;
  state: LaneState;
  /** When the newest point the target acknowledged was taken (none: no point yet). */
  lastPointAt?: Date;
  pendingBytes?: number;
  error?: { code: string; message: string };
}

export function laneRecord(f: LaneFacts): LaneRecord {
  const at = f.lastPointAt?.toISOString();
  return {
    target: f.target,
    storeId: 'store-1',
    state: f.state,
    baseline: null,
    tail: null,
    inflight: null,
    pending: null,
    compare: null,
    pendingBytes: f.pendingBytes ?? 0,
    lastPoint: at ? { id: `pt-${f.target}-${at}`, pointInTime: at, takenAt: at, committedAt: at } : null,
    error: f.error ?? null,
  };
}

/** One protector cycle of `server` for `job`, recorded by process `pid` (default: this one). */
export function recordLanes(
  catalog: Catalog,
  server: string,
  job: string,
  lanes: LaneFacts[],
  pid = process.pid,
): void {
  catalogState(catalog, job, pid).saveCycle(server, {
    ids: null,
    checkpoint: null,
    lanes: lanes.map(laneRecord),
  });
}

/** The pid of a process that has exited and been reaped: a protector that is gone. */
export function goneProcessPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  if (r.pid === undefined) throw new Error('could not start a process');
  return r.pid;
}
