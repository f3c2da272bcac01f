/**
 * The store contract: Partial deltas: resumed from their watermarks or under a new point in time, or discarded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { disksFor, type Fresh, ServerSim } from '../harness.ts';
import { resyncExtents, sendExtents, summaryOf, withStaged } from '../model.ts';

export function resumeContract(fresh: Fresh): void {
  test('resume: a delta closed without seal continues from its watermarks (first run and incremental)', async (t) => {
    const sut = await fresh(t);
    for (const [server, setupRuns] of [
      ['res1', 0],
      ['res2', 2],
    ] as const) {
      const sim = ServerSim.on(sut, { server, disks: disksFor(server), copies: 2, seed: 21 });
      for (let i = 0; i < setupRuns; i++) await sim.runDelta();
      const p = sim.prepare({ writes: 14, zeroRanges: 2 });
      const w1 = await sut.store.openDelta(p.meta);
      assert.equal(w1.resumed, null);
      const half = Math.max(2, Math.floor(p.extents.length / 2));
      const first = await sendExtents(w1, sim.alg, p.content, p.disks, p.extents, {
        checkpointEvery: half,
        stopAfter: half + 2,
      });
      await w1.close();
      if (setupRuns) await sim.check(`${server}: a closed partial changes no generation`);
      else assert.equal(await sut.store.manifest(server), null, 'a partial first run is no generation');

      const w2 = await sut.store.openDelta(p.meta);
      assert.ok(w2.resumed, 'the partial delta is continued');
      assert.equal(w2.resumed.deltaId, w1.deltaId);
      assert.equal(w2.deltaId, w1.deltaId);
      assert.equal(w2.resumed.pointInTime, p.meta.pointInTime);
      assert.deepEqual(w2.resumed.watermarks, first.watermarks);
      // A store keeps at least what was checkpointed, and may keep everything that arrived
      // before close(); `staged` says which.
      const skipped = p.extents.filter((e) => e.offset + e.length <= (first.watermarks[e.disk] ?? 0));
      const options = [summaryOf(skipped, p.disks).disks, first.sent.disks];
      assert.ok(
        options.some((o) => JSON.stringify(o) === JSON.stringify(w2.resumed!.staged)),
        `staged ${JSON.stringify(w2.resumed.staged)} is the checkpoint or everything sent`,
      );
      assert.equal(
        w2.resumed.stagedBytes,
        Object.values(w2.resumed.staged!).reduce((n, c) => n + c.dataBytes + c.zeroBytes, 0),
      );
      const rest = await sendExtents(w2, sim.alg, p.content, p.disks, p.extents, {
        from: w2.resumed.watermarks,
      });
      await w2.seal(withStaged(rest.sent, w2.resumed.staged));
      sim.adopt(await w2.commit(), p);
      await sim.check(`${server}: resumed delta`);
    }
  });

  test('resume under a new point in time: expectedDigests tell the sender what to send', async (t) => {
    const sut = await fresh(t);
    for (const [server, setupRuns] of [
      ['newpit1', 0],
      ['newpit2', 1],
    ] as const) {
      const sim = ServerSim.on(sut, { server, disks: disksFor(server), copies: 3, seed: 31 });
      for (let i = 0; i < setupRuns; i++) await sim.runDelta();
      const a = sim.prepare({ writes: 14, zeroRanges: 2 });
      const w1 = await sut.store.openDelta(a.meta);
      await sendExtents(w1, sim.alg, a.content, a.disks, a.extents, { checkpointEvery: 4, stopAfter: 9 });
      await w1.close();
      // The source moved on: a new point in time whose content differs from the partial's.
      const b = sim.prepare({ writes: 9, zeroRanges: 2, zeroChunks: 6, mode: 'resync', from: a.content });
      const w2 = await sut.store.openDelta(b.meta);
      assert.ok(w2.resumed);
      assert.equal(w2.resumed.pointInTime, a.meta.pointInTime);
      const extents = await resyncExtents(w2, sim.alg, b.content, b.disks);
      const r = await sendExtents(w2, sim.alg, b.content, b.disks, extents, { checkpointEvery: 5 });
      await w2.seal(withStaged(r.sent, w2.resumed.staged));
      const gen = await w2.commit();
      assert.equal(gen.pointInTime, b.meta.pointInTime);
      sim.adopt(gen, b);
      await sim.check(`${server}: resumed under a new point in time`);
    }
  });

  test('discard throws a partial delta away and leaves the generations alone', async (t) => {
    const sut = await fresh(t);
    for (const [server, setupRuns] of [
      ['disc1', 0],
      ['disc2', 1],
    ] as const) {
      const sim = ServerSim.on(sut, { server, disks: disksFor(server), copies: 2, seed: 41 });
      for (let i = 0; i < setupRuns; i++) await sim.runDelta();
      const p = sim.prepare();
      const w = await sut.store.openDelta(p.meta);
      await sendExtents(w, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 2 });
      await w.discard();
      if (setupRuns) await sim.check(`${server}: after discard`);
      else assert.deepEqual(await sim.images(), [], 'a discarded first run leaves no image');
      const w2 = await sut.store.openDelta(p.meta);
      assert.equal(w2.resumed, null, 'nothing left to resume');
      await w2.close();
    }
  });
}
