/**
 * Issue 15, "a crashed primary host: replication resumes by itself, never a blind full copy"
 * (docs/continuous.md, "Restarts", the QEMU or host crash row), on a real guest with a real
 * `haven protect --continuous` process. The guest's QEMU process is killed with SIGKILL while
 * the writer runs: the closest this host gets to a crashed primary, since QEMU writes its
 * persistent dirty bitmaps into the images only when it closes them, so none of the checkpoints
 * made since it started survives, and those it loaded are left marked in use.
 *
 * The protecting process is paused (SIGSTOP) for five seconds before the kill and continued
 * after it, so that the target lacks seconds of the writer's writes when QEMU dies.
 *
 * Shown: the protector notices the domain is off and takes its cycle through the images; their
 * bitmaps cannot be trusted, so every lane compares every chunk with the target's head digests
 * and sends only those that differ (a checksum resync: the data sent is about what the writer
 * changed since the target's newest point, far below the disks' allocated size, which the
 * writer filled). The test then starts the guest again (`virsh start`): points resume by bitmap
 * (no second checksum resync, small segments). The journal verifies; the newest point after the
 * crash holds a prefix of the writer's writes, and the newest of all every acknowledged one.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
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
} from './continuous-helpers.ts';
import { waitFor } from './jobs-helpers.ts';

const PREFIX = 'hvr-crash';
const { diskMiB: DISK_MIB, block: BLOCK, rate: RATE } = SEQ_RUN;
/** How long the protector is paused before the kill: the target then lacks this much writing. */
const PAUSE_MS = 5000;

/** Lets a process stopped with SIGSTOP go on (nothing when it is gone). */
function continueProcess(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // It ended meanwhile.
  }
}

/** The pid libvirt recorded for the domain's QEMU process. */
async function qemuPid(domain: string): Promise<number> {
  const pid = Number((await readFile(`/run/libvirt/qemu/${domain}.pid`, 'utf8')).trim());
  assert.ok(pid > 0, `a QEMU pid for ${domain}`);
  return pid;
}

