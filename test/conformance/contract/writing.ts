/**
 * The store contract: Receiving a delta (DeltaWriter): writes land in call order, and expectedDigests answer what the target will hold.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alignedBuffer } from '../../../src/core/aligned-memory.ts';
import { chunkDigests } from '../../../src/core/digest.ts';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { code, disksFor, type Fresh, ServerSim } from '../harness.ts';
import { sendExtents } from '../model.ts';

export function writingContract(fresh: Fresh): void {
  test('data writes issued before earlier ones settled land in call order, a range written twice too', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'par', disks: disksFor('par'), copies: 2, seed: 17 });
    await sim.runDelta({ inFlight: 4 });
    await sim.check('full, 4 writes in flight');
    await sim.runDelta({ writes: 12, zeroRanges: 2, inFlight: 4 });
    await sim.check('incremental, 4 writes in flight');
    // A range written twice without waiting: one large write of junk, then the real bytes in
    // small pieces that finish first. The later calls must still win, digests included.
    const p = sim.prepare({ writes: 6, zeroRanges: 0 });
    const w = await sut.store.openDelta(p.meta);
    const r = await sendExtents(w, sim.alg, p.content, p.disks, p.extents);
    const d = p.disks[0]!;
    const junk = Buffer.alloc(d.size, 0xa5);
    const writes = [w.writeData(d.name, 0, junk, chunkDigests(sim.alg, junk, CHUNK_SIZE))];
    const real = p.content.get(d.name)!;
    for (let off = 0; off < d.size; off += CHUNK_SIZE) {
      // Aligned memory, as the receiver hands over: nothing serialises these writes.
      const piece = alignedBuffer(CHUNK_SIZE);
      real.copy(piece, 0, off, off + CHUNK_SIZE);
      writes.push(w.writeData(d.name, off, piece, chunkDigests(sim.alg, piece, CHUNK_SIZE)));
    }
    await Promise.all(writes);
    const n = d.size / CHUNK_SIZE;
    assert.ok((await w.expectedDigests(d.name, 0, n)).equals(chunkDigests(sim.alg, real, CHUNK_SIZE)));
    r.sent.disks[d.name]!.dataBytes += 2 * d.size;
    await w.seal(r.sent);
    sim.adopt(await w.commit(), p);
    await sim.check('a range written twice');
  });

  test('expectedDigests: the base generation overlaid with what is staged', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'exp', disks: disksFor('exp'), copies: 2, seed: 11 });
    await sim.runDelta();
    const p = sim.prepare({ writes: 5, zeroRanges: 1 });
    const w = await sut.store.openDelta(p.meta);
    t.after(() => w.close());
    const d = p.disks[1]!;
    const n = Math.ceil(d.size / CHUNK_SIZE);
    const base = sim.gens[0]!.content.get(d.name)!;
    assert.ok((await w.expectedDigests(d.name, 0, n)).equals(chunkDigests(sim.alg, base, CHUNK_SIZE)));
    await sendExtents(w, sim.alg, p.content, p.disks, p.extents);
    assert.ok(
      (await w.expectedDigests(d.name, 0, n)).equals(
        chunkDigests(sim.alg, p.content.get(d.name)!, CHUNK_SIZE),
      ),
    );
    assert.ok(
      (await w.expectedDigests(d.name, n - 2, 2)).equals(
        chunkDigests(sim.alg, p.content.get(d.name)!.subarray((n - 2) * CHUNK_SIZE), CHUNK_SIZE),
      ),
    );
    await assert.rejects(w.expectedDigests(d.name, n - 1, 2), code('STORE_BAD_RANGE'));
    await assert.rejects(w.expectedDigests('nope', 0, 1), code('STORE_UNKNOWN_DISK'));
    await assert.rejects(
      w.writeData(d.name, 100, Buffer.alloc(CHUNK_SIZE), Buffer.alloc(32)),
      code('STORE_BAD_EXTENT'),
    );
    await assert.rejects(w.writeZero(d.name, d.size - CHUNK_SIZE, 2 * CHUNK_SIZE), code('STORE_BAD_EXTENT'));
    await assert.rejects(w.commit(), code('STORE_DELTA_STATE'));
  });
}
