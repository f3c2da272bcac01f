import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { encodeJson, encodeMark, FrameDecoder, type RawFrame } from './codec.ts';
import { type ByteSink, type ByteSource, FrameQueue, readableSource } from './frame-queue.ts';

/** A source that hands every chunk over in the same buffer, overwritten right after the call. */
class ReusedBufferSource implements ByteSource {
  sink: ByteSink | null = null;
  paused = false;
  resumes = 0;
  private readonly buf = Buffer.alloc(7);
  start(sink: ByteSink): void {
    this.sink = sink;
  }
  resume(): void {
    this.paused = false;
    this.resumes++;
  }
  /** Feeds `bytes` in 7-byte pieces through the one buffer; stops early if asked to pause. */
  feed(bytes: Buffer): number {
    let at = 0;
    while (at < bytes.length && !this.paused) {
      const n = bytes.copy(this.buf, 0, at, at + this.buf.length);
      if (!this.sink!.chunk(this.buf.subarray(0, n))) this.paused = true;
      this.buf.fill(0xee);
      at += n;
    }
    return at;
  }
}

function frames(): Buffer[] {
  return [
    encodeJson('QUERY', { server: 'web01' }),
    encodeMark({ disk: 0, offset: 65536 }),
    encodeJson('QUERY', { server: 'x'.repeat(100) }),
  ];
}

describe('FrameQueue', () => {
  it('copies frames out of a source that reuses its buffer', async () => {
    const src = new ReusedBufferSource();
    const q = new FrameQueue(new FrameDecoder({ copyBodies: true }), src);
    const wire = Buffer.concat(frames());
    assert.equal(src.feed(wire), wire.length);
    src.sink!.end();
    const got: RawFrame[] = [];
    for (;;) {
      const item = await q.next();
      if (item.kind !== 'frame') {
        assert.equal(item.kind, 'end');
        break;
      }
      got.push(item.raw);
    }
    const expected = new FrameDecoder().push(wire);
    assert.equal(got.length, 3);
    assert.deepEqual(
      got.map((f) => [f.type, f.body.toString('hex')]),
      expected.map((f) => [f.type, f.body.toString('hex')]),
    );
  });

  it('pauses the source above its high-water mark and resumes below half of it', async () => {
    const src = new ReusedBufferSource();
    const q = new FrameQueue(new FrameDecoder({ copyBodies: true }), src, 64);
    const one = encodeJson('QUERY', { server: 'y'.repeat(40) });
    const wire = Buffer.concat(Array.from({ length: 10 }, () => one));
    const taken = src.feed(wire);
    assert.ok(src.paused && taken < wire.length, 'paused before everything was read');
    // Two frames (about 2 × 61 bytes) were queued when it paused; the first one taken leaves
    // more than half of the mark, the second less.
    assert.equal((await q.next()).kind, 'frame');
    assert.equal(src.resumes, 0);
    assert.equal((await q.next()).kind, 'frame');
    assert.equal(src.resumes, 1);
    let at = taken;
    let n = 2;
    for (;;) {
      if (!src.paused && at < wire.length) {
        at += src.feed(wire.subarray(at));
        if (at === wire.length) src.sink!.end();
      }
      if ((await q.next()).kind !== 'frame') break;
      n++;
    }
    assert.equal(n, 10);
  });

  it('delivers the frames before a broken frame, then the decoding error', async () => {
    const src = new ReusedBufferSource();
    const q = new FrameQueue(new FrameDecoder({ copyBodies: true }), src);
    const bad = Buffer.alloc(12, 0xee); // no frame magic
    src.feed(Buffer.concat([frames()[0]!, bad]));
    const first = await q.next();
    assert.equal(first.kind, 'frame');
    const second = await q.next();
    assert.equal(second.kind, 'bad');
    assert.equal((second as unknown as { error: { code: string } }).error.code, 'PROTO_BAD_MAGIC');
  });

  it('throws a stream failure only after the frames that arrived before it', async () => {
    const s = new PassThrough();
    const q = new FrameQueue(new FrameDecoder(), readableSource(s));
    s.write(frames()[1]);
    await new Promise((r) => setImmediate(r));
    s.destroy(new Error('reset'));
    assert.equal((await q.next()).kind, 'frame');
    await assert.rejects(q.next(), /reset/);
  });

  it('drain() drops everything until the peer hangs up', async () => {
    const s = new PassThrough();
    const q = new FrameQueue(new FrameDecoder(), readableSource(s));
    s.write(Buffer.concat(frames()));
    const drained = q.drain();
    s.write(Buffer.from('garbage that is never decoded'));
    s.end();
    await drained;
  });
});
