/**
 * Issue 18: every recovery path runs from the Ceph cluster (test/fixtures/ceph). A live guest is
 * protected into an rbd store; its definition's disks are RBD network disks.
 * - A drill boots the newest generation under a qcow2 overlay whose backing image is read from
 *   the cluster (the cephx key in a libvirt secret), and the guest verifies its own pattern inside.
 * - A restore writes the generation back as a sparse raw file, byte-equal to the image in the pool.
 * - The primary stops; `haven activate` starts the server from the cluster alone, the guest
 *   verifies its pattern again and then writes at the DR site; `haven failback` brings those
 *   writes home, the primary's disk then equals the DR copy, and the next replication into the
 *   pool is incremental and equals it too.
 * The generations stay byte-identical through the drill, the restore and the activation.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import type { DrillReport, FailbackResult, RestoreResult } from '../../src/recovery/index.ts';
import { startCephCluster } from '../fixtures/ceph/index.ts';
import { havenJson } from '../helpers/haven.ts';
import { imageHashes } from '../helpers/rbd-images.ts';
import {
  activateBeside,
  domainsLike,
  drCopyOf,
  runHaven,
  sha256File,
  site,
  stat,
  waitForText,
} from './recovery-helpers.ts';

const MARKER = 'HAVEN pattern-verify OK disk=vda seed=61 count=40';

test('a drill, a restore, an activation and a failback from the cluster; the guest verifies its data inside', async (t) => {
  const ceph = await startCephCluster(t);
  const pool = await ceph.createPool(`haven-t-recrbd-${randomBytes(4).toString('hex')}`);
  const s = await site(t, 'rbd');
  const server = s.guest.name;
  const disk = s.guest.disks[0]!;
  const location = `rbd://admin@ceph/${pool}?conf=${ceph.conf}&keyring=${ceph.keyring}`;
  const to = `file://${s.store}?rbd=${encodeURIComponent(location)}`;
  await s.guest.writePattern('vda', 61, 40);
  await s.guest.setWorkload({ name: 'pattern-verify', seed: 61, count: 40 });
  await havenJson(s.h, ['protect', server, '--to', to, '--copies', '2']);
  const before = await imageHashes(ceph, pool, s.dir);
  const newest = `${server}_${disk.storeName}_1`;

  const drill = await runHaven(s.h, [
    'drill',
    server,
    '--store',
    s.store,
    '--marker',
    MARKER,
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

  // A restore reads the generation from the cluster into a sparse raw file.
  const restored = await havenJson<RestoreResult>(s.h, [
    'restore',
    server,
    '--store',
    s.store,
    '--to',
    join(s.dir, 'restored'),
    '--no-define',
  ]);
  const r0 = restored.disks[0]!;
  assert.equal(await sha256File(r0.path), before.get(newest), 'the restored disk equals the generation');
  assert.ok(r0.allocated < r0.size / 2, `sparse: ${r0.allocated} of ${r0.size} bytes allocated`);

  // The disaster: the primary stops; the DR site starts the server from the cluster beside it.
  const { activation: a, copy } = await activateBeside(s);
  await waitForText(copy.serialLog, MARKER, 120_000);
  await waitForText(copy.serialLog, /^HAVEN ready$/m, 90_000);
  assert.deepEqual(await imageHashes(ceph, pool, s.dir), before, 'the activation wrote no generation');

  // The DR copy writes; failback brings it home.
  const count = 64;
  const logFrom = (await stat(copy.serialLog)).size;
  assert.equal(await copy.command(`random start vda 0 ${count}`), 'ok');
  await waitForText(copy.serialLog, `HAVEN random done disk=vda writes=${count}`, 120_000, logFrom);
  assert.equal(await copy.command('sync'), 'ok');
  // The DR copy as it stands: its overlay over the generation, read through the cluster.
  const drCopy = await drCopyOf(s, a, disk.storeName);
  assert.notEqual(await sha256File(drCopy), before.get(newest), 'the DR copy changed');

  const fb = await havenJson<FailbackResult>(s.h, ['failback', server, '--store', s.store, '--to', 'local']);
  assert.equal(fb.started, true);
  const cmp = await exec('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'raw', disk.path, drCopy], {
    okCodes: [0, 1],
  });
  assert.equal(cmp.code, 0, `the primary equals the DR copy: ${cmp.stdout}`);
  assert.deepEqual(await domainsLike(`${server}-dr`), [], 'the DR copy is gone');

  // Replication into the pool goes on, incremental, and its newest generation is the DR copy.
  const next = await havenJson<ProtectResult>(s.h, ['protect', server, '--to', to, '--copies', '2']);
  assert.equal(next.mode, 'incremental');
  assert.equal((await imageHashes(ceph, pool, s.dir)).get(newest), await sha256File(drCopy));
});
