import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { HavenError } from '../core/errors.ts';
import { scratchDir } from '../core/test-support/scratch.ts';
import { type Catalog, catalogPath, openCatalog, SCHEMA_VERSION } from './catalog.ts';
import { APPLICATION_ID, MIGRATIONS, migrate } from './schema.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

const tmpDir = (t: TestContext): string => scratchDir('haven-t-cat-', t);

function open(t: TestContext, path: string, options?: Parameters<typeof openCatalog>[1]): Catalog {
  const c = openCatalog(path, options);
  t.after(() => c.close());
  return c;
}

function code(e: unknown): string | undefined {
  return e instanceof HavenError ? e.code : undefined;
}

test('a new catalog: created 0600 in a new directory, WAL, migrated from empty to the current version', (t) => {
  const path = catalogPath(join(tmpDir(t), 'state', 'nested'));
  const c = open(t, path);
  assert.equal(c.schemaVersion, SCHEMA_VERSION);
  assert.equal(SCHEMA_VERSION, MIGRATIONS.length);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const raw = new Database(path, { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(raw.pragma('application_id', { simple: true }), APPLICATION_ID);
  const tables = (
    raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
      name: string;
    }[]
  ).map((r) => r.name);
  for (const want of [
    'runs',
    'run_servers',
    'checkpoints',
    'deliveries',
    'inflight',
    'events',
    'problems',
    'schedule_state',
    'server_status',
  ]) {
    assert.ok(tables.includes(want), `table ${want}`);
  }
});

test('an existing empty file (0 bytes) is migrated too', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  writeFileSync(path, '');
  const c = open(t, path);
  assert.equal(c.schemaVersion, SCHEMA_VERSION);
  c.runs.start({ kind: 'protect', trigger: 'manual' });
});

test('reopening keeps every kind of record', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const a = openCatalog(path);
  const run = a.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  a.runs.recordServer(run.id, {
    server: 'web01',
    target: 'dr1',
    status: 'ok',
    bytesSent: 42,
    generationId: 'g1',
  });
  a.runs.finish(run.id, { status: 'ok', summary: { servers: 1 } });
  a.checkpoints.record({
    server: 'web01',
    name: 'c1',
    domainUuid: 'u',
    createdAt: new Date(1000),
    disks: ['vda'],
    xml: '<x/>',
  });
  a.checkpoints.markDelivered('web01', 'c1', 'dr1', 'g1');
  a.inflight.set({ server: 'web01', target: 'dr2', deltaId: 'd1', checkpoint: 'c1' });
  a.events.append({ type: 'run.finished', severity: 'info', message: 'done', runId: run.id });
  a.schedule.update('job', 'nightly', { lastRunId: run.id, nextRunAt: new Date(5000) });
  a.close();
  assert.equal(a.isOpen, false);

  const b = open(t, path);
  assert.equal(b.runs.get(run.id)?.status, 'ok');
  assert.deepEqual(b.runs.get(run.id)?.summary, { servers: 1 });
  assert.equal(b.runs.servers(run.id)[0]?.bytesSent, 42);
  assert.equal(b.checkpoints.lastDelivered('web01', 'dr1')?.generationId, 'g1');
  assert.equal(b.inflight.get('web01', 'dr2')?.deltaId, 'd1');
  assert.equal(b.events.list()[0]?.message, 'done');
  assert.equal(b.schedule.get('job', 'nightly')?.nextRunAt?.getTime(), 5000);
  assert.equal(b.status.get('web01', 'dr1')?.lastBytesSent, 42);
});

test('a failing migration leaves the file at its old version with nothing half-applied', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  open(t, path).close();
  const db = new Database(path);
  t.after(() => db.close());
  const broken = [
    ...MIGRATIONS,
    {
      version: SCHEMA_VERSION + 1,
      description: 'fails half way',
      sql: 'CREATE TABLE extra (x); ALTER TABLE runs ADD COLUMN y; INSERT INTO no_such_table VALUES (1);',
    },
  ];
  assert.throws(() => migrate(db, path, broken), /no such table/);
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  const extra = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'extra'").get() as {
    n: number;
  };
  assert.equal(extra.n, 0);
  const cols = (db.prepare('PRAGMA table_info(runs)').all() as { name: string }[]).map((c) => c.name);
  assert.ok(!cols.includes('y'));

  // And a working next migration applies once, even when asked twice.
  const next = [
    ...MIGRATIONS,
    { version: SCHEMA_VERSION + 1, description: 'ok', sql: 'CREATE TABLE extra (x);' },
  ];
  assert.deepEqual(migrate(db, path, next), { from: SCHEMA_VERSION, to: SCHEMA_VERSION + 1 });
  assert.deepEqual(migrate(db, path, next), { from: SCHEMA_VERSION + 1, to: SCHEMA_VERSION + 1 });
});

