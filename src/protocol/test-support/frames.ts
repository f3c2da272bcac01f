/**
 * Test support only: one valid example of every frame, for codec round trips, split-feeding and
 * fuzzing. Values are chosen to exercise every field (u64 above 2^32, non-ASCII text, nulls).
 */
import { encodeFrame } from '../codec.ts';
import type { Frame } from '../frames.ts';

const generation = {
  id: 'gen-1',
  seq: 1,
  pointInTime: 'cp-1',
  takenAt: '2025-01-01T00:00:00.000Z',
  committedAt: '2025-01-01T00:01:00.000Z',
  mode: 'full' as const,
  job: 'nightly',
  disks: [{ name: 'vda', size: 1 << 20, image: 'web_vda_1' }],
  deltaBytes: 1 << 20,
  tests: [],
};

/** The opening pair: a HELLO and the WELCOME that answers it. */
function handshakeFrames(): Frame[] {
  return [
    {
      type: 'HELLO',
      body: {
        protocol: 'haven-stream',
        versions: [1],
        software: 'haven/0.1.0',
        compression: ['zstd', 'none'],
        compressionLevel: 1,
        digests: ['blake3', 'sha256'],
        token: 'sécret',
      },
    },
    {
      type: 'WELCOME',
      body: {
        version: 1,
        software: 'haven/0.1.0',
        compression: ['zstd', 'none'],
        digest: 'blake3',
        store: {
          format: 'haven-store',
          version: 1,
          kind: 'fs',
          id: 'store-1',
          createdAt: '2025-01-01T00:00:00.000Z',
          chunkSize: 65536,
          digest: 'blake3',
        },
        maxExtentBytes: 4 << 20,
        maxDigestsPerRequest: 65536,
      },
    },
  ];
}

export function sampleFrames(): Frame[] {
  const payload = Buffer.alloc(4096, 0xab);
  return [
    ...handshakeFrames(),
    { type: 'QUERY', body: { server: 'web' } },
    { type: 'QUERY_REPLY', body: { server: 'web', newest: generation } },
    {
      type: 'OPEN',
      body: {
        server: 'web',
        job: 'nightly',
        copies: 3,
        disks: [
          { name: 'vda', size: 5 * 2 ** 32 },
          { name: 'vdb', size: 65536 },
        ],
        sourceDefinition: '<domain type="qemu"><name>wéb</name></domain>',
        pointInTime: 'cp-2',
        takenAt: '2025-01-02T00:00:00.000Z',
        baseGenerationId: 'gen-1',
        mode: 'incremental',
      },
    },
    {
      type: 'OPENED',
      body: {
        deltaId: 'd-1',
        newest: null,
        resume: { deltaId: 'd-0', pointInTime: 'cp-2', watermarks: { vda: 131072 }, stagedBytes: 131072 },
      },
    },
    { type: 'DIGESTS_REQ', body: { id: 7, disk: 1, fromChunk: 3, count: 2 } },
    { type: 'DIGESTS', body: { id: 7, digests: Buffer.alloc(64, 0x5a) } },
    {
      type: 'EXTENT',
      body: {
        disk: 0,
        kind: 'data',
        encoding: 'raw',
        offset: 3 * 2 ** 32,
        length: payload.length,
        digest: Buffer.alloc(32, 0x11),
        payload,
      },
    },
    {
      type: 'EXTENT',
      body: {
        disk: 0,
        kind: 'data',
        encoding: 'zstd',
        offset: 65536,
        length: 65536,
        digest: Buffer.alloc(32, 0x22),
        payload: Buffer.from([1, 2, 3]),
      },
    },
    { type: 'EXTENT', body: { disk: 1, kind: 'zero', encoding: 'raw', offset: 0, length: 4 * 2 ** 32 } },
    { type: 'MARK', body: { disk: 1, offset: 2 ** 40 } },
    { type: 'STAGED', body: { watermarks: [2 ** 40, 0] } },
    {
      type: 'END_DELTA',
      body: {
        summary: { disks: { vda: { dataBytes: 10, zeroBytes: 0 }, vdb: { dataBytes: 0, zeroBytes: 5 } } },
        attempt: {
          disks: {
            vda: { frames: 1, dataBytes: 10, zeroBytes: 0 },
            vdb: { frames: 1, dataBytes: 0, zeroBytes: 5 },
          },
          digest: 'ab'.repeat(32),
        },
        imageDigests: { vda: 'cd'.repeat(32) },
      },
    },
    { type: 'DELTA_DURABLE', body: { deltaId: 'd-1' } },
    { type: 'COMMIT', body: null },
    { type: 'COMMITTED', body: { generation } },
    { type: 'ABORT', body: { discard: true } },
    { type: 'ABORTED', body: null },
    {
      type: 'ERROR',
      body: {
        code: 'STORE_LOCKED',
        kind: 'conflict',
        message: 'locked',
        hint: 'wait',
        details: { pid: 1 },
        fatal: false,
      },
    },
    { type: 'BYE', body: null },
  ];
}

export function encodeAll(frames: Frame[]): Buffer {
  return Buffer.concat(frames.flatMap((f) => encodeFrame(f)));
}

/** A small deterministic PRNG (mulberry32) so fuzz runs are reproducible from their seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
