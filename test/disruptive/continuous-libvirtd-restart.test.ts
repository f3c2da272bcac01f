/**
 * Issue 15, "libvirtd restarted: replication resumes by itself from the bitmap and the journal's
 * points still verify" (docs/continuous.md, "Restarts"), on a real guest with a real `haven
 * protect --continuous` process, against the host's real libvirtd, which the test stops (for a
 * few seconds, while the guest writes) and starts again. Disruptive: every libvirt user on the
 * host loses its daemon meanwhile, so scripts/test runs this last and alone; libvirtd is started
 * again in t.after whatever happens.
 *
 * libvirtd is stopped in the middle of a cycle, after its backup job began (the job outlives
 * the daemon in QEMU, and libvirt finds it again when it starts). Shown: the same protecting
 * process goes on (no new process; its log shows the cycles that failed while libvirtd was
 * away), ends the job left behind and commits a point within 15 s of the restart (not after
 * libvirt's 30 s state change lock), by the persistent bitmap (no checksum resync, no full
 * copy): the first segment after the restart carries at most 1.2× the bytes the writer changed
 * since the newest point taken before it. No backup job is left when protection stops.
 * `haven verify` checks every point; random points hold exact prefixes of the writer's writes,
 * the same on both disks, and the newest every acknowledged write.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import { changedBytes } from '../fixtures/guest/seq.ts';
import {
  fillThenWrite,
  logLines,
  pointAfter,
  pointPrefix,
  pointsGoOnByBitmap,
  protectContinuous,
  protectLog,
  SEQ_RUN,
  segments,
  seqSetup,
  steadyProtection,
  verifyEveryPoint,
} from '../integration/continuous-helpers.ts';
import { waitFor } from '../integration/jobs-helpers.ts';
import { libvirtdAnswers, startLibvirtd, stopLibvirtd } from './libvirtd.ts';

const PREFIX = 'hvr-lvrs';
const { diskMiB: DISK_MIB, block: BLOCK, rate: RATE } = SEQ_RUN;
/** How long libvirtd stays away: several cycles fail meanwhile (interval 1 s). */
const DOWN_MS = 8000;

