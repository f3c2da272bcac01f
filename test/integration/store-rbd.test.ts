/**
 * Issue 18, the replication must-shows on RBD: a live guest (two disks and a cdrom) protected with
 * `copies: 3` into an rbd store on the one-node test cluster (test/fixtures/ceph). One full and
 * three incremental runs; test/helpers/rounds.ts checks after every run that the pool's images are
 * named exactly as the seed's, that every generation equals an independent model of the guest's
 * disks at its run (each image exported from the cluster with `rbd export`), that incremental runs
 * send only what changed, and that the definition is written once, its disks RBD network disks,
 * its cdrom ejected. Then the rotation's sharing inside Ceph, `haven verify` and `haven images`,
 * and a store directory rebuilt from the pool alone.
 *
 * Then a pool that fills (a quota): the run fails with NO_SPACE, every generation stays as it was,
 * and the next run completes once the quota is raised.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DomainXml } from '../../src/core/domain-xml.ts';
import { exec } from '../../src/core/exec.ts';
import { type CephCluster, startCephCluster } from '../fixtures/ceph/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { PATTERN_BLOCK_SIZE } from '../fixtures/guest/pattern.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { firstDifference } from '../helpers/disk-model.ts';
import { type HavenEnv, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { imageHashes } from '../helpers/rbd-images.ts';
import { type Round, replicationRounds, type StoreView } from '../helpers/rounds.ts';

const PREFIX = 'haven-t-rbdr';
const ROUNDS: Round[] = [
  [
    ['vda', 31, 60],
    ['vdb', 32, 20],
  ],
  [['vda', 33, 30]],
  [['vdb', 34, 10]],
  [
    ['vda', 35, 20],
    ['vdb', 36, 5],
  ],
];

function location(ceph: CephCluster, pool: string): string {
  return `rbd://admin@ceph/${pool}?conf=${ceph.conf}&keyring=${ceph.keyring}`;
}

function target(store: string, ceph: CephCluster, pool: string): string {
  return `file://${store}?rbd=${encodeURIComponent(location(ceph, pool))}`;
}

/** The pool's images, each exported from the cluster to compare. */
function rbdView(ceph: CephCluster, pool: string, store: string, scratch: string): StoreView {
  const defPath = (server: string) => join(store, 'definitions', `${server}.xml`);
  return {
    images: async () => (await ceph.rbd(['ls', pool])).stdout.split('\n').filter(Boolean),
    firstDifference: async (image, expected) => {
      const copy = join(scratch, `${image}.export`);
      await rm(copy, { force: true });
      await ceph.rbd(['export', '--no-progress', `${pool}/${image}`, copy]);
      try {
        return await firstDifference(copy, expected);
      } finally {
        await rm(copy, { force: true });
      }
    },
    diskPath: (image) => `rbd:${pool}/${image}`,
    readDefinition: (server) => readFile(defPath(server), 'utf8'),
    writeDefinition: (server, text) => writeFile(defPath(server), text),
  };
}

async function imageInfo(ceph: CephCluster, pool: string, image: string) {
  return JSON.parse((await ceph.rbd(['info', '--format', 'json', `${pool}/${image}`])).stdout) as {
    size: number;
    parent?: { image: string; snapshot: string };
  };
}

