/**
 * Bit rot in staged deltas never spreads either (docs/store-format.md, "Bit rot never spreads"):
 * a rotation that replays a kept delta, or applies the new one, compares the staged bytes with the
 * digests taken when they arrived. A damaged kept delta is dropped and the slot copied from the
 * newest generation instead; the new delta's damaged chunks are marked to be sent again. On the
 * filesystem store without clones (every rotation replays): the apply is the common write path's,
 * the same for every store kind that replays.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { readIndexEntries, stagedFiles } from '../../src/store/common/deltas.ts';
import { MetadataLayout } from '../../src/store/common/metadata-layout.ts';
import type { DeltaRecord } from '../../src/store/common/records.ts';
import { openFsStore } from '../../src/store/fs/index.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import { sealed } from './contract/bitrot.ts';
import { fsStoreUnderTest } from './fs-sut.ts';
import { flipFileBit, ServerSim, WEB01_DISKS } from './harness.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

async function fresh(t: { after(fn: () => Promise<void>): void }) {
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, 'staged-rot-'));
  // No clones: rotations replay the deltas the recycled generation missed (ext4's way).
  const store = await openFsStore(dir, { create: true, reflinks: false });
  const sut = fsStoreUnderTest(store, dir);
  t.after(() => sut.cleanup());
  const layout = new MetadataLayout(dir);
  const deltas = async (server: string): Promise<DeltaRecord[]> => {
    const ids = (await readdir(layout.deltasDir(server))).sort();
    const out: DeltaRecord[] = [];
    for (const id of ids) {
      const text = await readFile(layout.deltaRecord(server, id), 'utf8').catch(() => null);
      if (text) out.push(JSON.parse(text) as DeltaRecord);
    }
    return out;
  };
  return { sut, layout, deltas };
}

/** The data entries of a staged delta, with the disk names they write. */
async function dataEntries(r: DeltaRecord) {
  const files = stagedFiles(r.dataDir);
  const fh = await open(files.index, 'r');
  try {
    const out = [];
    for await (const e of readIndexEntries(fh, r.indexLength, files.index)) {
      if (e.kind === 'data') out.push({ ...e, name: r.meta.disks[e.disk]!.name });
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** Flips a bit in every staged chunk of a delta, behind the store's back. */
async function damageAllStaged(r: DeltaRecord): Promise<void> {
  const { size } = await stat(stagedFiles(r.dataDir).data);
  for (let at = 3; at < Math.min(size, r.dataLength); at += CHUNK_SIZE)
    await flipFileBit(stagedFiles(r.dataDir).data, at);
}

test('a kept delta damaged at rest is dropped and the slot copied from the newest: the new generation is exact', async (t) => {
  const s = await fresh(t);
  const sim = ServerSim.on(s.sut, { server: 'Kept01', disks: WEB01_DISKS, copies: 3, seed: 171 });
  for (let i = 0; i < 3; i++) await sim.runDelta({ writes: 3, zeroRanges: 1 });
  const kept = (await s.deltas('Kept01')).filter((r) => r.state === 'committed' && r.kind === 'staged');
  assert.equal(kept.length, 2, 'the producers of _1 and _2 are kept for the next rotation');
  // The producer of _1: the rotation replays it into the recycled _3, and keeps it after (it
  // then produces _2), so only the damage check removes it.
  const damaged = kept.find((r) => r.generationId === sim.gens[0]!.id);
  assert.ok(damaged, 'the producer of _1');
  await damageAllStaged(damaged);
  const p = sim.prepare({ writes: 3, zeroRanges: 1 });
  sim.adopt(await (await sealed(s.sut, sim, p)).commit(), p);
  await sim.check('after a rotation whose kept delta was damaged');
  // Copied from the newest, which this commit did not read: no check time is carried over.
  for (const d of WEB01_DISKS)
    await assert.rejects(stat(s.layout.checked('Kept01', sim.gens[0]!.id, d.name)), { code: 'ENOENT' });
  assert.deepEqual((await s.sut.store.verify('Kept01')).problems, []);
  const left = (await s.deltas('Kept01')).map((r) => r.id);
  assert.ok(!left.includes(damaged.id), 'the damaged delta is dropped');
  assert.equal(left.length, 1, 'the new delta is kept (it produced _1); the producer of _2 was damaged');
  assert.equal(await s.sut.store.needsResync?.('Kept01'), false, 'nothing needs the source');
  // The next rotation finds its producer gone and copies the newest again: still exact.
  await sim.runDelta({ writes: 3, zeroRanges: 1 });
  await sim.check('the rotation after');
  assert.deepEqual((await s.sut.store.verify('Kept01')).problems, []);
});

test('the new delta damaged between staging and commit: its chunks are marked to be sent again, and the next resync repairs them', async (t) => {
  const s = await fresh(t);
  const sim = ServerSim.on(s.sut, { server: 'New01', disks: WEB01_DISKS, copies: 2, seed: 172 });
  for (let i = 0; i < 2; i++) await sim.runDelta({ writes: 3, zeroRanges: 1 });
  const p = sim.prepare({ writes: 3, zeroRanges: 1 });
  const w = await sealed(s.sut, sim, p);
  const pending = (await s.deltas('New01')).find((r) => r.state === 'sealed');
  assert.ok(pending, 'the sealed delta');
  const [entry] = await dataEntries(pending);
  assert.ok(entry, 'the delta staged data');
  await flipFileBit(stagedFiles(pending.dataDir).data, entry.dataPos + 3);
  const gen = await w.commit();
  sim.adopt(gen, p);
  const chunk = entry.offset / CHUNK_SIZE;
  // All of this is the commit's doing: no verify has run yet (it would mark the damage too).
  const marks = JSON.parse(await readFile(s.layout.resend('New01'), 'utf8'));
  assert.deepEqual(marks.disks[entry.name], [[chunk, chunk + 1]]);
  await assert.rejects(
    stat(s.layout.checked('New01', gen.id, entry.name)),
    { code: 'ENOENT' },
    'no check time for the damaged disk',
  );
  assert.equal(await s.sut.store.needsResync?.('New01'), true, 'the target asks for a checksum resync');
  const report = await s.sut.store.verify('New01');
  assert.deepEqual(
    report.problems.map((x) => [x.code, x.disk, x.badChunks]),
    [['STORE_DIGEST_MISMATCH', entry.name, [chunk]]],
    'the generation holds the damage exactly where the marks say, under the source digest',
  );
  await sim.runDelta({ writes: 3, zeroRanges: 1, resync: true });
  assert.equal(await s.sut.store.needsResync?.('New01'), false, 'the marks are gone once sent again');
  // The resync's generation is exact; the damaged one is now _2, found by verify as any damage
  // in an older generation is, and repaired from _1 by the rotation that recycles it.
  assert.deepEqual(
    (await s.sut.store.verify('New01')).problems.map((x) => [x.generationId, x.badChunks]),
    [[gen.id, [chunk]]],
  );
  await sim.runDelta({ writes: 3, zeroRanges: 1 });
  await sim.check('after the rotation that recycled the damaged generation');
  assert.deepEqual((await s.sut.store.verify('New01')).problems, []);
});
