/**
 * Issue 16, "scheduled like server drills; a failed drill is an alert", with the real
 * `haven serve`: a configured drill with `hosts:` fires on its cron schedule and drills every
 * host it selects in the store, each recorded as a host run with its event. The stored archive
 * is damaged on purpose, so the drill fails at its digest check before anything boots: the
 * recovery itself (rescue boot, `rear recover`, the recovered system's marker) is proved by
 * host-recovery.test.ts through the same `runRecordedHostDrill`. A host named in the drill but
 * absent from the store fails too, by name. Damaged media as well: `haven verify` names both
 * damaged files. The older generations are untouched.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { HostRun, Run } from '../../src/catalog/catalog.ts';
import { digest } from '../../src/core/digest.ts';
import { createFsStore } from '../../src/store/fs/fs-store.ts';
import { type HostFileMeta, HostStore } from '../../src/store/host/index.ts';
import { hostFacts } from '../../src/store/host/test-support/facts.ts';
import { TEST_ROOT } from '../fixtures/guest/index.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { freePort, startDaemon, waitFor, withCatalog, writeConfig } from './jobs-helpers.ts';

const at = '2026-12-01T00:00:00.000Z';

async function put(store: HostStore, meta: HostFileMeta, data: Buffer) {
  const w = await store.beginFile(meta);
  await w.write(0, data);
  return w.finish({ size: data.length, digest: digest('blake3', data).toString('hex') });
}

test('haven serve runs the hosts: of a scheduled drill; a damaged archive fails it with an alert', async (t) => {
  await mkdir(TEST_ROOT, { recursive: true });
  const dir = await mkdtemp(join(TEST_ROOT, 'haven-t-dhd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fs = await createFsStore(join(dir, 'store'));
  await fs.close();
  const hosts = new HostStore(fs.location, fs.descriptor);
  const rescue = await put(
    hosts,
    { host: 'node1', kind: 'rescue', copies: 2, takenAt: at, facts: hostFacts() },
    randomBytes(256 * 1024),
  );
  const backup = (seq: number): HostFileMeta => ({
    host: 'node1',
    kind: 'backup',
    copies: 2,
    takenAt: new Date(Date.parse(at) + seq * 60_000).toISOString(),
    rescueId: rescue.id,
    excludes: [],
  });
  await put(hosts, backup(1), randomBytes(512 * 1024));
  const newest = await put(hosts, backup(2), randomBytes(512 * 1024));
  const older = await readFile(join(fs.location, 'hosts', 'node1_backup_2.tar.gz'));
  const fh = await open(join(fs.location, 'hosts', 'node1_backup_1.tar.gz'), 'r+');
  await fh.write(Buffer.from('damage'), 0, 6, 4096);
  await fh.close();

  const port = await freePort();
  const config = await writeConfig(
    dir,
    `drills:
  hosts-every-minute:
    store: ${fs.location}
    hosts: [node1, ghost]
    schedule: "* * * * *"
    boot_marker: { serial: "login:" }
    recovery_timeout: 10m
daemon:
  listen: 127.0.0.1:${port}
`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const daemon = startDaemon(t, h.env);

  const run = await waitFor(
    'a scheduled drill to finish',
    async () =>
      (await havenJson<Run[]>(h, ['runs', '--kind', 'drill'])).find(
        (r) => r.trigger === 'schedule' && r.status !== 'running',
      ),
    150_000,
    2_000,
  );
  await daemon.stop(60_000);
  assert.equal(run.job, 'hosts-every-minute');
  assert.equal(run.status, 'failed', daemon.stderr());
  const summary = run.summary as {
    passed: number;
    failed: number;
    hosts: { host: string; result: string }[];
  };
  assert.equal(summary.passed, 0);
  assert.equal(summary.failed, 2);
  assert.deepEqual(
    summary.hosts.map((x) => [x.host, x.result]),
    [
      ['node1', 'fail'],
      ['ghost', 'fail'],
    ],
  );

  const runs = withCatalog(h.env.HAVEN_STATE_DIR!, (c) => [
    ...c.hostRuns.list({ host: 'node1', limit: 10 }),
    ...c.hostRuns.list({ host: 'ghost', limit: 10 }),
  ]) as HostRun[];
  const node1 = runs.find((r) => r.host === 'node1' && r.kind === 'drill');
  assert.equal(node1?.status, 'failed');
  assert.equal(node1?.trigger, 'schedule');
  assert.equal(node1?.generationId, newest.id, 'the newest archive was drilled');
  assert.match(String(node1?.errorCode), /STORE_HOST_|DAMAGED|DIGEST/);
  const ghost = runs.find((r) => r.host === 'ghost' && r.kind === 'drill');
  assert.equal(ghost?.status, 'failed');
  assert.match(String(ghost?.errorCode), /NOT_FOUND/);

  const events = await havenJson<{ type: string; server?: string }[]>(h, ['events', '--json']);
  const failed = events.filter((e) => e.type === 'host.drill.failed').map((e) => e.server);
  assert.ok(failed.includes('node1') && failed.includes('ghost'), JSON.stringify(events));

  // Damaged media too: `haven verify` names both damaged files and nothing else.
  const iso = await open(join(fs.location, 'hosts', 'node1_rescue_1.iso'), 'r+');
  await iso.write(Buffer.from('damage'), 0, 6, 100_000);
  await iso.close();
  const verify = await runHaven(h, ['verify', '--store', fs.location, '--json']);
  assert.notEqual(verify.code, 0);
  assert.match(verify.stdout + verify.stderr, /node1_rescue_1\.iso/);
  assert.match(verify.stdout + verify.stderr, /node1_backup_1\.tar\.gz/);
  assert.doesNotMatch(verify.stdout + verify.stderr, /node1_backup_2\.tar\.gz/);

  // Nothing stored changed: the older archive is byte for byte what it was, no file was added.
  assert.deepEqual(await readFile(join(fs.location, 'hosts', 'node1_backup_2.tar.gz')), older);
  assert.deepEqual((await readdir(join(fs.location, 'hosts'))).sort(), [
    'node1.txt',
    'node1_backup_1.tar.gz',
    'node1_backup_2.tar.gz',
    'node1_rescue_1.iso',
  ]);
});
