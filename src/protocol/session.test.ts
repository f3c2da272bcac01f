/**
 * Sender and receiver together over a real TCP socket on loopback, with the in-memory store of
 * test-support (the integration tests repeat the important cases against the filesystem store).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunkDigests, rootDigest } from '../core/digest.ts';
import type { HavenError } from '../core/errors.ts';
import type { DeltaMeta } from '../store/types.ts';
import { encodeFrame } from './codec.ts';
import { type ReceiverOptions, StreamReceiver } from './receiver.ts';
import { type SenderOptions, StreamSender } from './sender.ts';
import { prng, sampleFrames } from './test-support/frames.ts';
import { MemoryStore } from './test-support/memory-store.ts';
import { RawPeer, socketPair } from './test-support/raw-peer.ts';

const C = 65536;
const SIZE = 40 * C + 4096; // a short last chunk

async function session(store: MemoryStore, so: SenderOptions = {}, ro: ReceiverOptions = {}) {
  const [a, b] = await socketPair();
  const receiver = new StreamReceiver(b, store, ro);
  const done = receiver.run();
  done.catch(() => {});
  const sender = await StreamSender.connect(a, so);
  return { sender, done, a, b };
}

function meta(o: Partial<DeltaMeta> = {}): DeltaMeta {
  return {
    server: 'web',
    job: 'nightly',
    copies: 2,
    disks: [
      { name: 'vda', size: SIZE },
      { name: 'vdb', size: 8 * C },
    ],
    sourceDefinition: '<domain type="qemu"/>',
    pointInTime: 'p1',
    takenAt: new Date().toISOString(),
    baseGenerationId: null,
    mode: 'full',
    ...o,
  };
}

/** Compressible but not trivial content. */
function content(seed: number, length: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i += 64) b.fill(Math.floor(r() * 256), i, Math.min(i + 64, length));
  return b;
}

async function sendWhole(sender: StreamSender, disk: string, img: Buffer) {
  await sender.sendData(disk, 0, img);
  sender.mark(disk, img.length);
}

