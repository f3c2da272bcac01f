/**
 * Issue 15, the point-in-time journal of a filesystem store (src/store/common/journal/): segments
 * appended in order, only a segment that follows the tail accepted, every point materialised
 * byte-equal to a model of the disk at that point, the window folding old segments into the base
 * (also after a crash in the middle of a fold), and the head digests what a checksum resync needs.
 * `verify` checks every point in the window (base, segments, head digests), names the points a
 * damaged piece spoils with STORE_JOURNAL_DAMAGED, per server, and goes on with the others.
 */
import assert from 'node:assert/strict';
import { cp, open, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chunkDigests } from '../../src/core/digest.ts';
import { createFsStore, type FsStore, openFsStore } from '../../src/store/fs/index.ts';
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

/** Flips one byte of `path` at `at`. */
async function flip(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = (b[0] ?? 0) ^ 0xff;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

test('journal: verify checks every point, names what damage spoils, server by server', async (t) => {
  const dir = await scratch(t, 'hv-journal-verify');
  const root = join(dir, 'store');
  const store = await createFsStore(root);
  t.after(() => store.close());
  const old = Date.now() - 3_600_000;
  let tail: string | null = null;
  const segs: SegmentRecord[] = [];
  // Six segments, the first two outside the window (folded into the base on the last append).
  for (let n = 1; n <= 6; n++) {
    const takenAt = new Date(n <= 2 ? old + n * 1000 : Date.now() - (7 - n) * 1000);
    const writes = [{ at: (n * 3) % 16, data: content(n, C) }];
    const seg = await append(store, meta(tail, takenAt, 1_800_000, n), writes, (n * 7) % 16);
    segs.push(seg);
    tail = seg.id;
  }
  const points = await store.journalPoints(SERVER);
  assert.deepEqual(
    points.map((p) => p.seq),
    [2, 3, 4, 5, 6],
  );

  const sound = await store.verify();
  assert.equal(sound.ok, true, JSON.stringify(sound.problems));
  assert.equal(sound.checkedServers, 1);
  assert.equal(sound.checkedPoints, 5);
  assert.deepEqual(sound.journals, [
    { server: SERVER, points: 5, oldest: points[0]?.id, newest: points[4]?.id, damaged: [], ok: true },
  ]);
  assert.ok(sound.checkedBytes >= DISK.size, 'the base was read');

  // A second server with a copy of the journal: damage in one leaves the other's verdict alone.
  const pitDir = (s: string) => join(root, '.haven', 'servers', s, 'pit');
  await cp(pitDir(SERVER), pitDir('pit02'), { recursive: true });
  const pit2 = JSON.parse(await readFile(join(pitDir('pit02'), 'pit.json'), 'utf8'));
  pit2.server = 'pit02';
  await writeFile(join(pitDir('pit02'), 'pit.json'), JSON.stringify(pit2));
  // Segment 4's data damaged in pit02: points 4, 5 and 6 are spoiled, 2 and 3 are not.
  await flip(join(pitDir('pit02'), 'seg', segs[3]!.id, `${DISK.name}.data`), 100);
  const one = await store.verify();
  assert.equal(one.ok, false);
  assert.equal(one.checkedPoints, 10);
  const v1 = one.journals.find((j) => j.server === SERVER);
  const v2 = one.journals.find((j) => j.server === 'pit02');
  assert.equal(v1?.ok, true, 'the sound server stays sound');
  assert.deepEqual(
    v2?.damaged,
    points.slice(2).map((p) => p.id),
  );
  assert.deepEqual(
    one.problems.map((p) => [p.server, p.code, p.pointId, p.badChunks]),
    [['pit02', 'STORE_JOURNAL_DAMAGED', segs[3]!.id, [(4 * 3) % 16]]],
  );
  // Only that server asked for: its verdict alone.
  const only = await store.verify('pit02');
  assert.deepEqual(
    only.journals.map((j) => j.server),
    ['pit02'],
  );

  // The base damaged: every point of the journal is spoiled.
  await flip(join(pitDir(SERVER), 'base', `${DISK.name}.img`), (6 * 16 * C) / 16 + 5);
  const base = await store.verify(SERVER);
  assert.deepEqual(
    base.journals[0]?.damaged,
    points.map((p) => p.id),
  );
  assert.equal(base.problems[0]?.code, 'STORE_JOURNAL_DAMAGED');
  assert.match(base.problems[0]?.message ?? '', /the base of pit01_0: 1 chunk\(s\) differ/);
  await flip(join(pitDir(SERVER), 'base', `${DISK.name}.img`), (6 * 16 * C) / 16 + 5);

  // A lost segment file and damaged head digests, in a third copy; a damaged pit.json in pit02.
  await cp(pitDir(SERVER), pitDir('pit03'), { recursive: true });
  const pit3 = JSON.parse(await readFile(join(pitDir('pit03'), 'pit.json'), 'utf8'));
  pit3.server = 'pit03';
  await writeFile(join(pitDir('pit03'), 'pit.json'), JSON.stringify(pit3));
  await unlink(join(pitDir('pit03'), 'seg', segs[5]!.id, `${DISK.name}.data`));
  await flip(join(pitDir('pit03'), 'head', `${DISK.name}.sums`), 3);
  await writeFile(join(pitDir('pit02'), 'pit.json'), '{"version": 1');
  const many = await store.verify();
  const codes = many.problems.map((p) => `${p.server} ${p.code} ${p.pointId ?? '-'}`).sort();
  assert.deepEqual(codes, [
    'pit02 STORE_FILE_INVALID -',
    'pit03 STORE_JOURNAL_DAMAGED -',
    `pit03 STORE_JOURNAL_DAMAGED ${segs[5]!.id}`,
  ]);
  assert.deepEqual(many.journals.find((j) => j.server === 'pit03')?.damaged, [points[4]?.id]);
  assert.equal(many.journals.find((j) => j.server === SERVER)?.ok, true);

  // A journal from before the base had digests gets them at its next open, from the base.
  await unlink(join(pitDir(SERVER), 'base', `${DISK.name}.sums`));
  const gone = await store.verify(SERVER);
  assert.equal(gone.ok, true, JSON.stringify(gone.problems));
  assert.equal(gone.checkedPoints, 5);
});

test('journal: a point read from a shut-off server is marked sourceOff, kept across reopening', async (t) => {
  const dir = await scratch(t, 'hv-journal-off');
  const root = join(dir, 'store');
  const store = await createFsStore(root);
  const running = await append(
    store,
    meta(null, new Date(Date.now() - 2000), 3_600_000, 1),
    [{ at: 0, data: content(1, C) }],
    null,
  );
  assert.equal(running.sourceOff, undefined, 'a live point is not marked');
  // A resync part read from the off server: inconsistent, so not marked (it is no point).
  const offMeta = (base: string, n: number) => {
    const m = meta(base, new Date(Date.now() - 1000 + n), 3_600_000, n);
    return { ...m, journal: { ...m.journal, sourceOff: true } };
  };
  const part = await append(store, offMeta(running.id, 2), [{ at: 1, data: content(2, C) }], null, false);
  assert.equal(part.sourceOff, undefined, 'an inconsistent segment is not marked');
  const last = await append(store, offMeta(part.id, 3), [{ at: 2, data: content(3, C) }], null);
  assert.equal(last.sourceOff, true);
  await store.close();

  const again = await openFsStore(root);
  t.after(() => again.close());
  const info = await again.journalInfo(SERVER);
  assert.equal(info?.newest?.id, last.id);
  assert.equal(info?.newest?.sourceOff, true, 'the newest point says it was read from the shut-off disks');
  const points = await again.journalPoints(SERVER);
  assert.deepEqual(
    points.map((p) => [p.seq, p.sourceOff ?? false]),
    [
      [1, false],
      [3, true],
    ],
  );
});
