/**
 * The store's fault matrix (issue 13, "Must show"): a writer in a child process is stopped at every
 * named commit step (HAVEN_STORE_STOP_AT, store/crash.ts), the filesystem under the store is
 * filled while it is stopped, and it goes on into the full filesystem. Whatever it reports, the
 * store keeps a generation that verifies: once space is freed, recover() finishes or leaves the
 * rotation, the newest generation holds exactly what it should, and the next run completes.
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
import { fill, loopFs } from './loop-fs.ts';

describe('a full filesystem at every commit step', { concurrency: 2 }, () => {
  for (const [label, copies, setupRuns] of [
    ['copies 2, oldest recycled', 2, 2],
    ['copies 3, slot copied from the newest', 3, 1],
  ] as const) {
    for (const step of CRASH_STEPS) {
      test(`${label}: ${step}`, async (t) => {
        const mnt = await loopFs(t, 24);
        const dir = join(mnt, 'store');
        const sut = fsStoreUnderTest(await openFsStore(dir, { create: true }), dir);
        t.after(() => sut.store.close());
        const sim = ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies, seed: 171 });
        for (let i = 0; i < setupRuns; i++) await sim.runDelta({ writes: 6, zeroRanges: 1 });
        const p = sim.prepare({ writes: 8, zeroRanges: 1 });
        let filler: string | undefined;
        const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
          stopAt: {
            step,
            whileStopped: async () => {
              filler = fill(mnt, 'filler', 0);
            },
          },
        });
        if (step !== 'mid-rename' || setupRuns > 0)
          assert.ok(filler, `the writer reached ${step}: ${res.stderr}`);
        // A clean end: committed, or the error that says what happened (never a crash).
        assert.equal(res.signal, null, res.stderr);
        if (res.code !== 0) assert.match(res.stderr, /"code":"NO_SPACE"/, res.stderr);
        assert.doesNotMatch(res.stderr, /INTERNAL/);
        if (filler) await unlink(filler);

        await sut.store.recover();
        const m = await sut.store.manifest('Web01');
        const newest = m?.generations[0];
        assert.ok(newest);
        // The delta was sealed before every step: once there is room the rotation completes.
        assert.equal(newest.pointInTime, p.meta.pointInTime, `rolled forward after ${step}`);
        sim.adopt(newest, p);
        await sim.check(`after a full filesystem at ${step}`);
        const report = await sut.store.verify('Web01');
        assert.deepEqual(report.problems, []);
        await sim.runDelta({ writes: 4, zeroRanges: 1 });
        await sim.check(`the run after a full filesystem at ${step}`);
      });
    }
  }
});
