import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alignDown, alignedBuffer, alignUp, DIRECT_ALIGN, isAlignedMemory } from './aligned-memory.ts';

test('aligned buffers: zero-filled, aligned only when cut at aligned offsets', () => {
  const b = alignedBuffer(3 * DIRECT_ALIGN + 5);
  assert.equal(b.length, 3 * DIRECT_ALIGN + 5);
  assert.ok(b.every((x) => x === 0));
  assert.ok(isAlignedMemory(b));
  assert.ok(isAlignedMemory(b.subarray(DIRECT_ALIGN)));
  assert.ok(!isAlignedMemory(b.subarray(512)));
  assert.ok(!isAlignedMemory(Buffer.alloc(DIRECT_ALIGN)));
});

test('alignUp and alignDown round to DIRECT_ALIGN', () => {
  assert.equal(alignUp(0), 0);
  assert.equal(alignUp(1), DIRECT_ALIGN);
  assert.equal(alignUp(DIRECT_ALIGN), DIRECT_ALIGN);
  assert.equal(alignDown(DIRECT_ALIGN - 1), 0);
  assert.equal(alignDown(2 * DIRECT_ALIGN + 3), 2 * DIRECT_ALIGN);
});