test('copies 3 into an rbd store: names, contents, clones sharing the newest, network-disk definitions', async (t) => {
  const ceph = await startCephCluster(t);
  const pool = await ceph.createPool(`${PREFIX}-${randomBytes(4).toString('hex')}`);
  const dir = await testDir(t, PREFIX);
  const store = join(dir, 'store');
  const h = await havenEnv(dir);
  const guest = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }],
    cdrom: 'iso',
  });

  await replicationRounds({
    h,
    guest,
    store: rbdView(ceph, pool, store, dir),
    dir,
    copies: 3,
    rounds: ROUNDS,
    protectArgs: ['--to', target(store, ceph, pool)],
  });

  // The newest generation holds the data; the older two are clones of snapshots of it.
  const disks = guest.disks.map((d) => d.storeName);
  for (const disk of disks) {
    const name = (seq: number) => `${guest.name}_${disk}_${seq}`;
    assert.equal((await imageInfo(ceph, pool, name(1))).parent, undefined, `${name(1)} is a full image`);
    for (const seq of [2, 3]) {
      const info = await imageInfo(ceph, pool, name(seq));
      assert.equal(info.parent?.image, name(1), `${name(seq)} is a clone of ${name(1)}`);
    }
  }

  // The definition boots from the cluster: network disks with the cephx user and its secret.
  const def = DomainXml.parse(await readFile(join(store, 'definitions', `${guest.name}.xml`), 'utf8'));
  for (const d of def.disks().filter((x) => x.device === 'disk')) {
    assert.equal(d.element.getAttribute('type'), 'network');
    const source = def.child(d.element, 'source');
    assert.equal(source?.getAttribute('protocol'), 'rbd');
    const auth = def.child(d.element, 'auth');
    assert.equal(auth?.getAttribute('username'), 'admin');
  }

  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    guest.name,
    '--store',
    store,
  ]);
  assert.equal(verify.ok, true);
  assert.equal(verify.checkedGenerations, 3);
  const listed = await havenJson<Array<{ generations: Array<{ seq: number; mode: string }> }>>(h, [
    'images',
    guest.name,
    '--store',
    store,
  ]);
  assert.deepEqual(
    listed[0]!.generations.map((g) => [g.seq, g.mode]),
    [
      [1, 'incremental'],
      [2, 'incremental'],
      [3, 'incremental'],
    ],
  );

  // haven doctor at the DR host checks the cluster, the user's rights on the pool, its room and
  // QEMU's rbd driver; run as on a healthy site, every check passes.
  const doctor = await runHaven(h, ['doctor', '--store', store, '--json']);
  const checks = (
    JSON.parse(doctor.stdout) as { checks: Array<{ id: string; status: string; detail: string }> }
  ).checks;
  const rbdChecks = checks.filter((c) => c.id.startsWith('rbd-'));
  assert.deepEqual(
    rbdChecks.map((c) => c.id),
    ['rbd-cluster', 'rbd-caps', 'rbd-room', 'rbd-qemu'],
  );
  for (const c of rbdChecks) assert.equal(c.status, 'ok', `${c.id}: ${c.detail}`);

  // A DR host that lost the store's directory rebuilds it from the pool alone.
  const rebuilt = join(dir, 'rebuilt');
  const again = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    guest.name,
    '--store',
    rebuilt,
    '--rbd',
    location(ceph, pool),
  ]);
  assert.equal(again.ok, true);
  assert.equal(again.checkedGenerations, 3);

  // Sparse in the cluster: the pool stores what the guest wrote (the older versions the
  // snapshots keep included) and the store's metadata, a fraction of the 96 MiB of the two disks
  // (288 MiB for three full copies). Twice what was written leaves room for the metadata and
  // Ceph's own accounting. (`rbd diff` cannot show this per image: it reports whole objects.)
  const written = ROUNDS.flat().reduce((sum, [, , blocks]) => sum + blocks, 0) * PATTERN_BLOCK_SIZE;
  const stored = await poolStored(ceph, pool);
  t.diagnostic(`pool stores ${stored} bytes for ${written} bytes written by the guest`);
  assert.ok(stored <= 2 * written + 4 * 1024 * 1024, `the pool stores ${stored} bytes, ${written} written`);
});

/** The pool's stored bytes as the cluster reports them (`ceph df`: data and omap, one replica). */
async function poolStored(ceph: CephCluster, pool: string): Promise<number> {
  const df = JSON.parse((await ceph.ceph(['df', 'detail', '--format', 'json'])).stdout) as {
    pools: Array<{ name: string; stats: { stored: number } }>;
  };
  const stats = df.pools.find((p) => p.name === pool)?.stats;
  assert.ok(stats, `pool ${pool} in ceph df`);
  return stats.stored;
}

/** The run after a failed one commits incrementally, and both generations verify. */
async function nextRunCompletes(
  h: HavenEnv,
  protect: string[],
  server: string,
  store: string,
): Promise<void> {
  const r = await havenJson<{ mode: string }>(h, protect);
  assert.equal(r.mode, 'incremental');
  const verify = await havenJson<{ ok: boolean; checkedGenerations: number }>(h, [
    'verify',
    server,
    '--store',
    store,
  ]);
  assert.equal(verify.ok, true);
  assert.equal(verify.checkedGenerations, 2);
}