test('protect --continuous resumes by itself from the bitmap after libvirtd is restarted', async (t) => {
  assert.ok(await libvirtdAnswers(), 'libvirtd must be running before the test');
  t.after(startLibvirtd);
  const { dir, guest, h, store, server } = await seqSetup(t, PREFIX, DISK_MIB);
  const disksBytes = 2 * DISK_MIB * 1024 * 1024;
  await fillThenWrite(guest, DISK_MIB, BLOCK, RATE);

  const protect = protectContinuous(h, server, store);
  const figures: Record<string, number> = {};
  let acked = 0;
  const ids = await (async () => {
    const { pid: protectPid, path: logPath } = await steadyProtection(store, server, dir);

    // libvirtd goes in the middle of a cycle, its backup job running (the harder case: the job
    // outlives the daemon in QEMU and libvirt finds it again when it starts).
    const since0 = Date.now();
    await waitFor(
      'a cycle to begin its backup job',
      async () => {
        const cmds = (await logLines(logPath))
          .filter((l) => Date.parse(l.t) > since0 && l.msg === 'virsh')
          .map((l) => (l.args as string[])[0]);
        // backup-dumpxml right after backup-begin: the job has begun, the cycle reads now.
        const begun = cmds.indexOf('backup-begin');
        return (begun >= 0 && cmds[begun + 1] === 'backup-dumpxml') || undefined;
      },
      30_000,
      10,
    );
    const stopAt = Date.now();
    await stopLibvirtd();
    assert.equal(await libvirtdAnswers(), false, 'libvirtd is gone');
    await new Promise((r) => setTimeout(r, DOWN_MS));
    await startLibvirtd();
    const upAt = Date.now();
    figures.downMs = upAt - stopAt;
    assert.equal(await guest.state(), 'running', 'the guest ran on without libvirtd');

    const resumed = await pointAfter(store, server, upAt, 'a point after the restart', {
      marginMs: 0,
      timeoutMs: 60_000,
    }).catch(async (e: Error) => {
      const log = (await logLines(logPath)).filter((l) => Date.parse(l.t) >= stopAt);
      throw new Error(
        `${e.message} (exited: ${protect.exited()}); the log since the stop:\n${JSON.stringify(log, null, 1)}`,
      );
    });
    figures.resumeMs = Date.parse(resumed.committedAt) - upAt;
    // Not libvirt's 30 s state change lock, waited out behind the job the cycle left.
    assert.ok(figures.resumeMs < 15_000, `a point ${figures.resumeMs} ms after libvirtd answered again`);
    assert.equal(protect.exited(), false, 'the protecting process goes on');
    assert.equal((await protectLog(join(dir, 'log'), server)).pid, protectPid, 'no new process');
    // Points go on, by bitmap: no lane resynced by checksum, no full copy.
    await pointsGoOnByBitmap(
      store,
      server,
      { logPath, from: stopAt, writing: upAt, exited: protect.exited },
      'the restart',
    );

    // The protector saw libvirtd go: its cycles failed meanwhile.
    const since = (await logLines(logPath)).filter((l) => Date.parse(l.t) >= stopAt);
    const failed = since.filter((l) => l.level === 'warn' && /^cycle failed/.test(l.msg));
    assert.ok(failed.length > 0, `cycles failed while libvirtd was away:\n${JSON.stringify(since, null, 1)}`);
    figures.failedCycles = failed.length;
    // Whether the stop fell into a cycle and left its backup job (ended by the next capture).
    figures.jobsEnded = since.filter((l) => /ending a backup job an earlier cycle left/.test(l.msg)).length;

    const segs = await segments(store, server);
    // The cycle libvirtd left in the middle had read its data: its lane ships it meanwhile (no
    // libvirt needed), so the points taken before the restart are the resync's base.
    const before = segs.filter((s) => s.consistent && Date.parse(s.takenAt) < upAt);
    const resync = segs.find((s) => Date.parse(s.takenAt) > upAt);
    assert.ok(before.length >= 2, `${before.length} points before the restart`);
    assert.ok(resync?.consistent, 'the first segment after the restart is a point');
    figures.resentBytes = resync.dataBytes;
    acked = await guest.seqStop();
    await pointAfter(store, server, Date.now(), 'a point after the writer stopped');
    return { before: before.at(-1)!.id, resync: resync.id, stopAt };
  })().finally(protect.stop);
  const r = await protect.result;
  assert.equal(r.code, 130, `stopped by SIGTERM: exit 130\n${r.stderr}`);

  await assert.rejects(
    exec('virsh', ['-c', 'qemu:///system', 'backup-dumpxml', server]),
    /no domain backup job/,
    'no backup job left',
  );
  const all = await verifyEveryPoint(h, store, server);

  // Exact prefixes: the points around the restart, the newest, and random others.
  const prefix = (at: string, name: string) =>
    pointPrefix(h, server, store, { dir, sizeMiB: DISK_MIB }, at, name);
  const before = await prefix(ids.before, 'before');
  const resync = await prefix(ids.resync, 'resync');
  assert.ok(before.last <= resync.last, 'prefixes grow');
  const newest = all.at(-1)!;
  assert.equal(
    (await prefix(newest.id, 'newest')).last,
    acked,
    'the newest point holds every acknowledged write',
  );
  const others = all.filter((s) => ![ids.before, ids.resync, newest.id].includes(s.id));
  const picked = others.sort(() => Math.random() - 0.5).slice(0, 4);
  let last = -1;
  for (const p of picked.sort((a, b) => a.takenAt.localeCompare(b.takenAt))) {
    const v = await prefix(p.id, `random-${p.id}`);
    assert.ok(v.last >= last, `point ${p.id}: prefixes grow with time`);
    last = v.last;
  }

  // The resync after the restart carries what the writer changed since the newest point before
  // the stop, not the disks: at most 1.2× that (plus a block torn at either end).
  const changed = changedBytes(resync.geometry, before.last, resync.last);
  const bound = 1.2 * changed + 2 * BLOCK;
  t.diagnostic(
    `libvirtd away ${figures.downMs} ms (${figures.failedCycles} cycles failed, ${figures.jobsEnded} ` +
      `backup jobs left behind ended); first point ` +
      `${figures.resumeMs} ms after it answered again; resent ${figures.resentBytes} bytes of ` +
      `${disksBytes} (${((100 * figures.resentBytes!) / disksBytes).toFixed(1)}%); the writer changed ` +
      `${changed} bytes since the newest point taken before the restart (ratio ` +
      `${(figures.resentBytes! / Math.max(1, changed)).toFixed(2)}); ${all.length} points verified`,
  );
  assert.ok(figures.resentBytes! <= bound, `resent ${figures.resentBytes}, at most ${bound}`);
  assert.ok(figures.resentBytes! < disksBytes / 4, 'a partial resync, not a full copy');
});
