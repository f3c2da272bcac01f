/**
 * Seeded fuzzing of the decoder and of a live receiver: random bytes, truncations and mutations
 * of valid streams must give typed PROTO_* errors (or valid frames), never another exception, a
 * hang, or a changed committed generation. Seeds are fixed so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunkDigests, rootDigest } from '../core/digest.ts';
import { HavenError } from '../core/errors.ts';
import { decodeFrame, encodeFrame, encodeJson, FrameDecoder } from './codec.ts';
import { AttemptDigest } from './digests.ts';
import { StreamReceiver } from './receiver.ts';
import { encodeAll, prng, sampleFrames } from './test-support/frames.ts';
import { MemoryStore } from './test-support/memory-store.ts';
import { RawPeer, socketPair } from './test-support/raw-peer.ts';

/** Decodes a whole buffer fed in random slices; returns the error code or 'ok'. */
function feed(bytes: Buffer, rand: () => number): string {
  const d = new FrameDecoder();
  try {
    let at = 0;
    while (at < bytes.length) {
      const n = 1 + Math.floor(rand() * Math.min(bytes.length - at, 300));
      for (const raw of d.push(bytes.subarray(at, at + n))) decodeFrame(raw);
      at += n;
    }
    d.end();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof HavenError, `not a HavenError: ${String(e)}`);
    assert.match(e.code, /^PROTO_[A-Z_]+$/);
    return e.code;
  }
}

/**
 * One random mutation. `hot` lists byte positions worth hitting more often (frame headers and
 * extent fields), since a flip inside a data payload always ends as a digest mismatch.
 */
function mutate(src: Buffer, rand: () => number, hot: number[] = []): Buffer {
  const b = Buffer.from(src);
  const pos = (room = 1) =>
    hot.length > 0 && rand() < 0.7
      ? Math.min(hot[Math.floor(rand() * hot.length)]!, b.length - room)
      : Math.floor(rand() * (b.length - room + 1));
  switch (Math.floor(rand() * 5)) {
    case 0: // flip a few bytes
      for (let i = 0; i < 1 + rand() * 4; i++) b[pos()]! ^= 1 + Math.floor(rand() * 255);
      return b;
    case 1: // truncate
      return b.subarray(0, Math.floor(rand() * b.length));
    case 2: {
      // insert random bytes
      const at = Math.floor(rand() * b.length);
      const junk = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 16) }, () => Math.floor(rand() * 256)),
      );
      return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
    }
    case 3: {
      // rewrite a 32-bit word (often a length field) with a random or a small value
      const at = pos(4);
      b.writeUInt32BE(rand() < 0.5 ? Math.floor(rand() * 2 ** 32) : Math.floor(rand() * 16), at);
      return b;
    }
    default: {
      // drop a slice
      const at = Math.floor(rand() * b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 64))]);
    }
  }
}

describe('decoder fuzz', () => {
  const valid = encodeAll(sampleFrames());

  it('random bytes give typed errors', () => {
    const rand = prng(1);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(rand() * 200);
      const bytes = Buffer.from(Array.from({ length: len }, () => Math.floor(rand() * 256)));
      // Half of them start with a valid magic so the header checks beyond it are reached too.
      if (len >= 2 && i % 2 === 0) bytes.writeUInt16BE(0x4856, 0);
      seen.add(feed(bytes, rand));
    }
    assert.ok(seen.has('PROTO_BAD_MAGIC') && seen.has('PROTO_UNKNOWN_FRAME'), [...seen].join(' '));
  });

  it('mutated valid streams give frames or typed errors', () => {
    const rand = prng(2);
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) seen.add(feed(mutate(valid, rand), rand));
    for (const code of ['PROTO_TRUNCATED', 'PROTO_BAD_FRAME', 'PROTO_FRAME_TOO_LARGE']) {
      assert.ok(seen.has(code), `${code} never seen: ${[...seen].join(' ')}`);
    }
  });

  it('every truncation of a valid stream is PROTO_TRUNCATED or ok at a frame boundary', () => {
    const boundaries = new Set<number>([0]);
    let at = 0;
    for (const f of sampleFrames()) {
      at += Buffer.concat(encodeFrame(f)).length;
      boundaries.add(at);
    }
    const rand = prng(3);
    for (let cut = 0; cut <= valid.length; cut++) {
      const code = feed(valid.subarray(0, cut), rand);
      assert.equal(code, boundaries.has(cut) ? 'ok' : 'PROTO_TRUNCATED', `cut at ${cut}`);
    }
  });
});

