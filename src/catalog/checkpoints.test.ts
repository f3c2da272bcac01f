import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { HavenError } from '../core/errors.ts';
import type { Catalog, CheckpointInput } from './catalog.ts';
import { scratchCatalog } from './test-support.ts';

const catalog = (t: TestContext): Catalog => scratchCatalog(t, 'haven-t-cat-cp-');

function hasCode(code: string) {
  return (e: unknown) => e instanceof HavenError && e.code === code;
}

const XML = `<domaincheckpoint><name>c1</name><creationTime>1</creationTime>
  <disks><disk name='vda' checkpoint='bitmap' bitmap='c1'/></disks><domain type='qemu'><name>web01</name></domain>
</domaincheckpoint>`;

function cp(name: string, createdAt: number, extra: Partial<CheckpointInput> = {}): CheckpointInput {
  return {
    server: 'web01',
    name,
    domainUuid: '6f1c5f5e-0000-4000-8000-000000000001',
    createdAt: new Date(createdAt),
    disks: ['vda', 'vdb'],
    xml: XML.replaceAll('c1', name),
    ...extra,
  };
}

test('checkpoints: record, get, list newest first; recording again is a no-op', (t) => {
  const c = catalog(t);
  const rec = c.checkpoints.record(cp('c1', 1_000));
  assert.equal(rec.server, 'web01');
  assert.equal(rec.name, 'c1');
  assert.deepEqual(rec.disks, ['vda', 'vdb']);
  assert.equal(rec.parent, null);
  assert.equal(rec.xml, XML);
  assert.deepEqual(rec.createdAt, new Date(1_000));
  c.checkpoints.record(cp('c2', 2_000, { parent: 'c1' }));
  c.checkpoints.record(cp('c1', 500, { server: 'db01' }));
  assert.deepEqual(c.checkpoints.get('web01', 'c2')?.parent, 'c1');
  assert.equal(c.checkpoints.get('web01', 'nope'), undefined);
  assert.deepEqual(
    c.checkpoints.list('web01').map((x) => x.name),
    ['c2', 'c1'],
  );
  assert.deepEqual(
    c.checkpoints.list().map((x) => `${x.server}/${x.name}`),
    ['db01/c1', 'web01/c2', 'web01/c1'],
  );
  const again = c.checkpoints.record(cp('c1', 1_000));
  assert.deepEqual(again, rec);
  assert.throws(() => c.checkpoints.record(cp('c1', 3_000)), hasCode('CATALOG_CHECKPOINT_EXISTS'));
  assert.throws(
    () => c.checkpoints.record(cp('c1', 1_000, { domainUuid: 'other' })),
    hasCode('CATALOG_CHECKPOINT_EXISTS'),
  );
  assert.throws(() => c.checkpoints.record(cp('c9', 1, { disks: [''] })), hasCode('CATALOG_BAD_VALUE'));
  assert.throws(() => c.checkpoints.record(cp('c9', 1, { xml: '' })), hasCode('CATALOG_BAD_VALUE'));
  assert.equal(c.checkpoints.list('web01').length, 2);
});

