import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Extent } from '../core/extent.ts';
import { orderedReads } from './ordered-reads.ts';

async function* from<T>(items: T[]): AsyncGenerator<T> {
  for (const i of items) yield i;
}

test('reads run concurrently but arrive in order, split at maxPiece', async () => {
  let active = 0;
  let peak = 0;
  const read = async (offset: number, length: number) => {
    active++;
    peak = Math.max(peak, active);
    // later pieces finish first
    await new Promise((r) => setTimeout(r, 20 - (offset / 1024) * 2));
    active--;
    return Buffer.alloc(length, offset / 1024);
  };
  const extents: Extent[] = [
    { offset: 0, length: 4096, kind: 'data' },
    { offset: 4096, length: 2048, kind: 'zero' },
    { offset: 6144, length: 3072, kind: 'data' },
  ];
  const got: string[] = [];
  for await (const p of orderedReads(from(extents), { read, inflight: 4, maxPiece: 1024 })) {
    got.push(`${p.extent.kind}@${p.extent.offset}+${p.extent.length}:${p.data ? p.data[0] : '-'}`);
  }
  assert.deepEqual(got, [
    'data@0+1024:0',
    'data@1024+1024:1',
    'data@2048+1024:2',
    'data@3072+1024:3',
    'zero@4096+1024:-',
    'zero@5120+1024:-',
    'data@6144+1024:6',
    'data@7168+1024:7',
    'data@8192+1024:8',
  ]);
  assert.ok(peak > 1 && peak <= 4, `peak concurrency ${peak}`);
});

test('a failed read surfaces as an error at its turn, and nothing is left unhandled', async () => {
  const read = async (offset: number) => {
    if (offset === 2048) throw new Error('EIO at 2048');
    return Buffer.alloc(1024);
  };
  const seen: number[] = [];
  await assert.rejects(async () => {
    for await (const p of orderedReads(from<Extent>([{ offset: 0, length: 8192, kind: 'data' }]), {
      read,
      inflight: 3,
      maxPiece: 1024,
    })) {
      seen.push(p.extent.offset);
    }
  }, /EIO at 2048/);
  assert.deepEqual(seen, [0, 1024]);
});

test('companions are fetched per piece and delivered with it', async () => {
  const out: Array<[number, string | undefined]> = [];
  for await (const p of orderedReads(from<Extent>([{ offset: 0, length: 3000, kind: 'zero' }]), {
    read: async () => Buffer.alloc(0),
    inflight: 2,
    maxPiece: 1000,
    companion: async (e) => `digests@${e.offset}`,
  })) {
    out.push([p.extent.offset, p.companion]);
  }
  assert.deepEqual(out, [
    [0, 'digests@0'],
    [1000, 'digests@1000'],
    [2000, 'digests@2000'],
  ]);
});

test('maxBytes bounds the bytes in flight, not only the number of reads', async () => {
  let active = 0;
  let peakBytes = 0;
  const read = async (_offset: number, length: number) => {
    active += length;
    peakBytes = Math.max(peakBytes, active);
    await new Promise((r) => setTimeout(r, 5));
    active -= length;
    return Buffer.alloc(length);
  };
  const big: Extent[] = [{ offset: 0, length: 64 * 1024, kind: 'data' }];
  let n = 0;
  for await (const _ of orderedReads(from(big), { read, inflight: 16, maxPiece: 4096, maxBytes: 16384 })) n++;
  assert.equal(n, 16);
  // Four 4 KiB pieces reach the limit; a fifth is only started once one was delivered.
  assert.ok(peakBytes <= 16384 + 4096, `peak ${peakBytes}`);
  assert.ok(peakBytes >= 8192, `reads still overlap (peak ${peakBytes})`);

  // Small pieces: the count limit applies.
  let activeReads = 0;
  let peakReads = 0;
  const small = async (_offset: number, length: number) => {
    activeReads++;
    peakReads = Math.max(peakReads, activeReads);
    await new Promise((r) => setTimeout(r, 5));
    activeReads--;
    return Buffer.alloc(length);
  };
  for await (const _ of orderedReads(from(big), {
    read: small,
    inflight: 3,
    maxPiece: 1024,
    maxBytes: 1 << 20,
  })) {
  }
  assert.equal(peakReads, 3);
});
