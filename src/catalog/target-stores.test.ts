import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import { scratchDir } from '../core/test-support/scratch.ts';
import { type Catalog, openCatalog } from './catalog.ts';
import { MIGRATIONS, migrate } from './schema.ts';

const tmpDir = (t: TestContext): string => scratchDir('haven-t-cat-ts-', t);

function catalog(t: TestContext, path = join(tmpDir(t), 'catalog.sqlite')): Catalog {
  const c = openCatalog(path);
  t.after(() => c.close());
  return c;
}

const XML = '<domaincheckpoint><name>x</name></domaincheckpoint>';

/** A good copy of `server` under the name `target` to the store `storeId`, as a run records it. */
function deliver(
  c: Catalog,
  server: string,
  target: string,
  storeId: string,
  checkpoint: string,
  gen: string,
) {
  const run = c.runs.start({ kind: 'protect', trigger: 'manual' });
  c.runs.recordServer(run.id, { server, target, status: 'running' });
  if (!c.checkpoints.get(server, checkpoint)) {
    c.checkpoints.record({
      server,
      name: checkpoint,
      domainUuid: 'u',
      createdAt: new Date(1_000),
      disks: ['vda'],
      xml: XML,
    });
  }
  c.inflight.set({ server, target: storeId, deltaId: `d-${gen}`, checkpoint, runId: run.id });
  c.transaction(() => {
    c.checkpoints.markDelivered(server, checkpoint, storeId, gen);
    c.inflight.clear(server, storeId);
  });
  c.runs.recordServer(run.id, { server, target, status: 'ok', generationId: gen });
  c.runs.finish(run.id, { status: 'ok' });
  return run;
}

test('target names are mapped to the stores they reached, from in-flight deltas and from good results', (t) => {
  const c = catalog(t);
  deliver(c, 'web01', 'dr1', 'store-A', 'cp1', 'g1');
  deliver(c, 'web01', '/srv/other', 'store-B', 'cp2', 'g2');
  deliver(c, 'db01', 'dr1', 'store-A', 'cp1', 'g3');
  assert.deepEqual(
    c.targetStores.list().map((m) => `${m.server} ${m.target} ${m.storeId}`),
    ['db01 dr1 store-A', 'web01 /srv/other store-B', 'web01 dr1 store-A'],
  );

  // A run with two results for the server (a job with two targets) names no store from its delta.
  const run = c.runs.start({ kind: 'job', job: 'j', trigger: 'manual' });
  c.runs.recordServer(run.id, { server: 'app', target: 'dr1', status: 'running' });
  c.runs.recordServer(run.id, { server: 'app', target: 'dr2', status: 'running' });
  c.checkpoints.record({
    server: 'app',
    name: 'cp9',
    domainUuid: 'u',
    createdAt: new Date(1),
    disks: [],
    xml: XML,
  });
  c.inflight.set({ server: 'app', target: 'store-A', deltaId: 'd9', checkpoint: 'cp9', runId: run.id });
  assert.deepEqual(c.targetStores.list('app'), []);

  assert.equal(c.targetStores.forget('web01', 'dr1'), 1);
  assert.deepEqual(
    c.targetStores.list('web01').map((m) => m.target),
    ['/srv/other'],
  );
  assert.equal(c.targetStores.forgetStore('web01', 'store-B'), 1);
  assert.deepEqual(c.targetStores.list('web01'), []);
});

test('checkpoints: the stores a server was delivered to, and forgetting one store’s deliveries', (t) => {
  const c = catalog(t);
  deliver(c, 'web01', 'dr1', 'store-A', 'cp1', 'g1');
  deliver(c, 'web01', 'dr2', 'store-B', 'cp2', 'g2');
  deliver(c, 'web01', 'dr1', 'store-A', 'cp3', 'g3');
  assert.deepEqual(
    c.checkpoints.stores('web01').map((s) => s.target),
    ['store-A', 'store-B'],
  );
  assert.deepEqual(c.checkpoints.servers(), ['web01']);
  assert.deepEqual(
    c.checkpoints.unneeded('web01').map((x) => x.name),
    ['cp1'],
  );
  assert.equal(c.checkpoints.forgetDeliveries('web01', 'store-A'), 2);
  assert.deepEqual(
    c.checkpoints.stores('web01').map((s) => s.target),
    ['store-B'],
  );
  // Only store-B's base is needed now.
  assert.deepEqual(
    c.checkpoints
      .unneeded('web01')
      .map((x) => x.name)
      .sort(),
    [],
    'never-delivered checkpoints count only when old enough',
  );
  assert.deepEqual(
    c.checkpoints
      .unneeded('web01', { olderThan: new Date(Date.now() + 1_000) })
      .map((x) => x.name)
      .sort(),
    ['cp1', 'cp3'],
  );
});

test('maintenance: claim is due once per interval, and a stamp from the future counts as due', (t) => {
  const c = catalog(t);
  const at = (ms: number) => new Date(ms);
  assert.equal(c.maintenance.claim('retention', 3_600_000, at(10_000_000)), true);
  assert.equal(c.maintenance.claim('retention', 3_600_000, at(10_000_000 + 60_000)), false);
  assert.equal(c.maintenance.claim('checkpoints', 3_600_000, at(10_000_000 + 60_000)), true);
  assert.equal(c.maintenance.claim('retention', 3_600_000, at(10_000_000 + 3_600_000)), true);
  assert.deepEqual(c.maintenance.lastRun('retention'), at(13_600_000));
  // The clock went back an hour: the stamp is in the future, and the task runs.
  assert.equal(c.maintenance.claim('retention', 3_600_000, at(10_000_000)), true);
  c.maintenance.stamp('retention', at(20_000_000));
  assert.equal(c.maintenance.claim('retention', 3_600_000, at(20_000_001)), false);
});

test('migration 2 maps the names of a version-1 catalog’s history to their stores', (t) => {
  const path = join(tmpDir(t), 'catalog.sqlite');
  const db = new Database(path);
  migrate(db, path, MIGRATIONS.slice(0, 1));
  db.exec(`
    INSERT INTO runs (id, kind, trigger, status, started_at) VALUES (1, 'protect', 'manual', 'ok', 1000);
    INSERT INTO run_servers (run_id, server, target, status, started_at, generation_id)
      VALUES (1, 'web01', 'dr1', 'ok', 1000, 'g1');
    INSERT INTO checkpoints (id, server, name, domain_uuid, created_at, disks, xml, recorded_at)
      VALUES (1, 'web01', 'cp1', 'u', 1000, '["vda"]', 'x', 1000),
             (2, 'web01', 'cp2', 'u', 2000, '["vda"]', 'x', 2000);
    INSERT INTO deliveries (checkpoint_id, target, generation_id, delivered_at)
      VALUES (1, 'store-A', 'g1', 1500), (2, 'store-B', 'g2', 2500);
    -- The run of g2 was lost, but the pair's status still names it.
    INSERT INTO server_status (server, target, last_good_generation) VALUES ('web01', '/srv/b', 'g2');
  `);
  db.close();
  const c = catalog(t, path);
  assert.deepEqual(
    c.targetStores.list().map((m) => [m.target, m.storeId, m.seenAt.getTime()]),
    [
      ['/srv/b', 'store-B', 2500],
      ['dr1', 'store-A', 1500],
    ],
  );
});
