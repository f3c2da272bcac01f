/**
 * Issue 15, "a planned switchover (`haven switchover`) stops the guest, drains the last writes,
 * starts it at the DR site and reverses the direction with zero data lost", on a real guest with
 * a real `haven protect --continuous` process (docs/continuous.md, "Planned switchover"):
 *
 * - `--dry-run` shows the plan and changes nothing (the guest runs on, the store is unchanged);
 * - an unreachable primary is refused before anything happens;
 * - with no protection running, the final point never comes: the switchover gives up after
 *   `--drain-timeout` and starts the server on the primary again (a planned move never leaves the
 *   service down);
 * - with protection running, the guest is shut down on the primary, the point read from its
 *   shut-off disks arrives, and the server starts at the DR site from it: the images it boots
 *   from equal the primary's disks byte for byte (no write lost), hold a prefix of the writer's
 *   writes at least as long as every write acknowledged before the switchover, and the booted
 *   copy finds that prefix itself; the primary is guarded and protecting it again is refused
 *   (CONTINUOUS_DR_NEWER): the DR copy is the writer now;
 * - replication runs in the other direction: the DR copy writes on, and `haven failback --follow`
 *   brings the primary's disks after it pass by pass (incremental, a consistent prefix longer
 *   than the one switched over), until SIGTERM; `haven failback` then goes on from the last pass
 *   and starts the server on the primary, which finds every write the follow passes sent.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { readGuard } from '../../src/recovery/guard.ts';
import type { FailbackResult } from '../../src/recovery/index.ts';
import type { SwitchoverReport } from '../../src/recovery/switchover.ts';
import { Virsh } from '../../src/virt/index.ts';
import { checkSeqPrefix, fileReader } from '../fixtures/guest/seq.ts';
import { type HavenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { newestPoint, pointAfter, seqSetup, storedManifest } from './continuous-helpers.ts';
import { waitFor } from './jobs-helpers.ts';
import { destroyDomainsLike, snapshot, waitForText } from './recovery-helpers.ts';

const PREFIX = 'haven-t-cswo';
const DISK_MIB = 16;
const BLOCK = 65536;
const RATE = 256 * 1024;
const PRIMARY = 'qemu:///system';

/** `haven protect --continuous` until `stop` settles (SIGTERM): its exit code. */
function protect(h: HavenEnv, server: string, store: string, stop: Promise<unknown>): Promise<number> {
  return runHaven(h, ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'], {
    killOn: stop,
    killSignal: 'SIGTERM',
    timeoutMs: 900_000,
  }).then((r) => {
    assert.equal(r.code, 130, r.stderr);
    return r.code;
  });
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

