/**
 * The store contract: bit rot never spreads (issue 13.5). The generation a new slot starts from
 * (the recycled oldest, or the newest it is copied from) is checked before anything changes: a
 * damaged chunk the deltas do not rewrite is repaired from a generation that holds it intact, and
 * one no generation holds intact refuses the commit and is marked to be sent again from the source
 * (the next checksum resync does), so no generation is ever committed with digests its bytes do
 * not match. "Checked" means read whole unless the generation was read whole within the store's
 * recheck window (default a day; docs/store-format.md): damage `haven verify` found is always read
 * again, which is how these tests find it. recheck-window.test.ts tests the window itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { zeroChunkDigest } from '../../../src/core/digest.ts';
import { HavenError } from '../../../src/core/errors.ts';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { type Fresh, type Prepared, ServerSim, type StoreUnderTest, WEB01_DISKS } from '../harness.ts';
import { sendExtents } from '../model.ts';

const DISK = WEB01_DISKS[0]!;

/**
 * A chunk every generation holds with the same digest (no delta since the oldest wrote it) and
 * the next run `next` does not send: the new slot keeps it as it is.
 */
export async function keptChunk(sut: StoreUnderTest, sim: ServerSim, next: Prepared): Promise<number> {
  const n = Math.ceil(DISK.size / CHUNK_SIZE);
  const all = await Promise.all(
    sim.gens.map((g) => sut.store.readDigests(sim.server, g.id, DISK.name, 0, n)),
  );
  const sent = (c: number) =>
    next.extents.some(
      (e) => e.disk === DISK.name && e.offset < (c + 1) * CHUNK_SIZE && e.offset + e.length > c * CHUNK_SIZE,
    );
  const zero = zeroChunkDigest(sim.alg, CHUNK_SIZE);
  for (let c = 0; c < n; c++) {
    const d = all[0]!.subarray(c * 32, c * 32 + 32);
    // Not a zero chunk: a zero range of a later delta may have rewritten it with the same bytes.
    if (d.equals(zero)) continue;
    if (!sent(c) && all.every((x) => x.subarray(c * 32, c * 32 + 32).equals(d))) return c;
  }
  assert.fail('no chunk is kept by every generation and the next run');
}

/** Sends and seals `p`; the commit is the caller's. */
export async function sealed(sut: StoreUnderTest, sim: ServerSim, p: Prepared) {
  const w = await sut.store.openDelta(p.meta);
  await w.seal((await sendExtents(w, sim.alg, p.content, p.disks, p.extents)).sent);
  return w;
}

export function bitrotContract(fresh: Fresh): void {
  for (const [label, copies, runs, damaged] of [
    ['copies 3, a chunk kept from the recycled _3', 3, 3, [2]],
    ['copies 3, a chunk of _1 that the slot is copied from', 3, 2, [0]],
  ] as const) {
    test(`${label} is damaged: repaired from another generation, never spread`, async (t) => {
      const sut = await fresh(t);
      const sim = ServerSim.on(sut, { server: 'Rot01', disks: WEB01_DISKS, copies, seed: 141 });
      for (let i = 0; i < runs; i++) await sim.runDelta({ writes: 2, zeroRanges: 1 });
      const p = sim.prepare({ writes: 2, zeroRanges: 1 });
      const c = await keptChunk(sut, sim, p);
      for (const i of damaged)
        await sut.damageImage('Rot01', sim.gens[i]!.id, DISK.name, c * CHUNK_SIZE + 777);
      assert.equal((await sut.store.verify('Rot01')).ok, false, 'the damage is there');
      const w = await sealed(sut, sim, p);
      sim.adopt(await w.commit(), p);
      await sim.check('after the run that started from the damaged generation');
      const report = await sut.store.verify('Rot01');
      assert.deepEqual(report.problems, []);
    });
  }

  test('a chunk damaged in every generation refuses the commit, changes nothing and is marked to be sent again', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Rot02', disks: WEB01_DISKS, copies: 2, seed: 142 });
    for (let i = 0; i < 2; i++) await sim.runDelta({ writes: 2, zeroRanges: 1 });
    const p = sim.prepare({ writes: 2, zeroRanges: 1 });
    const c = await keptChunk(sut, sim, p);
    for (const g of sim.gens) await sut.damageImage('Rot02', g.id, DISK.name, c * CHUNK_SIZE + 5);
    assert.equal((await sut.store.verify('Rot02')).ok, false, 'the damage is there');
    const names = await sim.images();
    const w = await sealed(sut, sim, p);
    await assert.rejects(w.commit(), (e: unknown) => {
      assert.ok(e instanceof HavenError && e.code === 'STORE_RESEND_NEEDED', String(e));
      // The slot starts from the recycled oldest (_2), or on a store that clones, from the newest (_1).
      assert.match(e.message, new RegExp(`Rot02_${DISK.name}_[12] chunks ${c}\\b`));
      assert.match(
        e.hint ?? '',
        /Run `haven protect Rot02` again: it sends those chunks again from the source/,
      );
      return true;
    });
    await w.close();
    assert.deepEqual(await sim.images(), names, 'nothing renamed');
    const m = await sut.store.manifest('Rot02');
    assert.deepEqual(
      m?.generations.map((g) => g.id),
      sim.gens.map((g) => g.id),
    );
    assert.equal(await sut.store.needsResync?.('Rot02'), true, 'the target asks for a checksum resync');
    // The refused delta is gone: recovery commits nothing, and a new delta starts afresh.
    assert.deepEqual(await sut.store.recover('Rot02'), []);
  });

  test('copies 1: a damaged chunk only the source holds is sent again by the next checksum resync', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Rot03', disks: WEB01_DISKS, copies: 1, seed: 143 });
    await sim.runDelta({ writes: 2, zeroRanges: 1 });
    await sim.runDelta({ writes: 2, zeroRanges: 1 });
    const p = sim.prepare({ writes: 2, zeroRanges: 1 });
    const c = await keptChunk(sut, sim, p);
    await sut.damageImage('Rot03', sim.gens[0]!.id, DISK.name, c * CHUNK_SIZE + 9);
    assert.equal((await sut.store.verify('Rot03')).ok, false, 'the damage is there');
    const w = await sealed(sut, sim, p);
    await assert.rejects(
      w.commit(),
      (e: unknown) => e instanceof HavenError && e.code === 'STORE_RESEND_NEEDED',
    );
    await w.close();
    assert.equal(await sut.store.needsResync?.('Rot03'), true);
    // The retry a sender makes: a checksum resync, whose comparison finds the marked chunk differs
    // (its expected digest matches nothing), so it is sent although the source never changed it.
    await sim.runDelta({ writes: 2, zeroRanges: 1, resync: true });
    await sim.check('after the resync that sent the damaged chunk again');
    assert.deepEqual((await sut.store.verify('Rot03')).problems, []);
    assert.equal(await sut.store.needsResync?.('Rot03'), false, 'the marks are gone once sent again');
  });
}
