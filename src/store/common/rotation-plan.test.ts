import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generationsNeedingProducers, planRotation } from './rotation-plan.ts';

const disks = ['Web01_0', 'Web01_1'];
const gens = (ids: string[]) => ids.map((id) => ({ id, disks }));
const all = () => true;

test('first run: nothing to rename, the slot is fresh', () => {
  const p = planRotation({ generations: [], copies: 3, producerAvailable: all });
  assert.deepEqual(p.renames, []);
  assert.deepEqual(p.slot, { kind: 'fresh' });
});

test('copies 3 with 3 generations: the Anvil! sequence (oldest to _incomplete, then _2→_3, _1→_2)', () => {
  const p = planRotation({ generations: gens(['g3', 'g2', 'g1']), copies: 3, producerAvailable: all });
  assert.deepEqual(
    p.renames.map((r) => [r.generationId, r.from, r.to]),
    [
      ['g1', 3, 'incomplete'],
      ['g2', 2, 3],
      ['g3', 1, 2],
    ],
  );
  assert.deepEqual(p.slot, { kind: 'recycle', generationId: 'g1' });
  // The oldest catches up through the deltas that produced _2 then _1.
  assert.deepEqual(p.applyProducersOf, ['g2', 'g3']);
  assert.deepEqual(p.survivors, [
    { id: 'g3', fromSeq: 1, toSeq: 2 },
    { id: 'g2', fromSeq: 2, toSeq: 3 },
  ]);
  assert.equal(p.renames[0]?.disks, disks);
});

test('fewer generations than copies: everything shifts and the slot copies the newest', () => {
  const p = planRotation({ generations: gens(['g2', 'g1']), copies: 3, producerAvailable: all });
  assert.deepEqual(
    p.renames.map((r) => [r.from, r.to]),
    [
      [2, 3],
      [1, 2],
    ],
  );
  assert.equal(p.recycled, null);
  assert.deepEqual(p.slot, { kind: 'copy', fromGenerationId: 'g2', fromSeq: 2, disks });
  assert.deepEqual(p.applyProducersOf, []);
});

test('copies 1: _1 becomes _incomplete and only the new delta applies', () => {
  const p = planRotation({ generations: gens(['g1']), copies: 1, producerAvailable: () => false });
  assert.deepEqual(
    p.renames.map((r) => [r.from, r.to]),
    [[1, 'incomplete']],
  );
  assert.deepEqual(p.slot, { kind: 'recycle', generationId: 'g1' });
  assert.deepEqual(p.applyProducersOf, []);
});

test('a missing producer delta falls back to copying the newest generation', () => {
  const p = planRotation({
    generations: gens(['g3', 'g2', 'g1']),
    copies: 3,
    producerAvailable: (id) => id !== 'g2',
  });
  assert.equal(p.recycled?.id, 'g1');
  assert.deepEqual(p.slot, { kind: 'copy', fromGenerationId: 'g3', fromSeq: 2, disks });
  assert.deepEqual(p.applyProducersOf, []);
});

test('a store that clones: the oldest is still recycled by name, but the slot clones the newest', () => {
  const p = planRotation({
    generations: gens(['g3', 'g2', 'g1']),
    copies: 3,
    producerAvailable: all,
    cloneNewest: true,
  });
  assert.deepEqual(
    p.renames.map((r) => [r.generationId, r.from, r.to]),
    [
      ['g1', 3, 'incomplete'],
      ['g2', 2, 3],
      ['g3', 1, 2],
    ],
  );
  assert.equal(p.recycled?.id, 'g1');
  assert.deepEqual(p.slot, { kind: 'copy', fromGenerationId: 'g3', fromSeq: 2, disks });
  // Only the new delta is written; no older delta is replayed.
  assert.deepEqual(p.applyProducersOf, []);
});

test('a store that clones, copies 1: the single generation takes the new delta in place', () => {
  const p = planRotation({ generations: gens(['g1']), copies: 1, producerAvailable: all, cloneNewest: true });
  assert.deepEqual(p.slot, { kind: 'recycle', generationId: 'g1' });
  assert.deepEqual(p.applyProducersOf, []);
});

test('shrinking copies drops the oldest and recycles the newest of the rest', () => {
  const p = planRotation({ generations: gens(['g4', 'g3', 'g2', 'g1']), copies: 2, producerAvailable: all });
  assert.deepEqual(
    p.dropped.map((g) => [g.id, g.seq]),
    [
      ['g2', 3],
      ['g1', 4],
    ],
  );
  assert.deepEqual(
    p.renames.map((r) => [r.generationId, r.from, r.to]),
    [
      ['g3', 2, 'incomplete'],
      ['g4', 1, 2],
    ],
  );
  assert.deepEqual(p.applyProducersOf, ['g4']);
});

test('growing copies keeps every generation', () => {
  const p = planRotation({ generations: gens(['g2', 'g1']), copies: 5, producerAvailable: all });
  assert.deepEqual(p.dropped, []);
  assert.equal(p.recycled, null);
  assert.equal(p.survivors.length, 2);
});

test('kept producers: the deltas of _1 … _N-1', () => {
  assert.deepEqual(generationsNeedingProducers(['a', 'b', 'c'], 3), ['a', 'b']);
  assert.deepEqual(generationsNeedingProducers(['a', 'b', 'c'], 1), []);
  assert.deepEqual(generationsNeedingProducers(['a'], 4), ['a']);
  assert.deepEqual(generationsNeedingProducers(['a', 'b', 'c'], 3, true), []);
});

test('copies must be a positive integer', () => {
  assert.throws(() => planRotation({ generations: [], copies: 0, producerAvailable: all }), RangeError);
});