describe('stream session (memory store)', () => {
  for (const compression of ['zstd', 'none'] as const) {
    it(`full then incremental deltas with compression ${compression}`, async () => {
      const store = new MemoryStore();
      const { sender, done } = await session(store, { compression: { algorithm: compression, level: 1 } });
      const vda = content(1, SIZE);
      const vdb = content(2, 8 * C);
      const o1 = await sender.open(meta());
      assert.equal(o1.newest, null);
      assert.equal(o1.resume, null);
      await sendWhole(sender, 'vda', vda);
      await sender.sendZero('vdb', 0, 4 * C);
      await sender.sendData('vdb', 4 * C, vdb.subarray(4 * C));
      sender.mark('vdb', 8 * C);
      await sender.endDelta({
        disks: { vda: { dataBytes: SIZE, zeroBytes: 0 }, vdb: { dataBytes: 4 * C, zeroBytes: 4 * C } },
      });
      const g1 = await sender.commit();
      assert.equal(g1.seq, 1);
      vdb.fill(0, 0, 4 * C);
      assert.ok(store.image('web', 'vda').equals(vda));
      assert.ok(store.image('web', 'vdb').equals(vdb));
      if (compression === 'zstd') assert.ok(sender.stats.payloadBytes < sender.stats.dataBytes / 4);
      else assert.equal(sender.stats.payloadBytes, sender.stats.dataBytes);

      // Incremental: a few changed chunks, one of them the short last chunk, one zeroed range.
      const o2 = await sender.open(meta({ pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' }));
      assert.equal(o2.newest?.id, g1.id);
      const patch = content(3, 3 * C);
      await sender.sendData('vda', 5 * C, patch);
      await sender.sendZero('vda', 10 * C, 2 * C);
      const tail = content(4, 4096);
      await sender.sendData('vda', 40 * C, tail);
      sender.mark('vda', SIZE);
      await sender.endDelta({
        disks: { vda: { dataBytes: 3 * C + 4096, zeroBytes: 2 * C }, vdb: { dataBytes: 0, zeroBytes: 0 } },
      });
      const g2 = await sender.commit();
      assert.equal(g2.seq, 1);
      patch.copy(vda, 5 * C);
      vda.fill(0, 10 * C, 12 * C);
      tail.copy(vda, 40 * C);
      assert.ok(store.image('web', 'vda').equals(vda));
      assert.ok(store.image('web', 'vdb').equals(vdb));
      assert.deepEqual(
        (await store.manifest('web'))!.generations.map((g) => g.id),
        [g2.id, g1.id],
      );
      await sender.close();
      await done;
    });
  }

  it('keeps data intact while slow writes overlap the next frames (pooled buffers)', async () => {
    const store = new MemoryStore({ writeDelayMs: 5 });
    const size = 40 * 1024 * 1024;
    const img = Buffer.concat([
      content(20, size / 2),
      Buffer.from(content(21, size / 2).map((b, i) => (b + i) & 255)),
    ]);
    for (const algorithm of ['zstd', 'none'] as const) {
      const { sender, done } = await session(store, { compression: { algorithm, level: 1 } });
      const m = meta({ server: `big-${algorithm}`, disks: [{ name: 'vda', size }] });
      await sender.open(m);
      await sendWhole(sender, 'vda', img);
      await sender.endDelta({ disks: { vda: { dataBytes: size, zeroBytes: 0 } } });
      await sender.commit();
      assert.ok(store.image(m.server, 'vda').equals(img), algorithm);
      await sender.close();
      await done;
    }
  });

  it('hands a data buffer back once the stream has written every frame of it, and only then', async () => {
    const store = new MemoryStore();
    // Small frames, so one sendData is several frames and several write callbacks.
    const { sender, done } = await session(store, {
      maxExtentBytes: 2 * C,
      compression: { algorithm: 'none', level: 0 },
    });
    const released: string[] = [];
    // Refused before any frame (no delta open): released all the same.
    await assert.rejects(sender.sendData('vda', 0, Buffer.alloc(C), undefined, () => released.push('early')));
    await sender.open(meta());
    const img = content(7, SIZE);
    const pieces = [0, 10 * C, 20 * C, 30 * C, SIZE];
    for (let i = 0; i + 1 < pieces.length; i++) {
      // A copy of the bytes, overwritten once released: a buffer reused too early corrupts the copy.
      const buf = Buffer.from(img.subarray(pieces[i], pieces[i + 1]));
      await sender.sendData('vda', pieces[i]!, buf, undefined, () => {
        released.push(`piece ${i}`);
        buf.fill(0xaa);
      });
    }
    sender.mark('vda', SIZE);
    await sender.sendZero('vdb', 0, 8 * C);
    sender.mark('vdb', 8 * C);
    await sender.endDelta({
      disks: { vda: { dataBytes: SIZE, zeroBytes: 0 }, vdb: { dataBytes: 0, zeroBytes: 8 * C } },
    });
    await sender.commit();
    assert.deepEqual(released, ['early', 'piece 0', 'piece 1', 'piece 2', 'piece 3']);
    assert.ok(store.image('web', 'vda').equals(img));
    await sender.close();
    await done;
  });

  it('carries several servers and queries on one connection', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store);
    assert.equal(await sender.query('db'), null);
    for (const server of ['web', 'db']) {
      await sender.open(meta({ server, disks: [{ name: 'vda', size: 2 * C }] }));
      await sendWhole(sender, 'vda', content(server.length, 2 * C));
      await sender.endDelta({ disks: { vda: { dataBytes: 2 * C, zeroBytes: 0 } } });
      await sender.commit();
    }
    assert.equal((await sender.query('db'))?.seq, 1);
    assert.deepEqual((await store.listServers()).sort(), ['db', 'web']);
    await sender.close();
    await done;
  });

  it('answers pipelined digest requests with what the target will hold', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store);
    const vda = content(5, SIZE);
    await sender.open(meta({ disks: [{ name: 'vda', size: SIZE }] }));
    await sender.sendData('vda', 0, vda.subarray(0, 10 * C));
    const parts = await Promise.all([
      sender.expectedDigests('vda', 0, 10),
      sender.expectedDigests('vda', 10, 31),
      sender.expectedDigests('vda', 3, 1),
    ]);
    const expected = Buffer.concat([vda.subarray(0, 10 * C), Buffer.alloc(SIZE - 10 * C)]);
    const want = chunkDigests('blake3', expected, C);
    assert.ok(parts[0]!.equals(want.subarray(0, 10 * 32)));
    assert.ok(parts[1]!.equals(want.subarray(10 * 32)));
    assert.ok(parts[2]!.equals(want.subarray(3 * 32, 4 * 32)));
    await sender.close();
    await done.catch(() => {});
  });

  it('resumes after a cut connection without resending what was staged', async () => {
    const store = new MemoryStore();
    const vda = content(6, SIZE);
    const first = await session(
      store,
      { compression: { algorithm: 'none', level: 0 } },
      { checkpointEveryBytes: 8 * C },
    );
    const staged: Record<string, number>[] = [];
    first.sender.onStaged((w) => staged.push(w));
    await first.sender.open(meta({ disks: [{ name: 'vda', size: SIZE }] }));
    for (let off = 0; off < 20 * C; off += 2 * C) {
      await first.sender.sendData('vda', off, vda.subarray(off, off + 2 * C));
      first.sender.mark('vda', off + 2 * C);
    }
    await first.sender.expectedDigests('vda', 0, 1); // a round trip: every STAGED so far has arrived
    assert.ok(staged.length >= 2);
    assert.equal(staged.at(-1)!.vda, 16 * C);
    // Sent but not marked: not covered by any watermark.
    await first.sender.sendData('vda', 20 * C, vda.subarray(20 * C, 22 * C));
    await first.sender.expectedDigests('vda', 0, 1);
    first.a.destroy();
    await assert.rejects(first.done, (e: HavenError) => e.code === 'PROTO_CONNECTION_LOST');
    // The receiver made what was marked durable when the connection went away.
    const durable = 20 * C;

    const second = await session(store, { compression: { algorithm: 'none', level: 0 } });
    const o = await second.sender.open(meta({ disks: [{ name: 'vda', size: SIZE }] }));
    assert.ok(o.resume);
    assert.equal(o.resume.pointInTime, 'p1');
    assert.equal(o.resume.watermarks.vda, durable);
    // Sending below the watermark again is refused locally: nothing of it goes on the wire.
    const before = second.sender.bytesOnWire;
    await assert.rejects(
      second.sender.sendData('vda', 0, vda.subarray(0, C)),
      (e: HavenError) => e.code === 'PROTO_OUT_OF_ORDER',
    );
    assert.equal(second.sender.bytesOnWire, before);
    await second.sender.sendData('vda', durable, vda.subarray(durable));
    second.sender.mark('vda', SIZE);
    assert.equal(second.sender.stats.dataBytes, SIZE - durable);
    // The default summary: what the partial held (20C..22C included, sent but never marked) plus
    // what this attempt sent. Bytes sent twice count twice (DeltaSummary).
    await second.sender.endDelta();
    await second.sender.commit();
    assert.ok(store.image('web', 'vda').equals(vda));
    await second.sender.close();
    await second.done;
  });

  it('reports a base mismatch with the newest generation, and the session continues', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store);
    await sender.open(meta({ disks: [{ name: 'vda', size: C }] }));
    await sendWhole(sender, 'vda', content(7, C));
    await sender.endDelta({ disks: { vda: { dataBytes: C, zeroBytes: 0 } } });
    const g1 = await sender.commit();
    const err = await sender
      .open(meta({ disks: [{ name: 'vda', size: C }], baseGenerationId: 'bogus', mode: 'incremental' }))
      .then(
        () => null,
        (e: HavenError) => e,
      );
    assert.equal(err?.code, 'STORE_BASE_MISMATCH');
    assert.equal(err?.kind, 'conflict');
    assert.equal((err?.details?.newest as { id: string } | undefined)?.id, g1.id);
    const o = await sender.open(
      meta({ disks: [{ name: 'vda', size: C }], baseGenerationId: g1.id, mode: 'resync' }),
    );
    assert.equal(o.newest?.id, g1.id);
    await sender.close();
    await done;
  });

  it('refuses a second writer for the same server (STORE_LOCKED) and bad names (BAD_NAME)', async () => {
    const store = new MemoryStore();
    const one = await session(store);
    const two = await session(store);
    await one.sender.open(meta());
    await assert.rejects(two.sender.open(meta()), (e: HavenError) => e.code === 'STORE_LOCKED');
    await assert.rejects(
      two.sender.open(meta({ server: '../etc' })),
      (e: HavenError) => e.code === 'BAD_NAME',
    );
    await one.sender.close();
    await two.sender.open(meta());
    await two.sender.close();
    await Promise.all([one.done, two.done]);
  });

  it('abort keeps the partial delta for resume; abort with discard drops it', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store, {}, { checkpointEveryBytes: 1 });
    await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    await sender.sendData('vda', 0, content(8, 2 * C));
    sender.mark('vda', 2 * C);
    await sender.abort(false);
    const again = await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    assert.equal(again.resume?.watermarks.vda, 2 * C);
    await sender.abort(true);
    const fresh = await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    assert.equal(fresh.resume, null);
    await sender.close();
    await done;
  });

  it('checks image digests at END_DELTA: a mismatch is refused and nothing is sealed', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store);
    const img = content(9, 4 * C);
    const good = rootDigest('blake3', chunkDigests('blake3', img, C));
    await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    await sendWhole(sender, 'vda', img);
    const summary = { disks: { vda: { dataBytes: 4 * C, zeroBytes: 0 } } };
    await assert.rejects(
      sender.endDelta(summary, { imageDigests: { vda: Buffer.alloc(32, 1) } }),
      (e: HavenError) => e.code === 'PROTO_IMAGE_MISMATCH' && e.kind === 'integrity',
    );
    assert.ok(!store.calls.includes('seal'));
    const o = await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    assert.equal(o.resume?.pointInTime, 'p1');
    // Everything was marked before END_DELTA, so the refused delta kept it all.
    assert.equal(o.resume?.watermarks.vda, 4 * C);
    sender.mark('vda', 4 * C);
    await sender.endDelta(summary, { imageDigests: { vda: good } });
    await sender.commit();
    assert.ok(store.image('web', 'vda').equals(img));
    await sender.close();
    await done;
  });

  it('requires the token when configured', async () => {
    const store = new MemoryStore();
    for (const token of [undefined, 'wrong']) {
      const [a, b] = await socketPair();
      const done = new StreamReceiver(b, store, { token: 's3cret' }).run();
      const err = await StreamSender.connect(a, token ? { token } : {}).then(
        () => null,
        (e: HavenError) => e,
      );
      assert.equal(err?.code, 'PROTO_AUTH_FAILED');
      assert.equal(err?.kind, 'refused');
      await assert.rejects(done, (e: HavenError) => e.code === 'PROTO_AUTH_FAILED');
    }
    const { sender, done } = await session(store, { token: 's3cret' }, { token: 's3cret' });
    await sender.close();
    await done;
  });

  it('refuses a digest algorithm the store does not use', async () => {
    const store = new MemoryStore({ digest: 'blake3' });
    const [a, b] = await socketPair();
    const done = new StreamReceiver(b, store).run();
    await assert.rejects(
      StreamSender.connect(a, { digest: 'sha256' }),
      (e: HavenError) => e.code === 'PROTO_CAPABILITY',
    );
    await assert.rejects(done);
    const s2 = await session(new MemoryStore({ digest: 'sha256' }), { digest: 'sha256' });
    assert.equal(s2.sender.digestAlgorithm, 'sha256');
    await s2.sender.close();
  });

  it('refuses misuse locally without sending anything', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store);
    await assert.rejects(
      sender.sendData('vda', 0, Buffer.alloc(C)),
      (e: HavenError) => e.code === 'PROTO_SENDER_MISUSE',
    );
    await assert.rejects(sender.commit(), (e: HavenError) => e.code === 'PROTO_SENDER_MISUSE');
    await sender.open(meta());
    const before = sender.bytesOnWire;
    for (const [off, len, code] of [
      [100, C, 'PROTO_BAD_RANGE'],
      [0, C + 1, 'PROTO_BAD_RANGE'],
      [SIZE, C, 'PROTO_BAD_RANGE'],
    ] as const) {
      await assert.rejects(
        sender.sendData('vda', off, Buffer.alloc(len)),
        (e: HavenError) => e.code === code,
      );
    }
    await assert.rejects(
      sender.sendData('vdx', 0, Buffer.alloc(C)),
      (e: HavenError) => e.code === 'PROTO_BAD_DISK',
    );
    assert.throws(
      () => sender.mark('vda', 7),
      (e: HavenError) => e.code === 'PROTO_BAD_RANGE',
    );
    assert.equal(sender.bytesOnWire, before);
    await sender.close();
    await done;
  });
});

