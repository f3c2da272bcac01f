/**
 * The store contract: readers during rotations (docs/store-format.md, "Readers during a
 * rotation"; issue 13.6). Writers in a second process commit rotation after rotation while this
 * process runs `verify` (every chunk re-read) and reads images in a loop: no reader may report a
 * problem that is not there. Needs a store a second process can open (StoreCapabilities).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkDigests } from '../../../src/core/digest.ts';
import type { DiskSpec } from '../../../src/store/types.ts';
import { CHUNK_SIZE } from '../../../src/store/types.ts';
import { type Fresh, runChild, ServerSim } from '../harness.ts';
import { summaryOf } from '../model.ts';

/** Large enough that a rotation (renames, apply, digests) takes a while next to a verify. */
const DISKS: DiskSpec[] = [
  { name: 'rd_0', size: 24 * 1024 * 1024 },
  { name: 'rd_1', size: 8 * 1024 * 1024 + 12 * 1024 },
];

export function readersContract(fresh: Fresh): void {
  test('verify and image reads in a loop beside rotations in another process report nothing false', async (t) => {
    const sut = await fresh(t);
    const sim = ServerSim.on(sut, { server: 'rd', disks: DISKS, copies: 3, seed: 97 });
    for (let i = 0; i < 3; i++) await sim.runDelta({ writes: 40, zeroRanges: 2 });
    const reports: string[] = [];
    let verifies = 0;
    let reads = 0;
    for (let run = 0; run < 6; run++) {
      const p = sim.prepare({ writes: 60, zeroRanges: 3 });
      let done = false;
      const writer = runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {}).finally(() => {
        done = true;
      });
      const readers = (async () => {
        while (!done) {
          try {
            const r = await sut.store.verify('rd');
            for (const problem of r.problems) reports.push(`run ${run}: ${problem.code} ${problem.message}`);
          } catch (e) {
            reports.push(`run ${run}: verify threw ${(e as { code?: string }).code}: ${e}`);
          }
          verifies++;
          const m = await sut.store.manifest('rd');
          for (const g of m?.generations ?? []) {
            const d = g.disks[0];
            if (!d) continue;
            // What a reader opened is the generation it asked for, whatever rotates meanwhile.
            try {
              const img = await sut.store.openImage('rd', g.id, d.name);
              try {
                const bytes = await img.read(0, CHUNK_SIZE * 4);
                const want = await sut.store.readDigests('rd', g.id, d.name, 0, 4);
                if (!chunkDigests(sim.alg, bytes, CHUNK_SIZE).equals(want)) {
                  // Only a generation that left while being read may differ.
                  const now = await sut.store.manifest('rd');
                  if (now?.generations.some((x) => x.id === g.id))
                    reports.push(`run ${run}: ${g.id} read bytes that do not match its digests`);
                }
              } finally {
                await img.close();
              }
              reads++;
            } catch (e) {
              const code = (e as { code?: string }).code;
              // A generation retired by the rotation since the manifest was read is gone: fine.
              if (code !== 'STORE_GENERATION_NOT_FOUND')
                reports.push(`run ${run}: read ${g.id}: ${code} ${e}`);
            }
          }
        }
      })();
      const [res] = await Promise.all([writer, readers]);
      assert.equal(res.code, 0, res.stderr);
      const m = await sut.store.manifest('rd');
      const newest = m?.generations[0];
      assert.ok(newest && newest.pointInTime === p.meta.pointInTime, 'the child committed the run');
      sim.adopt(newest, p);
    }
    assert.deepEqual(reports, [], `false reports in ${verifies} verifies and ${reads} reads`);
    assert.ok(verifies >= 6, `verify ran beside every rotation (${verifies})`);
    await sim.check('after rotations beside readers');
    const final = await sut.store.verify('rd');
    assert.deepEqual(final.problems, []);
  });
}