test('switchover: shut down on the primary, last writes drained, started at the DR site with nothing lost', async (t) => {
  const { dir, guest, h, store, server } = await seqSetup(t, PREFIX, DISK_MIB);
  const name = `${server}-dr`;
  t.after(() => destroyDomainsLike(name));
  const args = ['switchover', server, '--store', store, '--primary', PRIMARY, '--name', name];
  await guest.seqStart({ rate: RATE, block: BLOCK, nonce: 5, disks: ['vda', 'vdb'] });

  // A journal to switch over from; then protection stops.
  const first = deferred();
  const run1 = protect(h, server, store, first.promise);
  const p1 = await pointAfter(store, server, 0, 'a first point', { timeoutMs: 240_000 });
  await pointAfter(store, server, Date.parse(p1.takenAt) + 2000, 'more points');
  first.resolve();
  await run1;

  // The plan changes nothing.
  const before = await snapshot(store);
  const plan = await havenJson<SwitchoverReport>(h, [...args, '--dry-run']);
  assert.equal(plan.dryRun, true);
  assert.equal(plan.before?.id, (await newestPoint(store, server))?.id);
  assert.equal(plan.activation?.status, 'planned', JSON.stringify(plan.activation));
  assert.equal(plan.activation?.domain, name);
  assert.equal(await guest.state(), 'running', 'the dry run left the guest running');
  assert.deepEqual(await snapshot(store), before, 'the dry run changed nothing in the store');

  // An unreachable primary: refused, nothing touched.
  const unreachable = await runHaven(h, [
    'switchover',
    server,
    '--store',
    store,
    '--primary',
    'qemu+tcp://127.0.0.1:1/system',
    '--json',
  ]);
  assert.equal(unreachable.code, 5, unreachable.stderr);
  assert.match(unreachable.stderr, /RECOVERY_SWITCHOVER_UNREACHABLE/);
  assert.equal(await guest.state(), 'running');

  // No protection runs, so no point from the shut-off disks comes: given up, started again.
  const mark = await guest.serialMark();
  const abandoned = await runHaven(h, [...args, '--drain-timeout', '8s', '--json']);
  assert.equal(abandoned.code, 5, abandoned.stderr);
  const gaveUp = JSON.parse(abandoned.stdout) as SwitchoverReport & { ok: boolean };
  assert.equal(gaveUp.ok, false);
  assert.equal(gaveUp.error?.code, 'RECOVERY_SWITCHOVER_TIMEOUT');
  assert.equal(gaveUp.restartedOnPrimary, true, JSON.stringify(gaveUp));
  assert.ok((gaveUp.shutdownMs ?? 0) > 0, 'the guest was shut down first');
  await guest.startedElsewhere(mark);
  assert.equal(await guest.state(), 'running', 'the server runs on the primary again');
  assert.match(await guest.serial(), /HAVEN seq check OK last=[1-9]/, 'its writes survived the shutdown');
  assert.equal(
    (await storedManifest(store, server))?.activeAtDr ?? null,
    null,
    'nothing active at the DR site',
  );
  assert.equal(await readGuard(new Virsh(), server), null, 'the primary is not guarded');

  // Protection runs: the switchover goes through.
  const second = deferred();
  const run2 = protect(h, server, store, second.promise);
  t.after(() => second.resolve());
  await guest.seqStart({ rate: RATE, block: BLOCK, nonce: 0, disks: ['vda', 'vdb'] });
  const resumed = await pointAfter(store, server, Date.now(), 'a point after protection resumed', {
    timeoutMs: 120_000,
  });
  await waitFor('the writer to report', async () => (await guest.seqAcked())?.acked, 30_000, 500).catch(
    async (e) => {
      throw new Error(`${e.message}; console:\n${(await guest.serial()).slice(-3000)}`);
    },
  );
  const ackedBefore = (await guest.seqAcked())?.acked ?? 0;
  const so = await havenJson<SwitchoverReport>(h, args);
  assert.equal(so.activation?.status, 'running', JSON.stringify(so));
  assert.equal(so.final?.sourceOff, true, 'the final point was read from the shut-off disks');
  const age = so.activation?.ageMs ?? -1;
  assert.ok(
    age >= 0 && age <= Date.now() - Date.parse(so.final?.takenAt ?? ''),
    `the activation reports the point's age (${age} ms)`,
  );
  assert.ok((so.final?.seq ?? 0) > (so.before?.seq ?? Infinity), 'it is newer than the newest before');
  assert.ok((so.before?.seq ?? 0) >= resumed.seq);
  assert.equal(await guest.state(), 'shut off', 'the primary no longer runs it');
  const guard = await readGuard(new Virsh(), server);
  assert.equal(guard?.drDomain, name, 'the primary is guarded against starting its stale copy');
  t.diagnostic(`shutdown ${so.shutdownMs} ms, final point ${so.drainMs} ms after, point ${so.final?.id}`);

  // Nothing lost: the images the DR copy boots from equal the primary's disks, byte for byte.
  const activeDir = join(store, '.haven', 'active', server);
  const images = guest.disks.map((d) => join(activeDir, `${d.storeName}.point.raw`));
  for (const [i, d] of guest.disks.entries()) {
    const cmp = await exec('qemu-img', ['compare', '-f', 'raw', '-F', d.format, images[i]!, d.path]);
    assert.match(cmp.stdout, /Images are identical/, `${d.target} equals the primary's`);
  }
  const size = DISK_MIB * 1024 * 1024;
  const held = await checkSeqPrefix(fileReader(images), [size, size]);
  assert.ok(held.ok, held.ok ? '' : held.problem);
  assert.ok(held.last >= ackedBefore, `${held.last} writes held, ${ackedBefore} acknowledged before`);
  await waitForText(join(activeDir, 'serial0.log'), `HAVEN seq check OK last=${held.last}`, 180_000);

  // The direction is reversed: the primary's protection is refused while the DR copy runs.
  second.resolve();
  await run2;
  const mark2 = await guest.serialMark();
  const refused = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'],
    { killAfterMs: 15_000, killSignal: 'SIGTERM', timeoutMs: 120_000 },
  );
  assert.equal(refused.code, 130, refused.stdout + refused.stderr);
  const lane = (JSON.parse(refused.stdout) as { lanes: { error: { code: string } | null }[] }).lanes[0];
  assert.equal(lane?.error?.code, 'CONTINUOUS_DR_NEWER', refused.stdout);

  // Replication in the other direction: the DR copy writes on (its writer continues the run it
  // found), and `failback --follow` brings the primary's disks after it, pass after pass.
  const copy = guest.runningAs(name, {
    serialLog: join(activeDir, 'serial0.log'),
    controlSocket: join(activeDir, 'sockets', 'serial1.sock'),
  });
  await waitForText(copy.serialLog, /^HAVEN ready$/m, 90_000);
  await copy.seqStart({ rate: RATE, block: BLOCK, nonce: 0, disks: ['vda', 'vdb'] });
  const passState = join(activeDir, 'failback.json');
  const drPoint = async () =>
    (JSON.parse(await readFile(passState, 'utf8').catch(() => '{}')) as { drPoint?: string }).drPoint;
  const passes: string[] = [];
  const twoPasses = waitFor(
    'two follow passes',
    async () => {
      const p = await drPoint();
      if (p && !passes.includes(p)) passes.push(p);
      return passes.length >= 2;
    },
    180_000,
    300,
  );
  const following = await runHaven(
    h,
    ['failback', server, '--store', store, '--to', 'local', '--follow', '--interval', '5s', '--json'],
    { killOn: twoPasses, killSignal: 'SIGTERM', timeoutMs: 300_000 },
  );
  assert.equal(following.code, 130, following.stderr);
  const followed = JSON.parse(following.stdout) as FailbackResult;
  assert.equal(followed.following?.ended, 'stopped');
  assert.ok((followed.following?.passes ?? 0) >= 2, JSON.stringify(followed.following));
  assert.equal(followed.started, false, 'following starts nothing on the primary');
  assert.equal(followed.passes.at(-1)?.mode, 'incremental', 'passes after the first follow the bitmaps');
  assert.equal(await guest.state(), 'shut off');
  assert.equal(
    (await storedManifest(store, server))?.activeAtDr?.domain,
    name,
    'still active at the DR site',
  );
  const onPrimary = join(dir, 'primary');
  await exec('mkdir', ['-p', onPrimary]);
  const primaryImages = guest.disks.map((d) => join(onPrimary, `${d.target}.raw`));
  for (const [i, d] of guest.disks.entries())
    await exec('qemu-img', ['convert', '-U', '-f', d.format, '-O', 'raw', d.path, primaryImages[i]!]);
  const followedHeld = await checkSeqPrefix(fileReader(primaryImages), [size, size]);
  assert.ok(followedHeld.ok, followedHeld.ok ? '' : followedHeld.problem);
  assert.ok(
    followedHeld.last > held.last,
    `the primary holds ${followedHeld.last} writes, more than the ${held.last} it had at the switchover`,
  );

  // And back: failback finishes from where following left the primary, and starts it there.
  const back = await havenJson<FailbackResult>(h, ['failback', server, '--store', store, '--to', 'local']);
  assert.equal(back.started, true);
  assert.equal(back.passes[0]?.mode, 'incremental', 'it goes on from the last follow pass');
  assert.equal(await readGuard(new Virsh(), server), null, 'failback cleared the guard');
  await guest.startedElsewhere(mark2);
  const booted = /HAVEN seq check OK last=(\d+)/.exec(await guest.serial());
  assert.ok(Number(booted?.[1]) >= followedHeld.last, `the primary boots with ${booted?.[1]} writes`);
});
