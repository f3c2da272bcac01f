/**
 * The store's fault matrix (issue 13, "Must show"): a writer in a child process is stopped at every
 * named commit step (HAVEN_STORE_STOP_AT, store/crash.ts); while it is stopped the filesystem
 * under the store is filled, or made read-only as the kernel does after an error, and it goes on
 * into the fault. It must end with the error that names the fault, and once the fault is gone
 * (space freed; e2fsck and a read-write mount) recover() completes the rotation, the newest
 * generation holds exactly what it should, verify finds nothing and the next run completes.
 * Kills at every step are the conformance suite's (contract/crash.ts).
 */
import assert from 'node:assert/strict';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CRASH_STEPS } from '../../src/store/crash.ts';
import { openFsStore } from '../../src/store/fs/index.ts';
import { fsStoreUnderTest } from '../conformance/fs-sut.ts';
import { runChild, ServerSim, SMALL_WEB01_DISKS } from '../conformance/harness.ts';
import { summaryOf } from '../conformance/model.ts';
import { fill, forceReadOnly, loopFs, repairAndRemount } from '../helpers/loop-fs.ts';

const FAULTS = {
  'a full filesystem': { code: 'NO_SPACE' },
  'a read-only remount': { code: 'READ_ONLY_FILESYSTEM' },
} as const;

for (const [fault, { code }] of Object.entries(FAULTS)) {
  // One at a time: ext4's error trigger and the remount that follows are per device, and two
  // tests remounting loop devices at once made one of them see the other's read-only state.
  describe(`${fault} at every commit step`, { concurrency: code === 'NO_SPACE' ? 2 : 1 }, () => {
    for (const [label, copies, setupRuns] of [
      ['copies 2, oldest recycled', 2, 2],
      ['copies 3, slot copied from the newest', 3, 1],
    ] as const) {
      for (const step of CRASH_STEPS) {
        test(`${label}: ${step}`, async (t) => {
          const mnt = await loopFs(t, 24);
          const dir = join(mnt, 'store');
          let sut = fsStoreUnderTest(await openFsStore(dir, { create: true }), dir);
          t.after(() => sut.store.close());
          const simOn = () =>
            ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies, seed: 171 });
          let sim = simOn();
          for (let i = 0; i < setupRuns; i++) await sim.runDelta({ writes: 6, zeroRanges: 1 });
          const p = sim.prepare({ writes: 8, zeroRanges: 1 });
          let filler: string | undefined;
          let faulted = false;
          const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
            stopAt: {
              step,
              whileStopped: async () => {
                faulted = true;
                if (code === 'NO_SPACE') filler = fill(mnt, 'filler', 0);
                else forceReadOnly(mnt);
              },
            },
          });
          assert.ok(faulted, `the writer reached ${step}: ${res.stderr}`);
          // A clean end: the error that says what happened (never a crash).
          assert.equal(res.signal, null, res.stderr);
          if (res.code !== 0) assert.match(res.stderr, new RegExp(`"code":"${code}"`), res.stderr);
          assert.doesNotMatch(res.stderr, /INTERNAL/);
          if (filler) await unlink(filler);
          if (code === 'READ_ONLY_FILESYSTEM') {
            await sut.store.close();
            repairAndRemount(mnt);
            sut = fsStoreUnderTest(await openFsStore(dir), dir);
            const again = simOn();
            again.gens = sim.gens;
            again.run = sim.run;
            sim = again;
          }

          await sut.store.recover();
          const m = await sut.store.manifest('Web01');
          const newest = m?.generations[0];
          assert.ok(newest);
          // The delta was sealed before every step: once the fault is gone the rotation completes.
          assert.equal(newest.pointInTime, p.meta.pointInTime, `rolled forward after ${step}`);
          sim.adopt(newest, p);
          await sim.check(`after ${fault} at ${step}`);
          const report = await sut.store.verify('Web01');
          assert.deepEqual(report.problems, []);
          await sim.runDelta({ writes: 4, zeroRanges: 1 });
          await sim.check(`the run after ${fault} at ${step}`);
        });
      }
    }
  });
}
