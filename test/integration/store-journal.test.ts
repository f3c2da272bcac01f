/**
 * Issue 15, the point-in-time journal of a filesystem store (src/store/common/journal/): segments
 * appended in order, only a segment that follows the tail accepted, every point materialised
 * byte-equal to a model of the disk at that point, the window folding old segments into the base
 * (also after a crash in the middle of a fold), and the head digests what a checksum resync needs.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chunkDigests } from '../../src/core/digest.ts';
import { createFsStore, type FsStore } from '../../src/store/fs/index.ts';
import type { GenerationIds, JournalDeltaMeta, SegmentRecord } from '../../src/store/types.ts';
import { C, content, makeMeta, scratch } from './protocol-helpers.ts';

const SERVER = 'pit01';
const DISK = { name: 'pit01_0', size: 16 * C };
const IDS: GenerationIds = { current: 'aaaa', history: [] };

function meta(base: string | null, takenAt: Date, windowMs: number, n: number): JournalDeltaMeta {
  return {
    ...makeMeta(SERVER, [DISK], {
      pointInTime: `c${n}`,
      takenAt: takenAt.toISOString(),
      mode: 'incremental',
    }),
    journal: { base, generationId: IDS.current, ids: IDS, windowMs },
  };
}

/** Appends one segment writing `data` at chunk `at` (and zeroing chunk `zero`, if given). */
async function append(
  store: FsStore,
  m: JournalDeltaMeta,
  writes: { at: number; data: Buffer }[],
  zero: number | null,
  consistent = true,
): Promise<SegmentRecord> {
  const w = await store.openSegment(m);
  let dataBytes = 0;
  for (const x of writes) {
    await w.writeData(DISK.name, x.at * C, x.data, chunkDigests(store.descriptor.digest, x.data, C));
    dataBytes += x.data.length;
  }
  if (zero !== null) await w.writeZero(DISK.name, zero * C, C);
  w.setConsistent(consistent);
  await w.seal({ disks: { [DISK.name]: { dataBytes, zeroBytes: zero === null ? 0 : C } } });
  return w.append();
}

test('journal: append, materialise every point, fold the window, recover a fold', async (t) => {
  const dir = await scratch(t, 'hv-journal');
  const store = await createFsStore(join(dir, 'store'));
  t.after(() => store.close());
  const model = Buffer.alloc(DISK.size);
  const states = new Map<string, Buffer>();
  const old = Date.now() - 3_600_000;
  let tail: string | null = null;
  // Eight segments, the first five an hour old (outside a 30 min window), each changing two chunks
  // and zeroing one; segment 4 is a resync part (inconsistent).
  for (let n = 1; n <= 8; n++) {
    const takenAt = new Date(n <= 5 ? old + n * 1000 : Date.now() - (9 - n) * 1000);
    const writes = [
      { at: n % 16, data: content(n, C) },
      { at: (n * 5) % 16, data: content(100 + n, 2 * C).subarray(0, C) },
    ];
    for (const x of writes) x.data.copy(model, x.at * C);
    const zero = (n * 3 + 1) % 16;
    model.fill(0, zero * C, (zero + 1) * C);
    const windowMs = n < 8 ? 24 * 3_600_000 : 1_800_000;
    const seg = await append(store, meta(tail, takenAt, windowMs, n), writes, zero, n !== 4);
    assert.equal(seg.seq, n);
    if (seg.consistent) states.set(seg.id, Buffer.from(model));
    tail = seg.id;
  }
  // A segment that does not follow the tail is refused, and changes nothing.
  await assert.rejects(
    store.openSegment(meta('not-the-tail', new Date(), 1_800_000, 9)),
    /STORE_JOURNAL_TAIL|follows/,
  );

  const info = await store.journalInfo(SERVER);
  assert.ok(info);
  assert.equal(info.tail?.id, tail);
  assert.equal(info.ids?.current, 'aaaa');
  assert.equal(info.ids?.lastWriter?.side, 'primary');
  // The last append used a 30 min window: segments 1..5 folded into the base (5 is its point).
  const points = await store.journalPoints(SERVER);
  assert.deepEqual(
    points.map((p) => p.seq),
    [5, 6, 7, 8],
  );
  assert.equal(info.segments, 3, 'the folded segments are gone');

  for (const p of points) {
    const out = join(dir, `p${p.seq}.raw`);
    await store.materialisePoint(SERVER, p.id, new Map([[DISK.name, out]]));
    assert.ok((await readFile(out)).equals(states.get(p.id) as Buffer), `point ${p.seq} is byte-exact`);
  }
  await assert.rejects(
    store.materialisePoint(SERVER, 'nope', new Map([[DISK.name, join(dir, 'x.raw')]])),
    /STORE_POINT_NOT_FOUND|no journal point/,
  );

  // The head digests are the newest state's, chunk by chunk.
  const w = await store.openSegment(meta(tail, new Date(), 1_800_000, 9));
  const head = await w.expectedDigests(DISK.name, 0, 16);
  assert.ok(head.equals(chunkDigests(store.descriptor.digest, model, C)));
  await w.discard();

  // A crash in the middle of a fold: pit.json says `folding`, the base got only some of it.
  const pitPath = join(dir, 'store', '.haven', 'servers', SERVER, 'pit', 'pit.json');
  const pit = JSON.parse(await readFile(pitPath, 'utf8'));
  pit.folding = 7;
  await writeFile(pitPath, JSON.stringify(pit));
  const after = await store.journalPoints(SERVER);
  assert.deepEqual(
    after.map((p) => p.seq),
    [5, 6, 7, 8],
    'reading does not repair',
  );
  // The next writer repairs it: segments up to 7 fold, 7 becomes the base point.
  const w2 = await store.openSegment(meta(tail, new Date(), 1_800_000, 9));
  await w2.discard();
  const repaired = await store.journalPoints(SERVER);
  assert.deepEqual(
    repaired.map((p) => p.seq),
    [7, 8],
  );
  for (const p of repaired) {
    const out = join(dir, `r${p.seq}.raw`);
    await rm(out, { force: true });
    await store.materialisePoint(SERVER, p.id, new Map([[DISK.name, out]]));
    assert.ok(
      (await readFile(out)).equals(states.get(p.id) as Buffer),
      `after recovery, point ${p.seq} is byte-exact`,
    );
  }
});
