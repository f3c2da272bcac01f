import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DIGEST_BYTES } from '../core/digest.ts';
import { differingRuns, runBytes } from './differing-runs.ts';

/** Digests of `n` chunks, chunk i filled with byte values[i]. */
function digests(values: number[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.alloc(DIGEST_BYTES, v)));
}

test('runs of consecutive differing chunks, at the start, in the middle and at the end', () => {
  const expected = digests([1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(differingRuns(digests([1, 2, 3, 4, 5, 6, 7]), expected), []);
  assert.deepEqual(differingRuns(digests([9, 9, 3, 9, 5, 9, 9]), expected), [
    { first: 0, end: 2 },
    { first: 3, end: 4 },
    { first: 5, end: 7 },
  ]);
  assert.deepEqual(differingRuns(digests([9, 9, 9, 9, 9, 9, 9]), expected), [{ first: 0, end: 7 }]);
  // One differing byte at the end of a digest is a difference.
  const last = digests([1, 2, 3, 4, 5, 6, 7]);
  last.writeUInt8(last.readUInt8(4 * DIGEST_BYTES - 1) ^ 1, 4 * DIGEST_BYTES - 1);
  assert.deepEqual(differingRuns(last, expected), [{ first: 3, end: 4 }]);
});

test('the bytes of a run stop at the end of a piece whose last chunk is short', () => {
  assert.deepEqual(runBytes({ first: 1, end: 3 }, 65536, 65536 * 2 + 100), {
    from: 65536,
    to: 65536 * 2 + 100,
  });
  assert.deepEqual(runBytes({ first: 0, end: 1 }, 65536, 65536 * 2 + 100), { from: 0, to: 65536 });
});