describe('session edges (memory store)', () => {
  it('the summary defaults to what was staged before plus what this attempt sent', async () => {
    const store = new MemoryStore();
    const one = await session(store, {}, { checkpointEveryBytes: 1 });
    const img = content(30, 8 * C);
    const m = meta({ disks: [{ name: 'vda', size: 8 * C }] });
    await one.sender.open(m);
    await one.sender.sendData('vda', 0, img.subarray(0, 3 * C));
    one.sender.mark('vda', 3 * C);
    await one.sender.abort(false);
    const o = await one.sender.open(m);
    assert.equal(o.resume?.watermarks.vda, 3 * C);
    await one.sender.sendZero('vda', 3 * C, C);
    await one.sender.sendData('vda', 4 * C, img.subarray(4 * C));
    one.sender.mark('vda', 8 * C);
    await one.sender.endDelta();
    await one.sender.commit();
    const want = Buffer.from(img);
    want.fill(0, 3 * C, 4 * C);
    assert.ok(store.image('web', 'vda').equals(want));
    await one.sender.close();
    await one.done;
  });

  it('refuses overlapping sends (frames must go out in order)', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store, { maxQueuedBytes: 1 });
    await sender.open(meta({ disks: [{ name: 'vda', size: 16 * C }] }));
    const first = sender.sendData('vda', 0, content(31, 8 * C));
    await assert.rejects(
      sender.sendData('vda', 8 * C, content(32, C)),
      (e: HavenError) => e.code === 'PROTO_SENDER_MISUSE',
    );
    assert.throws(
      () => sender.mark('vda', C),
      (e: HavenError) => e.code === 'PROTO_SENDER_MISUSE',
    );
    await first;
    sender.mark('vda', 8 * C);
    await sender.close();
    await done;
  });

  it('the receiver gives up on a peer that sends no HELLO; the sender on a receiver that never answers', async () => {
    const [a, b] = await socketPair();
    const started = Date.now();
    await assert.rejects(
      new StreamReceiver(b, new MemoryStore(), { helloTimeoutMs: 200 }).run(),
      (e: HavenError) => e.code === 'PROTO_TIMEOUT',
    );
    assert.ok(Date.now() - started < 10_000);
    a.destroy();
    const [c, d] = await socketPair();
    d.on('data', () => {});
    await assert.rejects(
      StreamSender.connect(c, { handshakeTimeoutMs: 200 }),
      (e: HavenError) => e.code === 'PROTO_TIMEOUT',
    );
    d.destroy();
  });

  it('closes an open delta whose sender went silent (idle timeout), keeping what was marked', async () => {
    const store = new MemoryStore();
    const { sender, done } = await session(store, {}, { idleTimeoutMs: 300 });
    await sender.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    await sender.sendData('vda', 0, content(34, 2 * C));
    sender.mark('vda', 2 * C);
    await sender.expectedDigests('vda', 0, 1);
    const err = await done.then(
      () => null,
      (e: HavenError) => e,
    );
    assert.equal(err?.code, 'PROTO_TIMEOUT');
    assert.ok(store.calls.includes('close'));
    assert.deepEqual(store.servers.get('web')?.partial?.watermarks, { vda: 2 * C });
    // The sender learns it at its next round trip.
    await assert.rejects(
      sender.expectedDigests('vda', 0, 1),
      (e: HavenError) => e.code === 'PROTO_CONNECTION_LOST',
    );
    await sender.close();
  });

  it('refuses zstd payloads when HELLO did not offer zstd', async () => {
    const store = new MemoryStore();
    const [a, b] = await socketPair();
    const done = new StreamReceiver(b, store).run().then(
      () => null,
      (e: HavenError) => e,
    );
    const peer = new RawPeer(a);
    const hello = sampleFrames().find((f) => f.type === 'HELLO')!;
    peer.sendFrame({
      ...hello,
      body: { ...hello.body, compression: ['none'], token: undefined },
    } as typeof hello);
    const w = await peer.expect('WELCOME');
    assert.deepEqual(w.compression, ['none']);
    await peer.open(meta({ disks: [{ name: 'vda', size: 4 * C }] }));
    peer.send(...RawPeer.dataExtent('blake3', C, 0, 0, content(33, C), true));
    assert.equal((await peer.expect('ERROR')).code, 'PROTO_BAD_COMPRESSION');
    assert.equal((await done)?.code, 'PROTO_BAD_COMPRESSION');
    a.destroy();
  });
});

