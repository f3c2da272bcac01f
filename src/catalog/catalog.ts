/**
 * The primary side's catalog: one SQLite file (`<stateDir>/catalog.sqlite`) holding runs,
 * checkpoints and their deliveries, in-flight deltas, events and alert state, schedule state and
 * per-server status. The DR side never needs it (docs/design.md §4.4): losing it costs history and
 * incremental bases (the next copy is a checksum resync), never data.
 *
 * The daemon and CLI runs open the same file at once, so: WAL (readers never block the writer),
 * a busy timeout (writers queue rather than fail), short IMMEDIATE write transactions, and
 * synchronous=FULL, because "delivered" and "in flight" records must survive a power cut as
 * surely as the store's own files do. The file is created 0600: checkpoint XML embeds the domain
 * XML, which can carry secrets (VNC passwords, iSCSI credentials).
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { ioError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { CheckpointsTable } from './checkpoints.ts';
import { ContinuousTable } from './continuous.ts';
import { CatalogDb } from './db.ts';
import { CatalogError, catalogError } from './errors.ts';
import { EventsTable } from './events.ts';
import { HistoryTable } from './history.ts';
import { HostRunsTable } from './host-runs.ts';
import { InflightTable } from './inflight.ts';
import { MaintenanceTable } from './maintenance.ts';
import { RunsTable } from './runs.ts';
import { ScheduleTable } from './schedule.ts';
import { migrate, SCHEMA_VERSION } from './schema.ts';
import { StatusTable } from './status.ts';
import { TargetStoresTable } from './target-stores.ts';

export type { CheckpointInput, CheckpointRecord, Delivery } from './checkpoints.ts';
export type {
  ContinuousLane,
  ContinuousLaneInput,
  ContinuousServer,
  Switchover,
  SwitchoverState,
} from './continuous.ts';
export { CatalogError } from './errors.ts';
export type { EventFilter, EventInput, EventRecord, Problem, Severity } from './events.ts';
export { SEVERITIES, severityRank } from './events.ts';
export type { GoodCopyBefore, HistoryFilter, HistoryResult, SettledRun } from './history.ts';
export type { FinishHostRun, HostRun, HostRunKind, HostRunStatus } from './host-runs.ts';
export { HOST_RUN_KINDS } from './host-runs.ts';
export type { InflightDelta, InflightInput } from './inflight.ts';
export type {
  FinalRunStatus,
  FinishRun,
  Run,
  RunDetail,
  RunFilter,
  RunKind,
  RunStatus,
  RunTrigger,
  ServerResult,
  ServerResultInput,
  ServerResultStatus,
  StartRun,
  TransferMode,
} from './runs.ts';
export { pidAlive, RUN_KINDS, RUN_STATUSES, RUN_TRIGGERS } from './runs.ts';
export type { ScheduleKind, ScheduleState, ScheduleUpdate } from './schedule.ts';
export { SCHEMA_VERSION } from './schema.ts';
export type { ServerStatus } from './status.ts';
export type { TargetStore } from './target-stores.ts';

export const CATALOG_FILE = 'catalog.sqlite';

/** `<stateDir>/catalog.sqlite`. */
export function catalogPath(stateDir: string): string {
  return join(stateDir, CATALOG_FILE);
}

export interface OpenCatalogOptions {
  /** Open an existing catalog without writing (no migration); missing is CATALOG_NOT_FOUND. */
  readOnly?: boolean;
  /** How long a write waits for another process's transaction. Default 10 s. */
  busyTimeoutMs?: number;
  log?: Logger;
}

export class Catalog {
  readonly runs: RunsTable;
  readonly checkpoints: CheckpointsTable;
  readonly inflight: InflightTable;
  readonly events: EventsTable;
  readonly schedule: ScheduleTable;
  readonly status: StatusTable;
  readonly targetStores: TargetStoresTable;
  readonly maintenance: MaintenanceTable;
  readonly continuous: ContinuousTable;
  readonly history: HistoryTable;
  readonly hostRuns: HostRunsTable;
  private readonly c: CatalogDb;

  constructor(
    readonly path: string,
    db: Database.Database,
  ) {
    this.c = new CatalogDb(db, path);
    this.status = new StatusTable(this.c);
    this.targetStores = new TargetStoresTable(this.c);
    this.maintenance = new MaintenanceTable(this.c);
    this.runs = new RunsTable(this.c, this.status, this.targetStores);
    this.checkpoints = new CheckpointsTable(this.c);
    this.inflight = new InflightTable(this.c, this.targetStores);
    this.events = new EventsTable(this.c);
    this.schedule = new ScheduleTable(this.c);
    this.continuous = new ContinuousTable(this.c);
    this.history = new HistoryTable(this.c);
    this.hostRuns = new HostRunsTable(this.c);
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction, so several calls commit together or not at all
   * (e.g. mark a checkpoint delivered, clear the in-flight delta and record the result).
   * Keep it short: other processes wait for it.
   */
  transaction<T>(fn: () => T): T {
    return this.c.write(fn);
  }

  get schemaVersion(): number {
    return this.c.read(() => this.c.db.pragma('user_version', { simple: true }) as number);
  }

  get isOpen(): boolean {
    return this.c.db.open;
  }

  close(): void {
    if (this.c.db.open) this.c.db.close();
  }
}

/** Opens (creating and migrating if needed) the catalog at `path`. */
export function openCatalog(path: string, options: OpenCatalogOptions = {}): Catalog {
  const log = options.log ?? silentLogger;
  const readOnly = options.readOnly ?? false;
  if (!readOnly) {
    try {
      // Not 0700: the default run directory (QEMU's sockets) lives inside the state directory,
      // and QEMU, running as libvirt-qemu, must be able to traverse to it.
      mkdirSync(dirname(path), { recursive: true });
      // Create it ourselves so its mode is 0600 whatever the umask; SQLite gives the -wal and
      // -shm files the database file's mode.
      closeSync(openSync(path, 'a', 0o600));
    } catch (e) {
      throw ioError(e as NodeJS.ErrnoException, `catalog ${path}`);
    }
  }
  let db: Database.Database;
  try {
    db = new Database(path, {
      readonly: readOnly,
      fileMustExist: readOnly,
      timeout: options.busyTimeoutMs ?? 10_000,
    });
  } catch (e) {
    if ((e as { code?: string }).code === 'SQLITE_CANTOPEN' && readOnly) {
      throw new CatalogError('CATALOG_NOT_FOUND', `catalog ${path} does not exist`, {
        kind: 'not-found',
        cause: e,
        hint: 'Nothing has run on this host yet, or HAVEN_STATE_DIR points elsewhere.',
        details: { path },
      });
    }
    throw catalogError(e, path);
  }
  try {
    if (!readOnly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('foreign_keys = ON');
    if (readOnly) {
      const v = db.pragma('user_version', { simple: true }) as number;
      if (v !== SCHEMA_VERSION) {
        throw new CatalogError(
          'CATALOG_VERSION',
          `catalog ${path} has schema version ${v}, expected ${SCHEMA_VERSION}`,
          {
            kind: 'conflict',
            hint: 'Open it once read-write (any Haven command that records something) to migrate it.',
            details: { path, version: v, expected: SCHEMA_VERSION },
          },
        );
      }
    } else {
      const { from, to } = migrate(db, path);
      if (from !== to) log.verbose('catalog migrated', { path, from, to });
    }
    return new Catalog(path, db);
  } catch (e) {
    db.close();
    throw catalogError(e, path);
  }
}
