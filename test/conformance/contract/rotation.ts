/**
 * The store contract: Rotation and naming (docs/design.md §4.1, §4.2): every generation holds exactly its point in time, named `<server>_<disk>_<seq>`, whatever the deltas, disk sets and `copies` between runs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { disksFor, type Fresh, ServerSim, WEB01_DISKS } from '../harness.ts';
import { dataChunks, extentsForChunks, resyncExtents, sendExtents, summaryOf, withStaged } from '../model.ts';

export function rotationContract(fresh: Fresh): void {
  test('names and rotation follow docs/design.md §4.1 for copies 1, 2 and 3 over 6 runs of a two-disk server', async (t) => {
    const sut = await fresh(t);
    const sims = [3, 2, 1].map((copies, i) =>
      ServerSim.on(sut, {
        server: ['Web01', 'App02', 'Db03'][i]!,
        disks: disksFor(['Web01', 'App02', 'Db03'][i]!),
        copies,
        seed: 100 + i,
      }),
    );
    sims[0]!.disks = WEB01_DISKS;
    for (let run = 1; run <= 6; run++) {
      for (const sim of sims) {
        const before = sim.gens.map((g) => g.id);
        const gen = await sim.runDelta();
        // The new generation is _1, every other moved up by one, the oldest beyond N is gone.
        assert.deepEqual(
          sim.gens.map((g) => g.id),
          [gen.id, ...before].slice(0, sim.copies),
        );
        await sim.check(`${sim.server} copies ${sim.copies} run ${run}`);
        assert.ok(!(await sim.images()).some((n) => n.endsWith('_incomplete')), 'no _incomplete left behind');
      }
      if (run === 3) {
        // The worked example of docs/design.md §4.1 and the Anvil! DR page, literally.
        assert.deepEqual(await sims[0]!.images(), [
          'Web01_Web01_0_1',
          'Web01_Web01_0_2',
          'Web01_Web01_0_3',
          'Web01_Web01_1_1',
          'Web01_Web01_1_2',
          'Web01_Web01_1_3',
        ]);
      }
    }
    assert.deepEqual((await sut.store.listServers()).sort(), ['App02', 'Db03', 'Web01']);
    const report = await sut.store.verify();
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.checkedGenerations, 3 + 2 + 1);
  });

  test('every generation holds its point in time after full, incremental, resync and zero-range deltas', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'mix', disks: disksFor('mix'), copies: 3, seed: 7 });
    const sparse = async (what: string) => {
      if (!sut.allocatedBytes) return;
      for (const [i, g] of sim.gens.entries()) {
        for (const d of g.disks) {
          const path = await sut.store.imagePath(sim.server, g.id, d.name);
          const allocated = await sut.allocatedBytes(path);
          const limit = dataChunks(g.content.get(d.name)!) * CHUNK_SIZE + 2 * CHUNK_SIZE;
          assert.ok(
            allocated <= limit,
            `${what}: generation ${i + 1} ${d.name} allocates ${allocated} > ${limit} bytes`,
          );
        }
      }
    };
    await sim.runDelta();
    await sim.check('full');
    await sparse('full');
    await sim.runDelta({ writes: 10, zeroRanges: 2 });
    await sim.check('incremental');
    await sim.runDelta({ writes: 8, zeroRanges: 1, mode: 'resync', resync: true });
    await sim.check('resync');
    // A large discard over data: the newest image must give the space back.
    await sim.runDelta({ writes: 1, zeroRanges: 1, zeroChunks: 20 });
    await sim.check('zero range');
    await sparse('zero range');
    await sim.runDelta({ writes: 12, zeroRanges: 3 });
    await sim.check('incremental after rotation');
    await sparse('after rotation');
    // A resync against an unchanged source sends nothing at all.
    const p = sim.prepare({ writes: 0, zeroRanges: 0, mode: 'resync', from: sim.gens[0]!.content });
    const w = await sut.store.openDelta(p.meta);
    assert.deepEqual(await resyncExtents(w, sim.alg, p.content, p.disks), []);
    await w.seal(summaryOf([], p.disks));
    sim.adopt(await w.commit(), p);
    await sim.check('empty delta');
  });

  test('disks that grow, shrink, appear and disappear between runs', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, {
      server: 'elastic',
      disks: [{ name: 'root', size: 2 * 1024 * 1024 + 5000 }],
      copies: 3,
      seed: 101,
    });
    await sim.runDelta();
    // Grown (the old last chunk was short: its bytes and digest change without being sent).
    sim.disks = [{ name: 'root', size: 3 * 1024 * 1024 + 100 }];
    const p = sim.prepare({ writes: 2, zeroRanges: 0 });
    const grownOnly = p.extents.filter((e) => e.offset >= 2 * 1024 * 1024);
    assert.ok(grownOnly.length < p.extents.length);
    const w = await sut.store.openDelta(p.meta);
    await sendExtents(
      w,
      sim.alg,
      p.content,
      p.disks,
      p.extents.filter((e) => e.offset < 2 * 1024 * 1024 - CHUNK_SIZE || e.kind === 'data'),
    );
    await w.close();
    // The resumed writer is asked for digests: the short chunk must reflect the padding.
    const w2 = await sut.store.openDelta(p.meta);
    const extents = await resyncExtents(w2, sim.alg, p.content, p.disks);
    const r = await sendExtents(w2, sim.alg, p.content, p.disks, extents);
    await w2.seal(withStaged(r.sent, w2.resumed?.staged));
    sim.adopt(await w2.commit(), p);
    await sim.check('grown disk');
    // Grown again, sending only what the dirty bitmap would list: new data, not the boundary.
    sim.disks = [{ name: 'root', size: 4 * 1024 * 1024 + 7 }];
    const q = sim.prepare({ writes: 1, zeroRanges: 0 });
    const w3 = await sut.store.openDelta(q.meta);
    // The chunks whose bytes differ from the old image zero-padded to the new size.
    const old = sim.gens[0]!.content.get('root')!;
    const padded = Buffer.concat([old, Buffer.alloc(q.disks[0]!.size - old.length)]);
    const dirty = new Set<number>();
    for (let c = 0; c * CHUNK_SIZE < padded.length; c++) {
      const [s0, e0] = [c * CHUNK_SIZE, Math.min(padded.length, (c + 1) * CHUNK_SIZE)];
      if (!padded.subarray(s0, e0).equals(q.content.get('root')!.subarray(s0, e0))) dirty.add(c);
    }
    const boundary = Math.floor(old.length / CHUNK_SIZE);
    assert.ok(!dirty.has(boundary), 'the short last chunk only changed by padding');
    const sendable = extentsForChunks(q.content, q.disks, new Map([['root', dirty]]));
    const r3 = await sendExtents(w3, sim.alg, q.content, q.disks, sendable);
    await w3.seal(r3.sent);
    sim.adopt(await w3.commit(), q);
    await sim.check('grown again without resending the boundary chunk');
    // Shrunk, and a second disk appears (sent in full).
    sim.disks = [
      { name: 'root', size: 3 * 1024 * 1024 + 3 },
      { name: 'data', size: 1024 * 1024 },
    ];
    await sim.runDelta({ writes: 2 });
    await sim.check('shrunk, disk added');
    await sim.runDelta({ writes: 3 });
    await sim.check('recycled across a disk-set change');
    // The added disk goes away again.
    sim.disks = [{ name: 'root', size: 3 * 1024 * 1024 + 3 }];
    await sim.runDelta({ writes: 2 });
    await sim.check('disk removed');
    await sim.runDelta({ writes: 2 });
    await sim.runDelta({ writes: 2 });
    await sim.check('recycled after the disk was removed');
    assert.equal((await sut.store.verify('elastic')).ok, true);
  });

  test('changing copies between runs: growing keeps all, shrinking drops the oldest', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'Web01', disks: WEB01_DISKS, copies: 1, seed: 111 });
    const plan: [number, number][] = [
      [1, 2],
      [3, 4],
      [2, 2],
      [4, 5],
      [1, 2],
    ];
    for (const [copies, runs] of plan) {
      sim.copies = copies;
      for (let i = 0; i < runs; i++) {
        const before = sim.gens.map((g) => g.id);
        const gen = await sim.runDelta({ writes: 5, zeroRanges: 1 });
        assert.deepEqual(
          sim.gens.map((g) => g.id),
          [gen.id, ...before].slice(0, copies),
        );
        await sim.check(`copies ${copies}, run ${i + 1}`);
      }
      const m = await sut.store.manifest('Web01');
      assert.equal(m?.copies, copies);
    }
    assert.equal((await sut.store.verify('Web01')).ok, true);
  });
}
