import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIGEST_BYTES } from '../../core/digest.ts';
import { SumsOverlay, writeSums } from './sums.ts';

/** `n` digests whose bytes all say `tag` (so each chunk's content shows who wrote it). */
const digests = (n: number, tag: number) => Buffer.alloc(n * DIGEST_BYTES, tag);

/** The same writes, one positioned write each, in order: what the overlay must leave. */
async function inOrder(path: string, writes: [number, Buffer][]): Promise<Buffer> {
  const fh = await open(path, 'w+');
  try {
    await fh.truncate(64 * DIGEST_BYTES);
    for (const [c, d] of writes) await writeSums(fh, c, d);
  } finally {
    await fh.close();
  }
  return readFile(path);
}

async function overlaid(path: string, writes: [number, Buffer][], limit: number): Promise<Buffer> {
  const fh = await open(path, 'w+');
  try {
    await fh.truncate(64 * DIGEST_BYTES);
    const o = new SumsOverlay(fh, limit);
    for (const [c, d] of writes) await o.add(c, d);
    await o.flush();
  } finally {
    await fh.close();
  }
  return readFile(path);
}

test('the overlay leaves a sums file as in-order writes would: later digests win, runs coalesce', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-sums-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const writes: [number, Buffer][] = [
    [40, digests(3, 1)],
    [5, digests(1, 2)],
    [6, digests(4, 3)],
    [41, digests(1, 4)],
    [0, digests(2, 5)],
    [7, digests(1, 6)],
    [63, digests(1, 7)],
    [5, digests(2, 8)],
  ];
  const want = await inOrder(join(dir, 'a'), writes);
  // Pending chunks flushed at every size, down to one at a time.
  for (const limit of [1, 3, 1000]) {
    assert.deepEqual(await overlaid(join(dir, `b${limit}`), writes, limit), want, `limit ${limit}`);
  }
  // Spot checks, so the comparison above cannot pass on two equally wrong files.
  assert.equal(want[41 * DIGEST_BYTES], 4);
  assert.equal(want[6 * DIGEST_BYTES], 8);
  assert.equal(want[7 * DIGEST_BYTES], 6);
  assert.equal(want[20 * DIGEST_BYTES], 0);
});
