/**
 * mapExtents' stitching logic. Against qemu-nbd it is checked in test/integration/nbd-extents;
 * here a scripted block-status source stands in for server behaviour qemu-nbd does not show on
 * demand but proto.md allows: answers shorter than asked, a final extent longer than asked, and
 * consecutive descriptors with equal flags.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NbdError } from './errors.ts';
import { type BlockStatusSource, mapExtents } from './extents.ts';
import type { BlockExtent } from './transmission.ts';

/** A disk described as runs; each answer covers at most `maxRuns` runs, the last one possibly past the question. */
function scripted(runs: { length: number; flags: number }[], maxRuns: number, overshoot: boolean) {
  const size = runs.reduce((n, r) => n + r.length, 0);
  const asked: [number, number][] = [];
  const src: BlockStatusSource = {
    size,
    contexts: new Map([['base:allocation', 0]]),
    async blockStatus(offset, length) {
      asked.push([offset, length]);
      const out: BlockExtent[] = [];
      let pos = 0;
      for (const r of runs) {
        const end = pos + r.length;
        if (end > offset && out.length < maxRuns) {
          const from = Math.max(pos, offset);
          let len = end - from;
          if (!overshoot) len = Math.min(len, offset + length - from);
          // proto.md: only the final extent may run past the question
          out.push({ length: len, flags: r.flags });
          if (from + len >= offset + length) break;
        }
        pos = end;
      }
      return new Map([['base:allocation', out]]);
    },
  };
  return { src, asked, size };
}

const RUNS = [
  { length: 4096, flags: 3 },
  { length: 4096, flags: 3 }, // equal to the previous: must merge
  { length: 65536, flags: 0 },
  { length: 512, flags: 2 },
  { length: 1 << 20, flags: 3 },
  { length: 8192, flags: 0 },
];
const MERGED = [
  { offset: 0, length: 8192, flags: 3 },
  { offset: 8192, length: 65536, flags: 0 },
  { offset: 73728, length: 512, flags: 2 },
  { offset: 74240, length: 1 << 20, flags: 3 },
  { offset: 74240 + (1 << 20), length: 8192, flags: 0 },
];

async function collect<T>(g: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of g) out.push(x);
  return out;
}

describe('mapExtents', () => {
  it('merges equal runs and continues after short answers, whatever the step', async () => {
    for (const maxRuns of [1, 2, 100]) {
      for (const overshoot of [false, true]) {
        for (const step of [512, 4096, 100000, 1 << 30]) {
          const { src } = scripted(RUNS, maxRuns, overshoot);
          assert.deepEqual(
            await collect(mapExtents(src, 'base:allocation', { step })),
            MERGED,
            `maxRuns ${maxRuns} step ${step}`,
          );
        }
      }
    }
  });

  it('clips to a sub-range, including a final extent that runs past it', async () => {
    const { src, asked } = scripted(RUNS, 100, true);
    const got = await collect(mapExtents(src, 'base:allocation', { offset: 6000, length: 70000 }));
    assert.deepEqual(got, [
      { offset: 6000, length: 2192, flags: 3 },
      { offset: 8192, length: 65536, flags: 0 },
      { offset: 73728, length: 512, flags: 2 },
      { offset: 74240, length: 1760, flags: 3 }, // the answer's last extent is 1 MiB long
    ]);
    assert.deepEqual(asked, [[6000, 70000]], 'one question when the answer covers the range');
    assert.equal(
      got.reduce((n, e) => n + e.length, 0),
      70000,
    );
  });

  it('refuses a context that was not negotiated and a bad step', async () => {
    const { src } = scripted(RUNS, 100, false);
    await assert.rejects(
      collect(mapExtents(src, 'qemu:dirty-bitmap:x')),
      (e: NbdError) => e.code === 'NBD_UNKNOWN_CONTEXT',
    );
    await assert.rejects(
      collect(mapExtents(src, 'base:allocation', { step: 0 })),
      (e: NbdError) => e.code === 'NBD_BAD_RANGE',
    );
  });
});
