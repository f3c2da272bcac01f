import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkSet, DiskChunks } from './chunk-set.ts';

const K64 = 65536;

test('byte ranges become the chunks they touch, runs come out ascending and merged', () => {
  const s = ChunkSet.forDisk(10 * K64 + 100, K64);
  assert.equal(s.chunks, 11);
  s.addBytes(K64 - 1, 2, K64); // touches chunks 0 and 1
  s.addBytes(5 * K64, 3 * K64, K64); // 5, 6, 7
  s.addBytes(10 * K64, 100, K64); // the short last chunk
  s.addBytes(3 * K64, 0, K64); // nothing
  assert.deepEqual(
    [...s.runs()],
    [
      { first: 0, count: 2 },
      { first: 5, count: 3 },
      { first: 10, count: 1 },
    ],
  );
  assert.equal(s.count(), 6);
  assert.ok(s.has(6) && !s.has(4));
});

test('whole bytes at a time and single bits give the same set', () => {
  const a = new ChunkSet(100);
  const b = new ChunkSet(100);
  a.addChunks(3, 70);
  for (let c = 3; c < 73; c++) b.addChunks(c, 1);
  assert.deepEqual(a.toBytes(), b.toBytes());
  assert.deepEqual([...a.runs()], [{ first: 3, count: 70 }]);
  assert.equal(ChunkSet.full(100).count(), 100);
});

test('union, difference, intersection, head and a round trip through JSON', () => {
  const a = new ChunkSet(64);
  a.addChunks(0, 10);
  const b = new ChunkSet(64);
  b.addChunks(5, 10);
  const u = a.clone();
  u.addAll(b);
  assert.equal(u.count(), 15);
  const i = a.intersect(b);
  assert.deepEqual([...i.runs()], [{ first: 5, count: 5 }]);
  u.removeAll(i);
  assert.deepEqual(
    [...u.runs()],
    [
      { first: 0, count: 5 },
      { first: 10, count: 5 },
    ],
  );
  assert.deepEqual(
    [...u.head(7).runs()],
    [
      { first: 0, count: 5 },
      { first: 10, count: 2 },
    ],
  );
  assert.throws(() => a.addAll(new ChunkSet(65)), /do not combine/);

  const d = new DiskChunks(
    new Map([
      ['vda', 3 * K64],
      ['vdb', 20 * K64],
    ]),
    K64,
  );
  d.get('vda').addChunks(1, 1);
  d.get('vdb').addChunks(4, 10);
  assert.equal(d.count(), 11);
  const h = d.head(5);
  assert.equal(h.get('vda').count(), 1);
  assert.deepEqual([...h.get('vdb').runs()], [{ first: 4, count: 4 }]);
  const back = DiskChunks.fromJSON(JSON.parse(JSON.stringify(d.toJSON())));
  assert.deepEqual(back.get('vdb').toBytes(), d.get('vdb').toBytes());
  assert.equal(back.get('vda').chunks, 3);
  back.removeAll(d);
  assert.ok(back.isEmpty());
});