describe('receiver rejects malformed frames (memory store)', () => {
  const disk = { name: 'vda', size: 16 * C };
  const base = content(10, disk.size);

  /** A store with one committed generation, and a raw peer inside an open incremental delta. */
  async function setup() {
    const store = new MemoryStore();
    const s = await session(store);
    await s.sender.open(meta({ disks: [disk] }));
    await sendWhole(s.sender, 'vda', base);
    await s.sender.endDelta({ disks: { vda: { dataBytes: disk.size, zeroBytes: 0 } } });
    const g1 = await s.sender.commit();
    await s.sender.close();
    await s.done;
    const [a, b] = await socketPair();
    const done = new StreamReceiver(b, store, { checkpointEveryBytes: 1 }).run().then(
      () => null,
      (e: HavenError) => e,
    );
    const peer = new RawPeer(a);
    await peer.handshake();
    await peer.open(meta({ disks: [disk], pointInTime: 'p2', baseGenerationId: g1.id, mode: 'incremental' }));
    // Something valid and checkpointed first, so "nothing lost" is meaningful.
    peer.send(...RawPeer.dataExtent('blake3', C, 0, 0, content(11, C)));
    peer.sendFrame({ type: 'MARK', body: { disk: 0, offset: C } });
    await peer.expect('STAGED');
    return { store, peer, done, g1 };
  }

  async function expectRejected(bytes: Buffer[], code: string) {
    const { store, peer, done, g1 } = await setup();
    peer.send(...bytes);
    const err = await peer.expect('ERROR');
    assert.equal(err.code, code);
    assert.equal(err.fatal, true);
    assert.ok(err.hint);
    await peer.closed();
    assert.equal((await done)?.code, code);
    // The delta was closed, not sealed; the committed generation is untouched.
    assert.ok(store.calls.includes('close'));
    assert.ok(!store.calls.slice(store.calls.lastIndexOf('open web')).includes('seal'));
    const m = await store.manifest('web');
    assert.deepEqual(
      m!.generations.map((g) => g.id),
      [g1.id],
    );
    assert.ok(store.image('web', 'vda').equals(base));
    peer.stream.destroy();
  }

  const header = (type: number, length: number, magic = 0x4856, flags = 0) => {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(magic, 0);
    h.writeUInt8(type, 2);
    h.writeUInt8(flags, 3);
    h.writeUInt32BE(length, 4);
    return h;
  };
  const ext = (offset: number, data: Buffer, diskIndex = 0) =>
    RawPeer.dataExtent('blake3', C, diskIndex, offset, data);

  it('bad magic', () => expectRejected([header(0x13, 0, 0x1234)], 'PROTO_BAD_MAGIC'));
  it('unknown frame type', () => expectRejected([header(0x77, 0)], 'PROTO_UNKNOWN_FRAME'));
  it('frame too large', () => expectRejected([header(0x09, 64 * 1024 * 1024)], 'PROTO_FRAME_TOO_LARGE'));
  it('non-zero flags', () => expectRejected([header(0x13, 0, 0x4856, 4)], 'PROTO_BAD_FRAME'));
  it('malformed JSON body', () => expectRejected([header(0x0c, 3), Buffer.from('{{{')], 'PROTO_BAD_FRAME'));
  it('disk index out of range', () => expectRejected(ext(C, content(12, C), 1), 'PROTO_BAD_DISK'));
  it('offset beyond the disk', () => expectRejected(ext(16 * C, content(12, C)), 'PROTO_BAD_RANGE'));
  it('offset not chunk-aligned', () => expectRejected(ext(C + 512, content(12, C)), 'PROTO_BAD_RANGE'));
  it('length not chunk-aligned', () => expectRejected(ext(C, content(12, C - 1)), 'PROTO_BAD_RANGE'));
  it('extent out of order', () => expectRejected(ext(0, content(12, C)), 'PROTO_OUT_OF_ORDER'));
  it('digest mismatch', () => {
    const [head, payload] = ext(C, content(12, C));
    const bad = Buffer.from(payload!);
    bad[100]! ^= 1;
    return expectRejected([head!, bad], 'PROTO_DIGEST_MISMATCH');
  });
  it('bad compression', () => {
    const [head] = ext(C, content(12, C));
    const h = Buffer.from(head!);
    h.writeUInt8(1, 8 + 3); // claims zstd
    h.writeUInt32BE(52 + 100, 4);
    return expectRejected([h, Buffer.alloc(100, 0x42)], 'PROTO_BAD_COMPRESSION');
  });
  it('frame in the wrong state (COMMIT before END_DELTA)', () =>
    expectRejected(encodeFrame({ type: 'COMMIT', body: null }), 'PROTO_UNEXPECTED_FRAME'));
  it('a frame only the receiver sends', () =>
    expectRejected(encodeFrame({ type: 'ABORTED', body: null }), 'PROTO_UNEXPECTED_FRAME'));
  it('duplicate OPEN', () =>
    expectRejected(encodeFrame({ type: 'OPEN', body: meta({ disks: [disk] }) }), 'PROTO_DUPLICATE_OPEN'));
  it('duplicate HELLO', () => {
    const hello = sampleFrames().find((f) => f.type === 'HELLO')!;
    return expectRejected(encodeFrame(hello), 'PROTO_DUPLICATE_HELLO');
  });
  it('END_DELTA whose totals disagree is refused without sealing (session continues)', async () => {
    const { store, peer, done } = await setup();
    peer.sendFrame({
      type: 'END_DELTA',
      body: {
        summary: { disks: { vda: { dataBytes: C, zeroBytes: 0 } } },
        attempt: { disks: { vda: { frames: 2, dataBytes: 2 * C, zeroBytes: 0 } }, digest: '0'.repeat(64) },
      },
    });
    const err = await peer.expect('ERROR');
    assert.equal(err.code, 'PROTO_DELTA_MISMATCH');
    assert.equal(err.fatal, false);
    assert.ok(!store.calls.slice(store.calls.lastIndexOf('open web')).includes('seal'));
    peer.sendFrame({ type: 'BYE', body: null });
    await peer.expect('BYE');
    assert.equal(await done, null);
  });
  it('a stream cut inside a frame', async () => {
    const { store, peer, done, g1 } = await setup();
    const [head] = ext(C, content(12, C));
    peer.stream.end(head);
    assert.equal((await done)?.code, 'PROTO_TRUNCATED');
    assert.ok(store.calls.includes('close'));
    assert.deepEqual(
      (await store.manifest('web'))!.generations.map((g) => g.id),
      [g1.id],
    );
  });
});
