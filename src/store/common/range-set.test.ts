import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RangeSet } from './range-set.ts';

test('gaps: the parts no range covers, with ranges merged across adds', () => {
  const s = new RangeSet();
  assert.deepEqual(s.gaps(10, 5), [{ offset: 10, length: 5 }]);
  s.add(100, 50);
  s.add(200, 10);
  s.add(150, 20); // touches the first: one range 100..170
  s.add(0, 0); // empty: ignored
  assert.equal(s.count, 2);
  assert.deepEqual(s.gaps(90, 130), [
    { offset: 90, length: 10 },
    { offset: 170, length: 30 },
    { offset: 210, length: 10 },
  ]);
  assert.deepEqual(s.gaps(110, 50), [], 'wholly covered');
  assert.deepEqual(s.gaps(0, 100), [{ offset: 0, length: 100 }], 'ends where a range starts');
  assert.deepEqual(s.gaps(170, 30), [{ offset: 170, length: 30 }], 'starts where a range ends');
  s.add(205, 100);
  assert.deepEqual(s.gaps(190, 200), [
    { offset: 190, length: 10 },
    { offset: 305, length: 85 },
  ]);
});

test('addAll unites two sets; gaps agree with a byte map on random ranges', () => {
  const a = new RangeSet();
  const b = new RangeSet();
  const covered = new Uint8Array(4096);
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 60; i++) {
    const off = rnd(4000);
    const len = 1 + rnd(90);
    (i % 2 ? a : b).add(off, len);
    covered.fill(1, off, Math.min(4096, off + len));
  }
  a.addAll(b);
  for (let q = 0; q < 200; q++) {
    const off = rnd(4000);
    const len = 1 + rnd(96);
    const want: { offset: number; length: number }[] = [];
    for (let x = off; x < off + len; x++) {
      if (covered[x]) continue;
      const last = want[want.length - 1];
      if (last && last.offset + last.length === x) last.length++;
      else want.push({ offset: x, length: 1 });
    }
    assert.deepEqual(a.gaps(off, len), want, `gaps(${off}, ${len})`);
  }
});