describe('receiver fuzz (memory store)', () => {
  const C = 65536;
  const size = 8 * C;
  const meta = {
    server: 'web',
    job: 'j',
    copies: 2,
    disks: [{ name: 'vda', size }],
    sourceDefinition: '<domain/>',
    pointInTime: 'p',
    takenAt: '2025-01-01T00:00:00Z',
    baseGenerationId: null,
    mode: 'full' as const,
  };

  /** A valid whole session: HELLO, OPEN, extents, marks, digest request, END_DELTA, COMMIT, BYE. */
  function script(img: Buffer, rand: () => number): { bytes: Buffer; hot: number[] } {
    const attempt = new AttemptDigest('blake3');
    const parts: Buffer[] = [
      encodeJson('HELLO', {
        protocol: 'haven-stream',
        versions: [1],
        software: 'fuzz',
        compression: ['zstd', 'none'],
        digests: ['blake3'],
      }),
      ...encodeFrame({ type: 'OPEN', body: meta }),
    ];
    let frames = 0;
    let zeroBytes = 0;
    for (let off = 0; off < size; off += C) {
      frames++;
      if (off === 3 * C) {
        parts.push(
          ...encodeFrame({
            type: 'EXTENT',
            body: { disk: 0, kind: 'zero', encoding: 'raw', offset: off, length: C },
          }),
        );
        attempt.add({ disk: 0, kind: 'zero', offset: off, length: C });
        zeroBytes += C;
        continue;
      }
      const data = img.subarray(off, off + C);
      parts.push(...RawPeer.dataExtent('blake3', C, 0, off, data, rand() < 0.5));
      attempt.add(
        { disk: 0, kind: 'data', offset: off, length: C },
        rootDigest('blake3', chunkDigests('blake3', data, C)),
      );
      parts.push(...encodeFrame({ type: 'MARK', body: { disk: 0, offset: off + C } }));
      if (off === 4 * C)
        parts.push(...encodeFrame({ type: 'DIGESTS_REQ', body: { id: 1, disk: 0, fromChunk: 0, count: 8 } }));
    }
    const totals = { dataBytes: size - zeroBytes, zeroBytes };
    parts.push(
      ...encodeFrame({
        type: 'END_DELTA',
        body: {
          summary: { disks: { vda: totals } },
          attempt: { disks: { vda: { frames, ...totals } }, digest: attempt.hex() },
        },
      }),
      ...encodeFrame({ type: 'COMMIT', body: null }),
      ...encodeFrame({ type: 'BYE', body: null }),
    );
    // Hot positions: the first 28 bytes of every frame (header and extent fields).
    const hot: number[] = [];
    let at = 0;
    for (const p of parts) {
      if (p.length >= 8 && p.readUInt16BE(0) === 0x4856)
        for (let i = 0; i < Math.min(28, p.length); i++) hot.push(at + i);
      at += p.length;
    }
    return { bytes: Buffer.concat(parts), hot };
  }

  it('mutated sessions end with a typed error or a correct generation, never a hang', async (t) => {
    const rand = prng(4);
    const img = Buffer.alloc(size);
    for (let i = 0; i < size; i += 512) img.fill(Math.floor(rand() * 256), i, i + 512);
    const expected = Buffer.from(img);
    expected.fill(0, 3 * C, 4 * C);
    const clean = script(img, rand);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const store = new MemoryStore();
      const [a, b] = await socketPair();
      const bytes = i === 0 ? clean.bytes : mutate(clean.bytes, rand, clean.hot);
      a.on('data', () => {});
      a.on('error', () => {});
      const run = new StreamReceiver(b, store, { checkpointEveryBytes: C, helloTimeoutMs: 5000 }).run().then(
        () => 'ok',
        (e: unknown) => {
          assert.ok(e instanceof HavenError, `not a HavenError: ${String(e)}`);
          return (e as HavenError).code;
        },
      );
      a.end(bytes);
      const outcome = await run;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      const m = await store.manifest('web');
      if (m) {
        // A mutation that still makes a valid session must not change what was stored.
        assert.equal(m.generations.length, 1);
        assert.ok(store.image('web', 'vda').equals(expected), `iteration ${i}: wrong image committed`);
      }
      if (i === 0) assert.equal(outcome, 'ok');
      a.destroy();
      b.destroy();
    }
    t.diagnostic(`outcomes: ${JSON.stringify([...outcomes])}`);
    assert.ok(outcomes.size >= 4, JSON.stringify([...outcomes]));
  });
});
