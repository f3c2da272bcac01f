/**
 * Issue 13 item 15 on a real guest protected into two local stores: an ad hoc path and a
 * configured target a job copies to. `haven forget` of the ad hoc pair deletes its checkpoint
 * (libvirt's metadata and, for a shut-off guest, the persistent bitmap in the qcow2) while the
 * other target's stays and its next run is still incremental; the forgotten target's next run is
 * a checksum resync; nothing at the forgotten store is touched. A run in progress is refused; a
 * run killed outright leaves a backup job and a never-delivered checkpoint, which forget ends and
 * deletes. The stale-checkpoint rule (`haven prune`) deletes the checkpoint of a store no job
 * copies to once it is unused long enough. And a checkpoint of a shut-off guest is deleted with
 * its bitmap (libvirt refuses that for a shut-off domain).
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { catalogPath } from '../../src/catalog/catalog.ts';
import type { ProtectResult } from '../../src/engine/index.ts';
import type { ForgetResult, MaintenanceReport, StatusRow } from '../../src/jobs/index.ts';
import { activeBackup, listCheckpoints, qemuImgInfo } from '../../src/virt/index.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { type HavenEnv, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { waitFor, withCatalog, writeConfig } from './jobs-helpers.ts';

const PREFIX = 'haven-t-fgg';
const DAY = 86_400_000;

async function checkpoints(guest: TestGuest): Promise<string[]> {
  return (await listCheckpoints(guest.virsh, guest.name)).map((c) => c.name).sort();
}

async function bitmaps(guest: TestGuest): Promise<string[]> {
  return (await qemuImgInfo(guest.disks[0]!.path)).bitmaps.map((b) => b.name).sort();
}

function statusPairs(rows: StatusRow[]): string[] {
  return rows.filter((r) => r.lastRunAt !== null).map((r) => r.target);
}

/** Makes every delivery to `storeId` look `days` old (what the stale rule measures). */
function ageDeliveries(h: HavenEnv, storeId: string, days: number): void {
  const db = new Database(catalogPath(h.stateDir));
  try {
    db.prepare('UPDATE deliveries SET delivered_at = ? WHERE target = ?').run(
      Date.now() - days * DAY,
      storeId,
    );
  } finally {
    db.close();
  }
}

