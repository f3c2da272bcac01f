/**
 * The catalog's tables and how a file gets from any older version to the current one.
 *
 * The version lives in `PRAGMA user_version` (a field of the database header, so it changes in
 * the same transaction as the tables). Each migration runs in its own IMMEDIATE transaction that
 * re-reads the version first: when the daemon and a CLI run open an old file at the same moment,
 * one migrates and the other finds the work done. A file from a newer Haven is refused rather
 * than written with an older idea of its tables.
 *
 * Times are integers, milliseconds since the epoch (UTC). JSON columns hold text.
 */
import type Database from 'better-sqlite3';
import { CatalogError } from './errors.ts';

/** `PRAGMA application_id` of a Haven catalog ("HAVC"), so a foreign SQLite file is recognised. */
export const APPLICATION_ID = 0x48415643;

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'runs, checkpoints, in-flight deltas, events, schedule state, status',
    sql: `
      PRAGMA application_id = ${APPLICATION_ID};

      -- AUTOINCREMENT: ids are never reused after pruning, so links and "since id" stay valid.
      CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL CHECK (kind IN ('protect', 'job', 'drill', 'failback', 'verify')),
        job           TEXT,
        trigger       TEXT NOT NULL CHECK (trigger IN ('manual', 'schedule', 'missed', 'api')),
        status        TEXT NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'ok', 'failed', 'partial', 'cancelled')),
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER,
        pid           INTEGER,
        summary       TEXT,
        error_code    TEXT,
        error_message TEXT
      );
      CREATE INDEX runs_job ON runs (job, id);
      CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

      CREATE TABLE run_servers (
        run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        server        TEXT NOT NULL,
        target        TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'skipped', 'cancelled')),
        mode          TEXT CHECK (mode IN ('full', 'incremental', 'resync')),
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER,
        bytes_read    INTEGER NOT NULL DEFAULT 0,
        bytes_sent    INTEGER NOT NULL DEFAULT 0,
        duration_ms   INTEGER,
        generation_id TEXT,
        copy_at       INTEGER,
        error_code    TEXT,
        error_message TEXT,
        attempts      INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (run_id, server, target)
      ) WITHOUT ROWID;
      CREATE INDEX run_servers_server ON run_servers (server, target, run_id);

      CREATE TABLE checkpoints (
        id          INTEGER PRIMARY KEY,
        server      TEXT NOT NULL,
        name        TEXT NOT NULL,
        domain_uuid TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        parent      TEXT,
        disks       TEXT NOT NULL,
        xml         TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        UNIQUE (server, name)
      );

      CREATE TABLE deliveries (
        checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id) ON DELETE CASCADE,
        target        TEXT NOT NULL,
        generation_id TEXT NOT NULL,
        delivered_at  INTEGER NOT NULL,
        PRIMARY KEY (checkpoint_id, target)
      ) WITHOUT ROWID;
      CREATE INDEX deliveries_target ON deliveries (target, delivered_at);

      CREATE TABLE inflight (
        server           TEXT NOT NULL,
        target           TEXT NOT NULL,
        delta_id         TEXT NOT NULL,
        checkpoint       TEXT NOT NULL,
        incremental_from TEXT,
        socket           TEXT,
        run_id           INTEGER,
        started_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (server, target)
      ) WITHOUT ROWID;

      CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        severity   TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
        type       TEXT NOT NULL,
        server     TEXT,
        job        TEXT,
        target     TEXT,
        run_id     INTEGER,
        message    TEXT NOT NULL,
        data       TEXT,
        dedup_key  TEXT,
        alerted_at INTEGER
      );
      CREATE INDEX events_at ON events (at);
      CREATE INDEX events_dedup ON events (dedup_key) WHERE dedup_key IS NOT NULL;

      -- One row per problem (dedup key) while it is open: one alert per problem, not per minute.
      CREATE TABLE problems (
        dedup_key        TEXT PRIMARY KEY,
        opened_at        INTEGER NOT NULL,
        first_event_id   INTEGER NOT NULL,
        last_event_id    INTEGER NOT NULL,
        last_seen_at     INTEGER NOT NULL,
        occurrences      INTEGER NOT NULL DEFAULT 1,
        severity         TEXT NOT NULL,
        alerted_at       INTEGER,
        alerted_severity TEXT
      ) WITHOUT ROWID;

      CREATE TABLE schedule_state (
        kind         TEXT NOT NULL CHECK (kind IN ('job', 'drill')),
        name         TEXT NOT NULL,
        last_run_at  INTEGER,
        last_fire_at INTEGER,
        next_run_at  INTEGER,
        last_run_id  INTEGER,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
      ) WITHOUT ROWID;

      CREATE TABLE server_status (
        server               TEXT NOT NULL,
        target               TEXT NOT NULL,
        job                  TEXT,
        last_good_at         INTEGER,
        last_good_generation TEXT,
        last_run_id          INTEGER,
        last_run_at          INTEGER,
        last_result          TEXT,
        last_mode            TEXT,
        last_bytes_read      INTEGER,
        last_bytes_sent      INTEGER,
        last_duration_ms     INTEGER,
        last_error_code      TEXT,
        last_error_message   TEXT,
        PRIMARY KEY (server, target)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: 'which store each target name reached, maintenance stamps, runs by start time',
    sql: `
      -- Checkpoints and in-flight deltas are keyed by the store's id, results and status by the
      -- target name the operator used: this maps one to the other per server, so haven forget
      -- and the stale-checkpoint rule can go from a name to the checkpoints its store needs.
      CREATE TABLE target_stores (
        server   TEXT NOT NULL,
        target   TEXT NOT NULL,
        store_id TEXT NOT NULL,
        seen_at  INTEGER NOT NULL,
        PRIMARY KEY (server, target, store_id)
      ) WITHOUT ROWID;
      CREATE INDEX target_stores_store ON target_stores (server, store_id);

      -- Generation ids are UUIDs, so a result and a delivery naming the same one are the same copy.
      INSERT INTO target_stores (server, target, store_id, seen_at)
        SELECT rs.server, rs.target, d.target, max(d.delivered_at)
        FROM run_servers rs
        JOIN deliveries d ON d.generation_id = rs.generation_id
        JOIN checkpoints c ON c.id = d.checkpoint_id AND c.server = rs.server
        GROUP BY rs.server, rs.target, d.target;
      INSERT OR IGNORE INTO target_stores (server, target, store_id, seen_at)
        SELECT s.server, s.target, d.target, max(d.delivered_at)
        FROM server_status s
        JOIN deliveries d ON d.generation_id = s.last_good_generation
        JOIN checkpoints c ON c.id = d.checkpoint_id AND c.server = s.server
        GROUP BY s.server, s.target, d.target;

      -- When each periodic clean-up last ran, shared by the daemon and CLI runs.
      CREATE TABLE maintenance (
        task    TEXT PRIMARY KEY,
        last_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE INDEX runs_started ON runs (started_at);
    `,
  },
  {
    version: 3,
    description: 'the target store’s space with each result; results by finish time',
    sql: `
      -- What the receiver reported of its store's space (docs/stream-protocol.md §4.1) after the
      -- copy: the primary side knows a target's capacity from nothing else. NULL: not told.
      ALTER TABLE run_servers ADD COLUMN store_total_bytes INTEGER;
      ALTER TABLE run_servers ADD COLUMN store_free_bytes INTEGER;
      -- History series (dashboard charts) read results by time.
      CREATE INDEX run_servers_finished ON run_servers (finished_at);
    `,
  },
  {
    version: 4,
    description: 'continuous protection: identifiers, checkpoint chain, lanes, switchovers',
    sql: `
      -- Per continuously protected server: its generation identifiers (JSON) and the newest
      -- checkpoint of its chain, which every lane's pending set covers (docs/continuous.md).
      CREATE TABLE continuous (
        server     TEXT PRIMARY KEY,
        ids        TEXT,
        checkpoint TEXT,
        job        TEXT,
        pid        INTEGER,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Per lane: the engine's record (pending sets as bitmaps, what they are relative to) and
      -- what status and metrics show without reading it.
      CREATE TABLE continuous_lanes (
        server        TEXT NOT NULL,
        target        TEXT NOT NULL,
        store_id      TEXT,
        state         TEXT NOT NULL,
        record        TEXT NOT NULL,
        pending_bytes INTEGER NOT NULL DEFAULT 0,
        last_point_id TEXT,
        last_point_at INTEGER,
        error_code    TEXT,
        error_message TEXT,
        pid           INTEGER,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (server, target)
      ) WITHOUT ROWID;

      -- A planned switchover asked of whichever process protects the server.
      CREATE TABLE switchovers (
        server       TEXT PRIMARY KEY,
        target       TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('requested', 'draining', 'drained', 'failed')),
        point_id     TEXT,
        error        TEXT,
        requested_at INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 5,
    description: 'scheduled scrubs (haven verify by the daemon) in the schedule state',
    sql: `
      -- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the new kind.
      CREATE TABLE schedule_state_new (
        kind         TEXT NOT NULL CHECK (kind IN ('job', 'drill', 'scrub')),
        name         TEXT NOT NULL,
        last_run_at  INTEGER,
        last_fire_at INTEGER,
        next_run_at  INTEGER,
        last_run_id  INTEGER,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
      ) WITHOUT ROWID;
      INSERT INTO schedule_state_new SELECT kind, name, last_run_at, last_fire_at, next_run_at, last_run_id, updated_at
        FROM schedule_state;
      DROP TABLE schedule_state;
      ALTER TABLE schedule_state_new RENAME TO schedule_state;
    `,
  },
  {
    version: 6,
    description: 'host backups and host drills (issue 16); host schedules',
    sql: `
      -- One row per host backup or host drill: what it stored or proved, how long it took.
      CREATE TABLE host_runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        host          TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('backup', 'drill')),
        trigger       TEXT NOT NULL CHECK (trigger IN ('manual', 'schedule', 'missed', 'api')),
        status        TEXT NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'ok', 'failed', 'cancelled')),
        started_at    INTEGER NOT NULL,
        finished_at   INTEGER,
        pid           INTEGER,
        target        TEXT,
        rescue_made   INTEGER,
        bytes         INTEGER,
        generation_id TEXT,
        taken_at      INTEGER,
        seconds       REAL,
        summary       TEXT,
        error_code    TEXT,
        error_message TEXT
      );
      CREATE INDEX host_runs_host ON host_runs (host, kind, id);
      CREATE INDEX host_runs_started ON host_runs (started_at);

      -- The scheduler's state gains a kind for host backups (a CHECK cannot be altered in place;
      -- the table has no foreign keys, so it is copied).
      CREATE TABLE schedule_state_v6 (
        kind         TEXT NOT NULL CHECK (kind IN ('job', 'drill', 'scrub', 'host')),
        name         TEXT NOT NULL,
        last_run_at  INTEGER,
        last_fire_at INTEGER,
        next_run_at  INTEGER,
        last_run_id  INTEGER,
        updated_at   INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
      ) WITHOUT ROWID;
      INSERT INTO schedule_state_v6 SELECT kind, name, last_run_at, last_fire_at, next_run_at, last_run_id, updated_at
        FROM schedule_state;
      DROP TABLE schedule_state;
      ALTER TABLE schedule_state_v6 RENAME TO schedule_state;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings the file to the newest version in `migrations`. Returns the version found and the one
 * left. `migrations` is a parameter so tests can prove a failing step leaves the file untouched.
 */
export function migrate(
  db: Database.Database,
  path: string,
  migrations: readonly Migration[] = MIGRATIONS,
): { from: number; to: number } {
  const latest = migrations.at(-1)?.version ?? 0;
  const from = userVersion(db);
  if (from > latest) {
    throw new CatalogError(
      'CATALOG_TOO_NEW',
      `catalog ${path} has schema version ${from}; this Haven knows up to ${latest}`,
      {
        kind: 'conflict',
        hint: 'A newer Haven wrote this catalog: run that version (or newer) here too.',
        details: { path, version: from, supported: latest },
      },
    );
  }
  if (from === 0) {
    const appId = db.pragma('application_id', { simple: true }) as number;
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as {
      n: number;
    };
    if (appId !== APPLICATION_ID && (appId !== 0 || tables.n > 0)) {
      throw new CatalogError('CATALOG_FOREIGN', `${path} is a SQLite database, but not a Haven catalog`, {
        kind: 'conflict',
        hint: 'Point HAVEN_STATE_DIR at Haven’s own state directory, or move this file away.',
        details: { path, applicationId: appId },
      });
    }
  }
  for (const m of migrations) {
    if (m.version <= from) continue;
    db.transaction(() => {
      const now = userVersion(db);
      if (now >= m.version) return; // another process migrated while we waited for the lock
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return { from, to: userVersion(db) };
}