test('deliveries: the last delivered checkpoint per server and target', (t) => {
  const c = catalog(t);
  c.checkpoints.record(cp('c1', 1_000));
  c.checkpoints.record(cp('c2', 2_000));
  assert.equal(c.checkpoints.lastDelivered('web01', 'dr1'), undefined);
  assert.throws(
    () => c.checkpoints.markDelivered('web01', 'c7', 'dr1', 'g'),
    hasCode('CATALOG_CHECKPOINT_NOT_FOUND'),
  );

  const d1 = c.checkpoints.markDelivered('web01', 'c1', 'dr1', 'gen-1', new Date(1_500));
  assert.equal(d1.checkpoint.name, 'c1');
  c.checkpoints.markDelivered('web01', 'c1', 'dr2', 'gen-a', new Date(1_600));
  c.checkpoints.markDelivered('web01', 'c2', 'dr1', 'gen-2', new Date(2_500));

  const last1 = c.checkpoints.lastDelivered('web01', 'dr1');
  assert.equal(last1?.checkpoint.name, 'c2');
  assert.equal(last1?.generationId, 'gen-2');
  assert.deepEqual(last1?.deliveredAt, new Date(2_500));
  assert.equal(last1?.checkpoint.xml, XML.replaceAll('c1', 'c2'));
  assert.equal(c.checkpoints.lastDelivered('web01', 'dr2')?.checkpoint.name, 'c1');
  assert.equal(c.checkpoints.lastDelivered('db01', 'dr1'), undefined);

  // Delivering again (a resync of the same checkpoint) replaces the generation.
  c.checkpoints.markDelivered('web01', 'c1', 'dr2', 'gen-b', new Date(3_000));
  assert.equal(c.checkpoints.lastDelivered('web01', 'dr2')?.generationId, 'gen-b');
  assert.deepEqual(
    c.checkpoints.deliveries('web01', 'c1').map((d) => [d.target, d.generationId]),
    [
      ['dr1', 'gen-1'],
      ['dr2', 'gen-b'],
    ],
  );
});

test('unneeded: everything but each target’s last delivery and what is in flight', (t) => {
  const c = catalog(t);
  for (const [name, at] of [
    ['c1', 1_000],
    ['c2', 2_000],
    ['c3', 3_000],
    ['c4', 4_000],
    ['c5', 5_000],
  ] as const) {
    c.checkpoints.record(cp(name, at));
  }
  c.checkpoints.markDelivered('web01', 'c1', 'dr1', 'g1', new Date(1_100));
  c.checkpoints.markDelivered('web01', 'c2', 'dr1', 'g2', new Date(2_100));
  c.checkpoints.markDelivered('web01', 'c1', 'dr2', 'ga', new Date(1_200));
  c.checkpoints.markDelivered('web01', 'c3', 'old', 'gx', new Date(3_100));
  c.inflight.set({ server: 'web01', target: 'dr1', deltaId: 'd4', checkpoint: 'c4', incrementalFrom: 'c2' });
  // c5: recorded, never delivered, not in flight: a run that crashed before it got going, or one
  // that has only just created it. Only `olderThan` makes it unneeded.
  const names = (opts?: Parameters<Catalog['checkpoints']['unneeded']>[1]) =>
    c.checkpoints.unneeded('web01', opts).map((x) => x.name);

  assert.deepEqual(names(), [], 'c1 (dr2), c2 (dr1), c3 (old) are last deliveries; c4 is in flight');
  assert.deepEqual(
    names({ targets: ['dr1', 'dr2'] }),
    ['c3'],
    'a target no longer configured does not count',
  );
  assert.deepEqual(names({ targets: ['dr1'] }), ['c3', 'c1']);
  assert.deepEqual(names({ targets: ['dr1'], olderThan: new Date(Date.now() + 60_000) }), ['c5', 'c3', 'c1']);
  c.inflight.clear('web01', 'dr1');
  c.checkpoints.markDelivered('web01', 'c4', 'dr1', 'g4', new Date(4_100));
  assert.deepEqual(names({ targets: ['dr1', 'dr2'] }), ['c3', 'c2']);
  assert.deepEqual(c.checkpoints.unneeded('db01'), []);
});