test('forget one target of a guest: its checkpoints and bitmaps go, the other target stays incremental', async (t) => {
  const dir = await testDir(t, PREFIX);
  const adhoc = join(dir, 'store-a');
  const configured = join(dir, 'store-b');
  const config = await writeConfig(
    dir,
    `targets:\n  b:\n    url: ${configured}\n    copies: 2\njobs:\n  nightly:\n    servers: [${PREFIX}-*]\n    target: b\n`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 64 }] });
  const protect = (to: string, ...extra: string[]) =>
    havenJson<ProtectResult>(h, ['protect', guest.name, '--to', to, '--copies', '2', ...extra]);

  await guest.writePattern('vda', 1, 40);
  const a1 = await protect(adhoc);
  const b1 = await protect('b');
  assert.deepEqual([a1.mode, b1.mode], ['full', 'full']);
  await guest.writePattern('vda', 2, 10);
  const a2 = await protect(adhoc);
  const b2 = await protect('b');
  assert.deepEqual([a2.mode, b2.mode], ['incremental', 'incremental']);
  // The engine keeps each target's last checkpoint, nothing else.
  assert.deepEqual(await checkpoints(guest), [a2.pointInTime, b2.pointInTime].sort());
  // The configured target's newest checkpoint, as each step leaves it.
  let bBase = b2.pointInTime;

  await t.test('a dry run plans and changes nothing', async () => {
    const plan = await havenJson<ForgetResult>(h, ['forget', guest.name, '--target', adhoc, '--dry-run']);
    assert.deepEqual(plan.servers[0]?.checkpoints, [a2.pointInTime]);
    assert.deepEqual(plan.servers[0]?.keptCheckpoints, [b2.pointInTime]);
    assert.equal(plan.pairs[0]?.nextCopy, 'resync');
    assert.deepEqual(await checkpoints(guest), [a2.pointInTime, b2.pointInTime].sort());
    assert.deepEqual(statusPairs(await havenJson<StatusRow[]>(h, ['status'])).sort(), [adhoc, 'b'].sort());
  });

  await t.test('forget the ad hoc target of the running guest', async () => {
    const before = await readdir(adhoc);
    const r = await havenJson<ForgetResult>(h, ['forget', guest.name, '--target', adhoc]);
    assert.equal(r.servers[0]?.domain, 'running');
    assert.deepEqual(r.servers[0]?.result, { deleted: [a2.pointInTime], missing: [], failed: [] });
    assert.equal(r.pairs[0]?.nextCopy, 'resync');
    assert.deepEqual(r.pairs[0]?.jobs, []);
    assert.deepEqual(await checkpoints(guest), [b2.pointInTime]);
    assert.deepEqual(await readdir(adhoc), before, 'nothing at the forgotten store changed');
    assert.deepEqual(statusPairs(await havenJson<StatusRow[]>(h, ['status'])), ['b']);
    withCatalog(h.stateDir, (c) => {
      assert.equal(c.checkpoints.lastDelivered(guest.name, a2.storeId), undefined);
      assert.equal(c.checkpoints.get(guest.name, a2.pointInTime), undefined);
      assert.ok(c.checkpoints.lastDelivered(guest.name, b2.storeId));
      assert.equal(c.status.get(guest.name, adhoc), undefined);
    });
    await guest.writePattern('vda', 3, 10);
    const b3 = await protect('b');
    assert.equal(b3.mode, 'incremental', 'the other target is still incremental');
    bBase = b3.pointInTime;
    const a3 = await protect(adhoc);
    assert.equal(a3.mode, 'resync', 'the forgotten target resyncs by checksum');
    assert.ok(a3.bytesSent < a1.bytesSent, 'a resync sends only what differs');
  });

  await t.test(
    'the stale-checkpoint rule: a store no job copies to, unused for long, loses its checkpoint',
    async () => {
      const a = (await havenJson<StatusRow[]>(h, ['status'])).find((r) => r.target === adhoc);
      assert.ok(a, 'the ad hoc pair is back after its copy');
      assert.equal((await checkpoints(guest)).length, 2);
      ageDeliveries(h, a2.storeId, 10);
      const fresh = await havenJson<MaintenanceReport>(h, ['prune', '--dry-run']);
      assert.deepEqual(fresh.checkpoints?.servers, [], 'ten days is within the default 30');
      ageDeliveries(h, a2.storeId, 40);
      const plan = await havenJson<MaintenanceReport>(h, ['prune', '--dry-run']);
      const planned = plan.checkpoints?.servers.find((s) => s.server === guest.name);
      assert.deepEqual(
        planned?.stale.map((s) => s.targets),
        [[adhoc]],
      );
      assert.equal((await checkpoints(guest)).length, 2, 'a dry run deletes nothing');
      const done = await havenJson<MaintenanceReport>(h, ['prune']);
      const swept = done.checkpoints?.servers.find((s) => s.server === guest.name);
      assert.equal(swept?.result?.deleted.length, 1);
      assert.deepEqual(await checkpoints(guest), [bBase]);
      withCatalog(h.stateDir, (c) => {
        const ev = c.events.list({ type: 'checkpoints.pruned' })[0];
        assert.equal(ev?.server, guest.name);
        assert.equal(ev?.target, adhoc);
      });
      // The configured target's checkpoint stays however old: a job copies the guest there.
      ageDeliveries(h, b2.storeId, 400);
      await havenJson<MaintenanceReport>(h, ['prune']);
      assert.deepEqual(await checkpoints(guest), [bBase]);
    },
  );

  await t.test(
    'a run in progress is refused; a killed one is forgotten with its backup job and checkpoint',
    async () => {
      const slow = join(dir, 'store-c');
      let refusal: { code: number | null; stderr: string } | undefined;
      const inFlight = waitFor(
        'the slow copy to be in flight',
        () =>
          withCatalog(h.stateDir, (c) =>
            c.inflight.list().some((f) => f.server === guest.name && f.socket !== null),
          ) || undefined,
        120_000,
      ).then(async () => {
        refusal = await runHaven(h, ['forget', guest.name, '--target', slow]);
      });
      const running = runHaven(h, ['protect', guest.name, '--to', slow, '--bwlimit', '256KiB/s', '--json'], {
        killSignal: 'SIGKILL',
        killOn: inFlight,
      });
      await inFlight;
      assert.equal(refusal?.code, 7, refusal?.stderr);
      assert.match(refusal?.stderr ?? '', /\[FORGET_RUN_IN_PROGRESS\]/);
      const killed = await running;
      assert.equal(killed.signal, 'SIGKILL');
      assert.ok(await activeBackup(guest.virsh, guest.name), 'the killed run left its backup job');
      assert.equal((await checkpoints(guest)).length, 2, 'and its new checkpoint');
      const r = await havenJson<ForgetResult>(h, ['forget', guest.name, '--target', slow]);
      assert.equal(r.pairs[0]?.nextCopy, 'full');
      assert.equal(r.servers[0]?.removed.inflight, 1);
      assert.equal(await activeBackup(guest.virsh, guest.name), null, 'the left backup job was ended');
      assert.deepEqual(await checkpoints(guest), [bBase]);
      withCatalog(h.stateDir, (c) => assert.deepEqual(c.inflight.list(), []));
    },
  );

  await t.test('shut off: the sweep and forget remove bitmaps from the qcow2', async () => {
    await guest.poweroff();
    const b4 = await protect('b');
    assert.equal(b4.mode, 'incremental');
    // libvirt cannot delete a shut-off domain's checkpoint; Haven removes the bitmap itself. The
    // engine prunes while its qemu-nbd export still holds the image, so the previous checkpoint
    // may still be there; the sweep deletes it.
    await havenJson<MaintenanceReport>(h, ['prune']);
    assert.deepEqual(await checkpoints(guest), [b4.pointInTime]);
    assert.deepEqual(await bitmaps(guest), [b4.pointInTime]);
    const a4 = await protect(adhoc);
    assert.equal(a4.mode, 'resync');
    assert.deepEqual(await bitmaps(guest), [a4.pointInTime, b4.pointInTime].sort());

    const r = await havenJson<ForgetResult>(h, ['forget', guest.name, '--target', adhoc]);
    assert.equal(r.servers[0]?.domain, 'shut off');
    assert.deepEqual(r.servers[0]?.result?.deleted, [a4.pointInTime]);
    assert.deepEqual(await checkpoints(guest), [b4.pointInTime]);
    assert.deepEqual(await bitmaps(guest), [b4.pointInTime], 'the forgotten target’s bitmap is gone');
    const b5 = await protect('b');
    assert.equal(b5.mode, 'incremental', 'the other target is still incremental offline');
  });
});
