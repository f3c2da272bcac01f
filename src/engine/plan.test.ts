import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent } from '../core/extent.ts';
import { prng } from '../protocol/test-support/frames.ts';
import {
  alignToChunks,
  clipBelow,
  intersect,
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  planDisk,
  type StatusRun,
  splitExtents,
} from './plan.ts';

async function* from<T>(items: T[]): AsyncGenerator<T> {
  for (const i of items) yield i;
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Random runs covering [0, size) in units of `unit` bytes. */
function randomRuns(rand: () => number, size: number, unit: number, flagChoices: number[]): StatusRun[] {
  const runs: StatusRun[] = [];
  let off = 0;
  while (off < size) {
    const len = Math.min(size - off, unit * (1 + Math.floor(rand() * 6)));
    runs.push({ offset: off, length: len, flags: flagChoices[Math.floor(rand() * flagChoices.length)]! });
    off += len;
  }
  return runs;
}

/** Brute force: per byte-unit what the plan must say for each chunk. */
function expectedChunks(
  mode: 'full' | 'incremental' | 'resync',
  alloc: StatusRun[],
  dirty: StatusRun[],
  size: number,
  chunk: number,
  unit: number,
): Map<number, 'data' | 'zero'> {
  const at = (runs: StatusRun[], pos: number) =>
    runs.find((r) => pos >= r.offset && pos < r.offset + r.length)!;
  const out = new Map<number, 'data' | 'zero'>();
  for (let pos = 0; pos < size; pos += unit) {
    const a = at(alloc, pos);
    const isZero = (a.flags & NBD_STATE_ZERO) !== 0;
    const wanted =
      mode === 'resync' ||
      (mode === 'full' && !isZero) ||
      (mode === 'incremental' && (at(dirty, pos).flags & NBD_STATE_DIRTY) !== 0);
    if (!wanted) continue;
    const c = Math.floor(pos / chunk);
    const kind = isZero ? 'zero' : 'data';
    if (out.get(c) !== 'data') out.set(c, kind);
  }
  return out;
}

function chunksOf(extents: Extent[], chunk: number, size: number): Map<number, 'data' | 'zero'> {
  const out = new Map<number, 'data' | 'zero'>();
  let lastEnd = -1;
  for (const e of extents) {
    assert.equal(e.offset % chunk, 0, 'extent starts on a chunk boundary');
    const end = e.offset + e.length;
    assert.ok(end === size || end % chunk === 0, 'extent ends on a chunk boundary or the disk end');
    assert.ok(e.offset >= lastEnd, 'sorted, not overlapping');
    lastEnd = end;
    for (let c = e.offset / chunk; c * chunk < end; c++) out.set(c, e.kind);
  }
  return out;
}

test('plans agree with a brute-force model on random maps (all modes)', async () => {
  const chunk = 64 * 1024;
  const unit = 4096;
  for (let seed = 1; seed <= 300; seed++) {
    const rand = prng(seed);
    const size = unit * (1 + Math.floor(rand() * 400)) + (seed % 3 === 0 ? 512 : 0);
    const alloc = randomRuns(rand, size, unit, [0, NBD_STATE_ZERO, NBD_STATE_HOLE | NBD_STATE_ZERO]);
    const dirty = randomRuns(rand, size, unit, [0, NBD_STATE_DIRTY]);
    for (const mode of ['full', 'incremental', 'resync'] as const) {
      const plan = await all(
        planDisk({ mode, allocation: from(alloc), dirty: from(dirty), chunkSize: chunk, size }),
      );
      assert.deepEqual(
        chunksOf(plan, chunk, size),
        expectedChunks(mode, alloc, dirty, size, chunk, unit),
        `seed ${seed} mode ${mode}`,
      );
      for (let i = 1; i < plan.length; i++) {
        const prev = plan[i - 1]!;
        assert.ok(
          !(prev.offset + prev.length === plan[i]!.offset && prev.kind === plan[i]!.kind),
          'adjacent runs of one kind are merged',
        );
      }
    }
  }
});

test('a chunk shared by a zero and a data segment is data', async () => {
  const C = 65536;
  const out = await all(
    alignToChunks(
      from<Extent>([
        { offset: 0, length: 70000, kind: 'zero' },
        { offset: 70000, length: 100, kind: 'data' },
        { offset: 70100, length: 200000, kind: 'zero' },
      ]),
      C,
      10 * C,
    ),
  );
  assert.deepEqual(out, [
    { offset: 0, length: C, kind: 'zero' },
    { offset: C, length: C, kind: 'data' },
    { offset: 2 * C, length: 3 * C, kind: 'zero' },
  ]);
});

test('intersect keeps segment kinds inside dirty ranges only', async () => {
  const out = await all(
    intersect(
      from([
        { offset: 10, length: 10 },
        { offset: 40, length: 30 },
      ]),
      from<Extent>([
        { offset: 0, length: 15, kind: 'data' },
        { offset: 15, length: 50, kind: 'zero' },
        { offset: 65, length: 100, kind: 'data' },
      ]),
    ),
  );
  assert.deepEqual(out, [
    { offset: 10, length: 5, kind: 'data' },
    { offset: 15, length: 5, kind: 'zero' },
    { offset: 40, length: 25, kind: 'zero' },
    { offset: 65, length: 5, kind: 'data' },
  ]);
});

test('clipBelow and splitExtents', async () => {
  const e: Extent[] = [
    { offset: 0, length: 100, kind: 'data' },
    { offset: 200, length: 300, kind: 'zero' },
  ];
  assert.deepEqual(await all(clipBelow(from(e), 250)), [{ offset: 250, length: 250, kind: 'zero' }]);
  assert.deepEqual(await all(clipBelow(from(e), 0)), e);
  assert.deepEqual(await all(splitExtents(from(e), 128)), [
    { offset: 0, length: 100, kind: 'data' },
    { offset: 200, length: 128, kind: 'zero' },
    { offset: 328, length: 128, kind: 'zero' },
    { offset: 456, length: 44, kind: 'zero' },
  ]);
});