test('forget: removes a checkpoint and its deliveries; refused while a delta uses it', (t) => {
  const c = catalog(t);
  c.checkpoints.record(cp('c1', 1_000));
  c.checkpoints.record(cp('c2', 2_000));
  c.checkpoints.markDelivered('web01', 'c1', 'dr1', 'g1', new Date(1_100));
  c.inflight.set({ server: 'web01', target: 'dr1', deltaId: 'd2', checkpoint: 'c2', incrementalFrom: 'c1' });
  assert.throws(() => c.checkpoints.forget('web01', 'c1'), hasCode('CATALOG_CHECKPOINT_IN_USE'));
  assert.throws(() => c.checkpoints.forget('web01', 'c2'), hasCode('CATALOG_CHECKPOINT_IN_USE'));
  c.inflight.clear('web01', 'dr1', 'd2');
  assert.equal(c.checkpoints.forget('web01', 'c1'), true);
  assert.equal(c.checkpoints.forget('web01', 'c1'), false);
  assert.equal(c.checkpoints.lastDelivered('web01', 'dr1'), undefined, 'its deliveries went with it');
  assert.deepEqual(c.checkpoints.deliveries('web01', 'c1'), []);
  assert.deepEqual(
    c.checkpoints.list('web01').map((x) => x.name),
    ['c2'],
  );
});

test('in-flight deltas: set, resume with a new socket, refuse a second delta, clear', (t) => {
  const c = catalog(t);
  const run = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'schedule' });
  assert.equal(c.inflight.get('web01', 'dr1'), undefined);
  const set = c.inflight.set({
    server: 'web01',
    target: 'dr1',
    deltaId: 'd-1',
    checkpoint: 'c2',
    incrementalFrom: 'c1',
    socket: '/var/lib/haven/run/web01/nbd.sock',
    runId: run.id,
    startedAt: new Date(7_000),
  });
  assert.equal(set.deltaId, 'd-1');
  assert.equal(set.incrementalFrom, 'c1');
  assert.equal(set.runId, run.id);
  assert.deepEqual(set.startedAt, new Date(7_000));

  // The successor of a crashed run takes the same delta over with its own socket and run.
  const run2 = c.runs.start({ kind: 'job', job: 'nightly', trigger: 'missed' });
  const resumed = c.inflight.set({
    server: 'web01',
    target: 'dr1',
    deltaId: 'd-1',
    checkpoint: 'c2',
    socket: '/var/lib/haven/run/web01/nbd2.sock',
    runId: run2.id,
  });
  assert.equal(resumed.socket, '/var/lib/haven/run/web01/nbd2.sock');
  assert.equal(resumed.runId, run2.id);
  assert.equal(resumed.incrementalFrom, 'c1', 'kept');
  assert.deepEqual(resumed.startedAt, new Date(7_000), 'kept');

  assert.throws(
    () => c.inflight.set({ server: 'web01', target: 'dr1', deltaId: 'd-2', checkpoint: 'c3' }),
    hasCode('CATALOG_DELTA_IN_FLIGHT'),
  );
  assert.equal(c.inflight.get('web01', 'dr1')?.deltaId, 'd-1');

  c.inflight.set({ server: 'web01', target: 'dr2', deltaId: 'd-9', checkpoint: 'c2' });
  c.inflight.set({ server: 'db01', target: 'dr1', deltaId: 'd-5', checkpoint: 'k1' });
  assert.deepEqual(
    c.inflight.list().map((d) => `${d.server}/${d.target}/${d.deltaId}`),
    ['db01/dr1/d-5', 'web01/dr1/d-1', 'web01/dr2/d-9'],
  );
  assert.equal(c.inflight.clear('web01', 'dr1', 'd-other'), false, 'only the named delta is cleared');
  assert.equal(c.inflight.get('web01', 'dr1')?.deltaId, 'd-1');
  assert.equal(c.inflight.clear('web01', 'dr1', 'd-1'), true);
  assert.equal(c.inflight.clear('web01', 'dr2'), true);
  assert.equal(c.inflight.clear('web01', 'dr2'), false);
  assert.deepEqual(
    c.inflight.list().map((d) => d.server),
    ['db01'],
  );
  assert.throws(
    () => c.inflight.set({ server: 'web01', target: 'dr1', deltaId: '', checkpoint: 'c' }),
    hasCode('CATALOG_BAD_VALUE'),
  );
});