test('a pool that reaches its quota: NO_SPACE, every generation as it was, the next run completes once it is raised', async (t) => {
  const ceph = await startCephCluster(t);
  const pool = await ceph.createPool(`${PREFIX}-q-${randomBytes(4).toString('hex')}`);
  const dir = await testDir(t, `${PREFIX}-q`);
  const store = join(dir, 'store');
  const h = await havenEnv(dir);
  const guest = await createTestGuest(t, { prefix: `${PREFIX}-q`, disks: [{ sizeMiB: 48 }] });
  const protect = ['protect', guest.name, '--to', target(store, ceph, pool), '--copies', '2'];

  await guest.writePattern('vda', 41, 40);
  await havenJson(h, protect);
  await guest.writePattern('vda', 42, 10);
  await havenJson(h, protect);
  const before = await imageHashes(ceph, pool, dir);
  assert.equal(before.size, 2);

  // Room for a few MiB more; the guest then changes 16 MiB.
  const used = JSON.parse((await ceph.ceph(['df', 'detail', '--format', 'json'])).stdout).pools.find(
    (p: { name: string }) => p.name === pool,
  ).stats.bytes_used as number;
  await ceph.setPoolQuota(pool, used + 2 * 1024 * 1024);
  await guest.writePattern('vda', 43, 256);
  const full = await runHaven(h, [...protect, '--json']);
  assert.notEqual(full.code, 0, full.stdout);
  const err = (JSON.parse(full.stdout) as { error: { code: string; hint: string } }).error;
  assert.equal(err.code, 'NO_SPACE', JSON.stringify(err));
  assert.match(err.hint, /quota/);
  assert.deepEqual(await imageHashes(ceph, pool, dir), before, 'every generation is as it was');

  await ceph.setPoolQuota(pool, 0);
  await nextRunCompletes(h, protect, guest.name, store);
});

test('an OSD stopped when a run starts and in the middle of a commit: RBD_TIMEOUT, no corrupt generation, the next run completes', async (t) => {
  // A cluster of this test alone: only an exclusive cluster may lose a daemon.
  const own = await startCephCluster(t, { exclusive: true });
  const pool = await own.createPool(`${PREFIX}-o-${randomBytes(4).toString('hex')}`);
  const dir = await testDir(t, `${PREFIX}-o`);
  const store = join(dir, 'store');
  const h = await havenEnv(dir, { HAVEN_RBD_TIMEOUT: '10' });
  const guest = await createTestGuest(t, { prefix: `${PREFIX}-o`, disks: [{ sizeMiB: 32 }] });
  const protect = ['protect', guest.name, '--to', target(store, own, pool), '--copies', '2'];

  await guest.writePattern('vda', 51, 30);
  await havenJson(h, protect);
  await guest.writePattern('vda', 52, 10);
  await havenJson(h, protect);
  const before = await imageHashes(own, pool, dir);

  await guest.writePattern('vda', 53, 20);
  await own.stopOsd();
  const started = Date.now();
  const down = await runHaven(h, [...protect, '--retries', '0', '--json']);
  const took = Date.now() - started;
  assert.notEqual(down.code, 0, down.stdout);
  assert.match(down.stdout + down.stderr, /RBD_TIMEOUT/);
  assert.match(down.stdout + down.stderr, /timed out|did not answer/);
  // The store timeout (10 s) bounds the wait: the broker's own deadline is 2 × 10 + 10 s.
  assert.ok(took < 120_000, `the run gave up after ${took} ms`);

  await own.startOsd();
  assert.deepEqual(await imageHashes(own, pool, dir), before, 'every generation is as it was');
  await nextRunCompletes(h, protect, guest.name, store);

  // The OSD stops in the middle of a rotation's commit: the newest image already renamed, a
  // snapshot of it being taken (the store's request trace says when), the delta not yet written.
  await guest.writePattern('vda', 54, 20);
  const trace = join(dir, 'rbd-trace.log');
  const traced = { ...h, env: { ...h.env, HAVEN_RBD_TRACE: trace } };
  const osd = await own.pid('osd');
  assert.ok(osd !== undefined);
  let running = true;
  const midCommit = untilTraced(trace, '"op": "snap_create"', () => running).then((seen) => {
    if (seen) process.kill(osd, 'SIGTERM');
    return seen;
  });
  const mid = await runHaven(traced, [...protect, '--retries', '0', '--json']);
  running = false;
  assert.equal(await midCommit, true, `the run never took a snapshot: ${mid.stdout}`);
  assert.notEqual(mid.code, 0, mid.stdout);
  const midErr = (JSON.parse(mid.stdout) as { error: { code: string } }).error;
  assert.equal(midErr.code, 'RBD_TIMEOUT', JSON.stringify(midErr));
  await own.stopOsd();
  await own.startOsd();

  // No generation is corrupt: the next run finishes or undoes the interrupted commit, completes,
  // and every generation verifies; the newest is the disk as it is now.
  await nextRunCompletes(h, protect, guest.name, store);
  const newest = `${guest.name}_${guest.disks[0]!.storeName}_1`;
  const disk = join(dir, 'disk-now.raw');
  await exec('qemu-img', ['convert', '-U', '-O', 'raw', guest.disks[0]!.path, disk]);
  assert.equal((await imageHashes(own, pool, dir)).get(newest), await sha256(disk));
});

/** Whether `file` came to hold `text` while `waiting()` (polled: the broker flushes every request). */
async function untilTraced(file: string, text: string, waiting: () => boolean): Promise<boolean> {
  while (waiting()) {
    if ((await readFile(file, 'utf8').catch(() => '')).includes(text)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}