test('a catalog at version 5 (scrub schedules) gains host runs and keeps its schedules and lanes', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const db = new Database(path);
  db.pragma(`application_id = ${APPLICATION_ID}`);
  assert.deepEqual(
    migrate(
      db,
      path,
      MIGRATIONS.filter((m) => m.version <= 5),
    ),
    { from: 0, to: 5 },
  );
  db.exec(`INSERT INTO schedule_state (kind, name, next_run_at, updated_at) VALUES ('job', 'nightly', 5000, 1);
    INSERT INTO schedule_state (kind, name, next_run_at, updated_at) VALUES ('scrub', 'weekly', 6000, 1);
    INSERT INTO continuous (server, updated_at) VALUES ('web01', 1);`);
  db.close();

  const c = open(t, path);
  assert.equal(c.schemaVersion, 6);
  assert.equal(c.schedule.get('job', 'nightly')?.nextRunAt?.getTime(), 5000);
  assert.equal(c.schedule.get('scrub', 'weekly')?.nextRunAt?.getTime(), 6000);
  c.schedule.update('host', 'node1', { nextRunAt: new Date(7000) });
  assert.equal(c.schedule.get('host', 'node1')?.nextRunAt?.getTime(), 7000);
  const raw = new Database(path, { readonly: true });
  t.after(() => raw.close());
  assert.equal((raw.prepare('SELECT count(*) AS n FROM continuous').get() as { n: number }).n, 1);
  assert.equal((raw.prepare('SELECT count(*) AS n FROM host_runs').get() as { n: number }).n, 0);
});

test('a catalog from a newer Haven is refused and left alone', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  open(t, path).close();
  const db = new Database(path);
  db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
  db.close();
  assert.throws(
    () => openCatalog(path),
    (e: unknown) => code(e) === 'CATALOG_TOO_NEW' && (e as HavenError).kind === 'conflict',
  );
  const check = new Database(path, { readonly: true });
  t.after(() => check.close());
  assert.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 5);
});

test('another application’s SQLite file and a non-SQLite file are refused, untouched', (t) => {
  const dir = tmpDir(t);
  const foreign = join(dir, 'foreign.sqlite');
  const db = new Database(foreign);
  db.exec(
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO accounts (name) VALUES ('x')",
  );
  db.close();
  assert.throws(
    () => openCatalog(foreign),
    (e: unknown) => code(e) === 'CATALOG_FOREIGN',
  );
  const again = new Database(foreign, { readonly: true });
  t.after(() => again.close());
  assert.equal(
    (again.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n,
    1,
  );

  const garbage = join(dir, 'garbage.sqlite');
  const bytes = Buffer.alloc(8192, 'not a database, just some bytes. ');
  writeFileSync(garbage, bytes);
  assert.throws(
    () => openCatalog(garbage),
    (e: unknown) =>
      code(e) === 'CATALOG_CORRUPT' &&
      (e as HavenError).kind === 'integrity' &&
      /Move/.test((e as HavenError).hint ?? ''),
  );
  assert.deepEqual(readFileSync(garbage), bytes);
});

test('read-only open: reads work, writes are refused, a missing file is CATALOG_NOT_FOUND', (t) => {
  const dir = tmpDir(t);
  assert.throws(
    () => openCatalog(join(dir, 'none.sqlite'), { readOnly: true }),
    (e: unknown) => code(e) === 'CATALOG_NOT_FOUND',
  );
  const path = join(dir, 'catalog.sqlite');
  const w = open(t, path);
  w.events.append({ type: 'run.started', severity: 'info', message: 'hello' });
  const r = open(t, path, { readOnly: true });
  assert.equal(r.events.list()[0]?.message, 'hello');
  assert.throws(
    () => r.events.append({ type: 'run.started', severity: 'info', message: 'nope' }),
    (e: unknown) => code(e) === 'CATALOG_CANNOT_WRITE',
  );
  assert.equal(w.events.list().length, 1);
});

test('two connections at once see each other’s committed writes', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const a = open(t, path);
  const b = open(t, path);
  const run = a.runs.start({ kind: 'protect', trigger: 'manual' });
  assert.equal(b.runs.get(run.id)?.status, 'running');
  b.runs.finish(run.id, { status: 'cancelled' });
  assert.equal(a.runs.get(run.id)?.status, 'cancelled');
  const e1 = a.events.append({ type: 'run.started', severity: 'info', message: 'a' });
  const e2 = b.events.append({ type: 'run.started', severity: 'info', message: 'b' });
  assert.equal(e2.id, e1.id + 1);
  assert.deepEqual(
    a.events.list({ afterId: 0 }).map((e) => e.message),
    ['a', 'b'],
  );
});