test('protect --continuous after the guest’s QEMU is killed: a checksum resync, then points by bitmap', async (t) => {
  const { dir, guest, h, store, server } = await seqSetup(t, PREFIX, DISK_MIB);
  const disksBytes = 2 * DISK_MIB * 1024 * 1024;
  await fillThenWrite(guest, DISK_MIB, BLOCK, RATE);
  // One flush after the fill. QEMU's qcow2 keeps the mappings of newly allocated clusters in its
  // metadata cache until the guest flushes, so a killed QEMU loses every unflushed write to a new
  // cluster (as a crashed host loses what its guests never flushed): without this the disks
  // would come back empty. Every cluster is allocated now, and the writer's later writes
  // overwrite them in place, so each one is in the host's page cache once acknowledged and
  // outlives QEMU: the disks after the kill hold a prefix of the writer's run.
  assert.equal(await guest.command('sync'), 'ok');

  const protect = protectContinuous(h, server, store);
  const figures: Record<string, number> = {};
  let acked = 0;
  const ids = await (async () => {
    const { pid: protectPid, path: logPath } = await steadyProtection(store, server, dir);

    // The protecting process is paused for a few seconds first while the writer goes on, so
    // that at the kill the target lacks seconds of writes (not the one cycle's worth a 1 s
    // interval leaves): what the checksum resync must find by comparing every chunk.
    process.kill(protectPid, 'SIGSTOP');
    t.after(() => continueProcess(protectPid));
    await new Promise((r) => setTimeout(r, PAUSE_MS));
    const crashAt = Date.now();
    process.kill(await qemuPid(server), 'SIGKILL');
    await waitFor(
      'libvirt to see the domain off',
      async () => (await guest.state()) !== 'running',
      30_000,
      200,
    );
    continueProcess(protectPid);

    // The cycle through the images: the bitmaps are refused, every chunk is compared.
    const crashPoint = await pointAfter(store, server, crashAt, 'a point after the crash', {
      marginMs: 0,
      timeoutMs: 120_000,
    });
    figures.crashPointMs = Date.parse(crashPoint.committedAt) - crashAt;
    assert.equal(protect.exited(), false, 'the protecting process goes on');
    const afterCrash = (await logLines(logPath)).filter((l) => Date.parse(l.t) >= crashAt);
    assert.ok(
      afterCrash.some((l) => /bitmaps cannot be used/.test(l.msg)),
      `the protector distrusts the bitmaps:\n${JSON.stringify(afterCrash, null, 1)}`,
    );
    const segs = await segments(store, server);
    const before = segs.filter((s) => s.consistent && Date.parse(s.committedAt) <= crashAt);
    const offline = segs.filter((s) => Date.parse(s.takenAt) > crashAt);
    assert.ok(before.length >= 2, `${before.length} points before the crash`);
    assert.ok(offline.at(-1)?.consistent, 'the resync ends in a point');
    figures.resentBytes = offline.reduce((n, s) => n + s.dataBytes, 0);
    // Nothing more while the domain is off: the one cycle through the images, then it waits.
    await new Promise((r) => setTimeout(r, 4000));
    const whileOff = (await segments(store, server)).filter((s) => Date.parse(s.takenAt) > crashAt);
    assert.equal(whileOff.length, offline.length, 'no further cycle while the domain is off');

    // The guest is started again; the writer continues its run (nonce 0) after the boot.
    const startAt = Date.now();
    await guest.start();
    await guest.seqStart({ rate: RATE, block: BLOCK, nonce: 0, disks: ['vda', 'vdb'] });
    // The writer continues only from disks that hold a prefix of its run (seqw.c checks first).
    const started = await guest.waitForSerial(/^HAVEN seq (started|error).*$/m, 60_000);
    assert.equal(started[1], 'started', `the writer continues after the crash:\n${await guest.serial()}`);
    const booted = Date.now();
    figures.afterStartMaxBytes = await pointsGoOnByBitmap(
      store,
      server,
      { logPath, from: startAt, writing: booted, exited: protect.exited },
      'the start',
    );
    assert.equal((await protectLog(join(dir, 'log'), server)).pid, protectPid, 'no new process');
    assert.ok(
      figures.afterStartMaxBytes < disksBytes / 4,
      `${figures.afterStartMaxBytes} bytes in a segment`,
    );

    acked = await guest.seqStop();
    await pointAfter(store, server, Date.now(), 'a point after the writer stopped');
    return { before: before.at(-1)!.id, crash: offline.at(-1)!.id };
  })().finally(protect.stop);
  const r = await protect.result;
  assert.equal(r.code, 130, `stopped by SIGTERM: exit 130\n${r.stderr}`);

  // The checkpoint whose bitmaps the crash spoiled is gone with the rest of the chain: only the
  // chain's head is left for the next run (a spoiled one kept would stay in libvirt for ever).
  const checkpoints = (
    await exec('virsh', ['-c', 'qemu:///system', 'checkpoint-list', '--name', server])
  ).stdout
    .split('\n')
    .filter(Boolean);
  const warned = (await logLines((await protectLog(join(dir, 'log'), server)).path)).filter(
    (l) => l.level === 'warn' || checkpoints.slice(0, -1).some((c) => JSON.stringify(l).includes(c)),
  );
  assert.equal(
    checkpoints.length,
    1,
    `checkpoints left: ${checkpoints.join(', ')}; warnings:\n${JSON.stringify(warned, null, 1)}`,
  );

  const all = await verifyEveryPoint(h, store, server);

  const prefix = (at: string, name: string) =>
    pointPrefix(h, server, store, { dir, sizeMiB: DISK_MIB }, at, name);
  const before = await prefix(ids.before, 'before');
  const crash = await prefix(ids.crash, 'crash');
  assert.ok(before.last <= crash.last, 'the point after the crash holds at least the one before');
  assert.equal(
    (await prefix(all.at(-1)!.id, 'newest')).last,
    acked,
    'the newest point holds every acknowledged write',
  );

  // The checksum resync sent what differs from the target's newest point: about what the writer
  // changed since then (the writes up to the crash that reached the images), never the disks.
  const changed = changedBytes(crash.geometry, before.last, crash.last);
  t.diagnostic(
    `point after the crash committed ${figures.crashPointMs} ms after the kill; checksum resync sent ` +
      `${figures.resentBytes} bytes of ${disksBytes} allocated (${((100 * figures.resentBytes!) / disksBytes).toFixed(1)}%); ` +
      `the writer changed ${changed} bytes since the newest point before the crash (ratio ` +
      `${(figures.resentBytes! / Math.max(1, changed)).toFixed(2)}); largest segment after the start ` +
      `${figures.afterStartMaxBytes} bytes; ${all.length} points verified`,
  );
  assert.ok(figures.resentBytes! < disksBytes / 4, 'far below the disks’ allocated size: no full copy');
  assert.ok(
    figures.resentBytes! <= 1.2 * changed + 2 * BLOCK,
    `resent ${figures.resentBytes}, changed ${changed}`,
  );
});
