/**
 * Issue 18: a drill and an activation boot straight from the Ceph cluster (test/fixtures/ceph).
 * A live guest is protected into an rbd store; its definition's disks are RBD network disks. The
 * drill boots the newest generation under a qcow2 overlay whose backing image is read from the
 * cluster (the cephx key in a libvirt secret), and the guest verifies its own pattern inside;
 * the generations stay byte-identical. Then the primary is gone and `haven activate` starts the
 * server from the cluster alone, the guest verifying its pattern again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ActivationReport, DrillReport } from '../../src/recovery/index.ts';
import { startCephCluster } from '../fixtures/ceph/index.ts';
import { havenJson } from '../helpers/haven.ts';
import { imageHashes } from '../helpers/rbd-images.ts';
import { destroyDomainsLike, domainsLike, runHaven, site, waitForText } from './recovery-helpers.ts';

test('a drill and an activation boot from the cluster; the guest verifies its data inside', async (t) => {
  const ceph = await startCephCluster(t);
  const pool = await ceph.createPool(`haven-t-recrbd-${randomBytes(4).toString('hex')}`);
  const s = await site(t, 'rbd');
  const server = s.guest.name;
  const location = `rbd://admin@ceph/${pool}?conf=${ceph.conf}&keyring=${ceph.keyring}`;
  await s.guest.writePattern('vda', 61, 40);
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 61, count: 40 });
  await havenJson(s.h, [
    'protect',
    server,
    '--to',
    `file://${s.store}?rbd=${encodeURIComponent(location)}`,
    '--copies',
    '2',
  ]);
  const before = await imageHashes(ceph, pool, s.dir);

  const drill = await runHaven(s.h, [
    'drill',
    server,
    '--store',
    s.store,
    '--marker',
    'HAVEN pattern-verify OK disk=vda seed=61 count=40',
    '--timeout',
    '3m',
    '--json',
  ]);
  assert.equal(drill.code, 0, drill.stderr + drill.stdout);
  const report = JSON.parse(drill.stdout) as DrillReport;
  assert.deepEqual(
    report.results.map((r) => [r.server, r.result]),
    [[server, 'pass']],
  );
  t.diagnostic(`drill from the cluster: boot marker after ${report.results[0]!.seconds} s`);
  assert.deepEqual(await domainsLike(`${server}-drill`), [], 'a drill domain was left');
  assert.deepEqual(await imageHashes(ceph, pool, s.dir), before, 'the drill wrote no generation');

  // The disaster: the primary is gone; the DR site starts the server from the cluster.
  await s.guest.cleanup();
  const activation = await havenJson<ActivationReport>(s.h, ['activate', server, '--store', s.store]);
  t.after(() => destroyDomainsLike(server));
  const r = activation.servers[0]!;
  assert.equal(r.status, 'running');
  await waitForText(
    join(s.store, '.haven', 'active', server, 'serial0.log'),
    'HAVEN pattern-verify OK disk=vda seed=61 count=40',
    120_000,
  );
  const d = await runHaven(s.h, ['deactivate', server, '--store', s.store, '--destroy']);
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(await imageHashes(ceph, pool, s.dir), before, 'the activation wrote no generation');
});