test('a writer blocked past the busy timeout gets CATALOG_BUSY and the data stays intact', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const a = open(t, path);
  const b = open(t, path, { busyTimeoutMs: 50 });
  a.events.append({ type: 'run.started', severity: 'info', message: 'before' });
  const holder = new Database(path);
  t.after(() => holder.close());
  holder.exec('BEGIN IMMEDIATE');
  assert.throws(
    () => b.events.append({ type: 'run.started', severity: 'info', message: 'blocked' }),
    (e: unknown) => code(e) === 'CATALOG_BUSY' && (e as HavenError).kind === 'conflict',
  );
  // Readers are not blocked by a writer in WAL mode.
  assert.equal(b.events.list().length, 1);
  holder.exec('ROLLBACK');
  b.events.append({ type: 'run.started', severity: 'info', message: 'after' });
  assert.deepEqual(
    a.events.list({ afterId: 0 }).map((e) => e.message),
    ['before', 'after'],
  );
});

test('transaction(): several calls commit together or not at all', (t) => {
  const c = open(t, join(tmpDir(t), 'catalog.sqlite'));
  c.checkpoints.record({
    server: 's',
    name: 'c1',
    domainUuid: 'u',
    createdAt: new Date(1),
    disks: ['vda'],
    xml: '<x/>',
  });
  c.inflight.set({ server: 's', target: 't', deltaId: 'd1', checkpoint: 'c1' });
  assert.throws(
    () =>
      c.transaction(() => {
        c.checkpoints.markDelivered('s', 'c1', 't', 'g1');
        c.inflight.clear('s', 't');
        throw new Error('crash between the steps');
      }),
    /crash between the steps/,
  );
  assert.equal(c.checkpoints.lastDelivered('s', 't'), undefined);
  assert.equal(c.inflight.get('s', 't')?.deltaId, 'd1');

  c.transaction(() => {
    c.checkpoints.markDelivered('s', 'c1', 't', 'g1');
    c.inflight.clear('s', 't');
  });
  assert.equal(c.checkpoints.lastDelivered('s', 't')?.generationId, 'g1');
  assert.equal(c.inflight.get('s', 't'), undefined);
});

test('separate processes writing at the same time lose nothing', async (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const c = open(t, path);
  const perWriter = 300;
  const writer = `
    const { openCatalog } = await import(${JSON.stringify(join(HERE, 'catalog.ts'))});
    const c = openCatalog(process.argv[1]);
    for (let i = 0; i < ${perWriter}; i++) {
      const run = c.runs.start({ kind: 'protect', trigger: 'api' });
      c.events.append({ type: 'run.started', severity: 'info', message: process.argv[2] + ' ' + i, runId: run.id });
      c.runs.recordServer(run.id, { server: 'srv-' + process.argv[2], target: 'dr', status: 'ok', bytesSent: i });
      c.runs.finish(run.id, { status: 'ok' });
    }
    c.close();`;
  const run = promisify(execFile);
  const children = ['w1', 'w2', 'w3'].map((name) =>
    run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', writer, path, name], {
      cwd: join(HERE, '..', '..'),
    }),
  );
  // This process writes too, while the children run.
  for (let i = 0; i < perWriter; i++)
    c.events.append({ type: 'run.started', severity: 'info', message: `main ${i}` });
  await Promise.all(children);

  const events = c.events.list({ afterId: 0, limit: 10_000 });
  assert.equal(events.length, 4 * perWriter);
  assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'unique ids');
  for (const w of ['w1', 'w2', 'w3', 'main']) {
    const mine = events
      .filter((e) => e.message.startsWith(`${w} `))
      .map((e) => Number(e.message.split(' ')[1]));
    assert.deepEqual(mine, [...Array(perWriter).keys()], `${w}'s events, in its order`);
  }
  assert.equal(c.runs.list({ limit: 10_000, status: 'ok' }).length, 3 * perWriter);
  for (const w of ['w1', 'w2', 'w3']) {
    assert.equal(c.status.get(`srv-${w}`, 'dr')?.lastBytesSent, perWriter - 1);
  }
});
