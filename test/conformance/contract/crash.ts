/**
 * The store contract: Crash safety (docs/design.md §4.3), by killing a writer in a child process: mid-stage, and at every named step of a commit (crash.ts), after which recover() completes the rotation. Needs StoreCapabilities.crashInjection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CRASH_STEPS, type CrashStep } from '../../../src/store/crash.ts';
import {
  disksFor,
  type Fresh,
  runChild,
  ServerSim,
  SMALL_WEB01_DISKS,
  type StoreCapabilities,
} from '../harness.ts';
import { resyncExtents, sendExtents, summaryOf, withStaged } from '../model.ts';

export function crashContract(fresh: Fresh, capabilities: Partial<StoreCapabilities> = {}): void {
  test('crash mid-stage (writer killed after a checkpoint): the next attempt completes the delta', async (t) => {
    const sut = await fresh(t);
    for (const [server, setupRuns, samePit] of [
      ['stage1', 0, true],
      ['stage2', 1, true],
      ['stage3', 0, false],
      ['stage4', 1, false],
    ] as const) {
      const sim = ServerSim.on(sut, { server, disks: disksFor(server), copies: 2, seed: 51 });
      for (let i = 0; i < setupRuns; i++) await sim.runDelta();
      const a = sim.prepare({ writes: 14, zeroRanges: 2 });
      const res = await runChild(t, sut, a, a.extents, summaryOf(a.extents, a.disks), {
        checkpointAfter: 4,
        killAfter: 8,
      });
      assert.equal(res.signal, 'SIGKILL', res.stderr);
      await sut.store.recover();
      if (setupRuns) await sim.check(`${server}: generations intact after the crash`);
      const p = samePit
        ? a
        : sim.prepare({ writes: 6, zeroRanges: 2, zeroChunks: 8, mode: 'resync', from: a.content });
      const w = await sut.store.openDelta(p.meta);
      assert.ok(w.resumed, `${server}: the partial survived the crash`);
      const extents = samePit ? p.extents : await resyncExtents(w, sim.alg, p.content, p.disks);
      const r = await sendExtents(
        w,
        sim.alg,
        p.content,
        p.disks,
        extents,
        samePit ? { from: w.resumed.watermarks } : {},
      );
      await w.seal(withStaged(r.sent, w.resumed.staged));
      sim.adopt(await w.commit(), p);
      await sim.check(`${server}: completed after a crash mid-stage`);
    }
  });

  describe('crash at every commit step, then recover()', {
    concurrency: capabilities.sharedImageNames ? 1 : 4,
  }, () => {
    // A first run has no renames and nothing to apply; a copied slot differs from a recycled
    // one only in how the slot is filled, so only those steps are repeated for it.
    const scenarios: { label: string; copies: number; setupRuns: number; steps: readonly CrashStep[] }[] = [
      {
        label: 'first run',
        copies: 2,
        setupRuns: 0,
        steps: [
          'after-seal',
          'after-journal',
          'after-digests',
          'after-definition',
          'after-manifest',
          'after-final-rename',
        ],
      },
      { label: 'copies 3, oldest recycled', copies: 3, setupRuns: 3, steps: CRASH_STEPS },
      { label: 'copies 1', copies: 1, setupRuns: 1, steps: CRASH_STEPS },
      {
        label: 'copies 3, slot copied from the newest',
        copies: 3,
        setupRuns: 1,
        steps: ['after-slot', 'mid-apply', 'after-apply'],
      },
    ];
    for (const sc of scenarios) {
      for (const step of sc.steps) {
        test(`${sc.label}: ${step}`, async (t) => {
          const sut = await fresh(t);
          const server = 'Web01';
          const sim = ServerSim.on(sut, {
            server,
            disks: SMALL_WEB01_DISKS,
            copies: sc.copies,
            seed: 61 + sc.setupRuns,
          });
          for (let i = 0; i < sc.setupRuns; i++) await sim.runDelta();
          const p = sim.prepare({ writes: 10, zeroRanges: 2 });
          const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
            crashAt: step,
          });
          assert.equal(res.signal, 'SIGKILL', `the writer must die at ${step}: ${res.stderr}`);
          if (step === 'after-renames' && sc.setupRuns === 3) {
            // Mid-rotation, exactly the Anvil! sequence: the oldest became _incomplete, the
            // others moved up, there is no _1 yet.
            assert.deepEqual(await sim.images(), [
              'Web01_Web01_0_2',
              'Web01_Web01_0_3',
              'Web01_Web01_0_incomplete',
              'Web01_Web01_1_2',
              'Web01_Web01_1_3',
              'Web01_Web01_1_incomplete',
            ]);
          }
          await sut.store.recover();
          // The delta was sealed before every step: the rotation is rolled forward.
          const m = await sut.store.manifest(server);
          assert.ok(m);
          assert.equal(m.generations[0]!.pointInTime, p.meta.pointInTime);
          sim.adopt(m.generations[0]!, p);
          await sim.check(`after recover from ${step}`);
          const report = await sut.store.verify(server);
          assert.equal(report.ok, true, JSON.stringify(report.problems));
          assert.deepEqual(await sut.store.recover(), [], 'recover is idempotent');
          await sim.runDelta({ writes: 7, zeroRanges: 1 });
          await sim.check(`the run after ${step}`);
        });
      }
    }
  });
}
