import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import {
  decodeFrame,
  encodeFrame,
  encodeJson,
  FrameDecoder,
  type RawFrame,
  writeHeader,
  writeU64,
} from './codec.ts';
import { ProtocolError } from './errors.ts';
import {
  FRAME,
  FRAME_NAMES,
  type Frame,
  type FrameName,
  HEADER_BYTES,
  MAGIC,
  MAX_EXTENT_BYTES,
} from './frames.ts';
import { encodeAll, sampleFrames } from './test-support/frames.ts';

function rawAll(buf: Buffer, splits: number[] = []): RawFrame[] {
  const d = new FrameDecoder();
  const raws: RawFrame[] = [];
  let at = 0;
  for (const s of [...splits, buf.length]) {
    raws.push(...d.push(buf.subarray(at, s)));
    at = s;
  }
  d.end();
  return raws;
}

function decodeAll(buf: Buffer, splits: number[] = []): Frame[] {
  return rawAll(buf, splits).map(decodeFrame);
}

/** Frames compared as plain values (Buffers as hex). */
function norm(f: Frame): unknown {
  return JSON.parse(
    JSON.stringify(f, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v)),
  );
}

/** Raw frames as comparable strings: type and body bytes. */
function rawKey(frames: RawFrame[]): string[] {
  return frames.map((r) => `${r.type}:${r.body.toString('hex')}`);
}

function rawFrame(type: number, body: Buffer, flags = 0, magic = MAGIC): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt16BE(magic, 0);
  h.writeUInt8(type, 2);
  h.writeUInt8(flags, 3);
  h.writeUInt32BE(body.length, 4);
  return Buffer.concat([h, body]);
}

function expectCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${String(e)}`);
    assert.equal((e as HavenError).code, code);
    return true;
  });
}

describe('codec round trips', () => {
  it('every frame type is covered by the samples', () => {
    const covered = new Set(sampleFrames().map((f) => f.type));
    assert.deepEqual([...covered].sort(), [...FRAME_NAMES].sort());
  });

  for (const f of sampleFrames()) {
    it(`${f.type}${f.type === 'EXTENT' ? ` (${f.body.kind}, ${f.body.encoding})` : ''}`, () => {
      const bytes = Buffer.concat(encodeFrame(f));
      assert.equal(bytes.readUInt16BE(0), MAGIC);
      assert.equal(bytes.readUInt8(2), FRAME[f.type]);
      assert.equal(bytes.readUInt32BE(4), bytes.length - HEADER_BYTES);
      const [back, ...rest] = decodeAll(bytes);
      assert.equal(rest.length, 0);
      assert.deepEqual(norm(back!), norm(f));
    });
  }

  it('a data extent arriving in one slice is a view of that slice (no copy)', () => {
    const f = sampleFrames().find((x) => x.type === 'EXTENT')!;
    const bytes = Buffer.concat(encodeFrame(f));
    const [raw] = new FrameDecoder().push(bytes);
    assert.equal(raw!.body.buffer, bytes.buffer);
  });
});

describe('FrameDecoder split feeding', () => {
  const all = sampleFrames();
  const stream = encodeAll(all);
  const want = rawKey(rawAll(stream));

  it('the unsplit stream decodes to the frames encoded', () => {
    assert.deepEqual(decodeAll(stream).map(norm), all.map(norm));
  });

  it('gives the same frames for a split at every byte boundary', () => {
    for (let k = 0; k <= stream.length; k++) {
      assert.deepEqual(rawKey(rawAll(stream, [k])), want, `split at ${k}`);
    }
  });

  it('gives the same frames when fed one byte at a time', () => {
    const splits = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(decodeAll(stream, splits).map(norm), all.map(norm));
  });

  it('gives the same frames for two splits at many boundary pairs', () => {
    for (let k = 0; k < stream.length; k += 5) {
      for (let j = k; j < stream.length; j += 37) {
        assert.deepEqual(rawKey(rawAll(stream, [k, j])), want, `splits at ${k}, ${j}`);
      }
    }
  });
});

describe('FrameDecoder header errors', () => {
  it('bad magic', () =>
    expectCode(
      () => new FrameDecoder().push(rawFrame(FRAME.BYE, Buffer.alloc(0), 0, 0x5353)),
      'PROTO_BAD_MAGIC',
    ));
  it('text on the stream (a shell banner)', () =>
    expectCode(() => new FrameDecoder().push(Buffer.from('Welcome to Debian!\n')), 'PROTO_BAD_MAGIC'));
  it('unknown type', () =>
    expectCode(() => new FrameDecoder().push(rawFrame(0x7f, Buffer.alloc(0))), 'PROTO_UNKNOWN_FRAME'));
  it('type 0', () =>
    expectCode(() => new FrameDecoder().push(rawFrame(0, Buffer.alloc(0))), 'PROTO_UNKNOWN_FRAME'));
  it('non-zero flags', () =>
    expectCode(() => new FrameDecoder().push(rawFrame(FRAME.BYE, Buffer.alloc(0), 1)), 'PROTO_BAD_FRAME'));

  it('too large, detected from the header alone', () => {
    const h = Buffer.alloc(HEADER_BYTES);
    writeHeader(h, 'EXTENT', MAX_EXTENT_BYTES + 53);
    expectCode(() => new FrameDecoder().push(h), 'PROTO_FRAME_TOO_LARGE');
    writeHeader(h, 'OPEN', 0xffffffff);
    expectCode(() => new FrameDecoder().push(h), 'PROTO_FRAME_TOO_LARGE');
    writeHeader(h, 'BYE', 1);
    expectCode(() => new FrameDecoder().push(h), 'PROTO_FRAME_TOO_LARGE');
  });

  it('too small for its type', () => {
    const h = Buffer.alloc(HEADER_BYTES);
    writeHeader(h, 'MARK', 4);
    expectCode(() => new FrameDecoder().push(h), 'PROTO_BAD_FRAME');
  });

  it('truncated inside the header or the body', () => {
    const bytes = Buffer.concat(encodeFrame({ type: 'QUERY', body: { server: 'web' } }));
    for (const cut of [1, HEADER_BYTES - 1, HEADER_BYTES, bytes.length - 1]) {
      const d = new FrameDecoder();
      assert.deepEqual(d.push(bytes.subarray(0, cut)), []);
      expectCode(() => d.end(), 'PROTO_TRUNCATED');
    }
  });

  it('stays failed after an error', () => {
    const d = new FrameDecoder();
    expectCode(() => d.push(Buffer.from('garbage!')), 'PROTO_BAD_MAGIC');
    expectCode(() => d.push(encodeFrame({ type: 'BYE', body: null })[0]!), 'PROTO_BAD_MAGIC');
  });
});

describe('decodeFrame body errors', () => {
  const raw = (type: FrameName, body: Buffer): RawFrame => ({ type, body });
  const extent = (kind: number, enc: number, offset: number, length: number, rest = Buffer.alloc(0)) => {
    const b = Buffer.alloc(20);
    b.writeUInt16BE(0, 0);
    b.writeUInt8(kind, 2);
    b.writeUInt8(enc, 3);
    writeU64(b, offset, 4);
    writeU64(b, length, 12);
    return raw('EXTENT', Buffer.concat([b, rest]));
  };

  it('JSON that does not parse', () =>
    expectCode(() => decodeFrame(raw('OPEN', Buffer.from('{"server":'))), 'PROTO_BAD_FRAME'));
  it('JSON of the wrong shape names the field', () => {
    const body = encodeJson('QUERY', { server: 'web' }).subarray(HEADER_BYTES);
    const bad = Buffer.from(body.toString().replace('"web"', '42'));
    assert.throws(
      () => decodeFrame(raw('QUERY', bad)),
      (e: HavenError) => e.code === 'PROTO_BAD_FRAME' && e.message.includes('server'),
    );
  });
  it('OPEN with duplicate disk names', () => {
    const open = sampleFrames().find((f) => f.type === 'OPEN')!;
    const body = structuredClone(open.body) as { disks: { name: string }[] };
    body.disks[1]!.name = body.disks[0]!.name;
    expectCode(() => decodeFrame(raw('OPEN', Buffer.from(JSON.stringify(body)))), 'PROTO_BAD_FRAME');
  });
  it('OPEN with a negative or fractional disk size', () => {
    const open = sampleFrames().find((f) => f.type === 'OPEN')!;
    for (const size of [-1, 0.5, 0]) {
      const body = structuredClone(open.body) as { disks: { size: number }[] };
      body.disks[0]!.size = size;
      expectCode(() => decodeFrame(raw('OPEN', Buffer.from(JSON.stringify(body)))), 'PROTO_BAD_FRAME');
    }
  });
  it('reserved fields must be zero', () => {
    const m = Buffer.alloc(12);
    m.writeUInt16BE(1, 2);
    expectCode(() => decodeFrame(raw('MARK', m)), 'PROTO_BAD_FRAME');
    const r = Buffer.alloc(16);
    r.writeUInt16BE(9, 6);
    expectCode(() => decodeFrame(raw('DIGESTS_REQ', r)), 'PROTO_BAD_FRAME');
  });
  it('ABORT flag other than 0/1', () =>
    expectCode(() => decodeFrame(raw('ABORT', Buffer.from([2]))), 'PROTO_BAD_FRAME'));
  it('DIGESTS whose count disagrees with its length', () => {
    const b = Buffer.alloc(8 + 32);
    b.writeUInt32BE(2, 4);
    expectCode(() => decodeFrame(raw('DIGESTS', b)), 'PROTO_BAD_FRAME');
  });
  it('STAGED whose count disagrees with its length', () => {
    const b = Buffer.alloc(4 + 8);
    b.writeUInt16BE(2, 0);
    expectCode(() => decodeFrame(raw('STAGED', b)), 'PROTO_BAD_FRAME');
  });
  it('u64 beyond 2^53', () => {
    const m = Buffer.alloc(12);
    m.writeUInt32BE(0x00200000, 4);
    expectCode(() => decodeFrame(raw('MARK', m)), 'PROTO_BAD_FRAME');
  });
  it('EXTENT kind, encoding, length and payload rules', () => {
    expectCode(() => decodeFrame(extent(2, 0, 0, 10)), 'PROTO_BAD_FRAME');
    expectCode(() => decodeFrame(extent(0, 2, 0, 10, Buffer.alloc(42))), 'PROTO_BAD_FRAME');
    expectCode(() => decodeFrame(extent(1, 0, 0, 0)), 'PROTO_BAD_RANGE');
    expectCode(() => decodeFrame(extent(1, 1, 0, 10)), 'PROTO_BAD_FRAME');
    expectCode(() => decodeFrame(extent(1, 0, 0, 10, Buffer.alloc(1))), 'PROTO_BAD_FRAME');
    expectCode(() => decodeFrame(extent(0, 0, 0, 10, Buffer.alloc(32))), 'PROTO_BAD_FRAME');
    expectCode(() => decodeFrame(extent(0, 0, 0, 10, Buffer.alloc(32 + 9))), 'PROTO_BAD_FRAME');
    expectCode(
      () => decodeFrame(extent(0, 1, 0, MAX_EXTENT_BYTES + 1, Buffer.alloc(33))),
      'PROTO_FRAME_TOO_LARGE',
    );
    const ok = decodeFrame(extent(0, 0, 0, 10, Buffer.alloc(42)));
    assert.equal(ok.type, 'EXTENT');
  });
  it('an ERROR frame with a code that is not UPPER_SNAKE', () => {
    const body = Buffer.from(JSON.stringify({ code: 'rm -rf', kind: 'x', message: 'm', fatal: true }));
    expectCode(() => decodeFrame(raw('ERROR', body)), 'PROTO_BAD_FRAME');
  });
});
