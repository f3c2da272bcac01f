/**
 * The replication stream end to end against the real filesystem store: a StreamSender and a
 * StreamReceiver over a Unix socket pair, full and incremental deltas with and without
 * compression, rejection of malformed frames with the store left intact, and resume after a cut
 * connection (same point in time: watermarks; new point in time: expected digests).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { chunkDigests } from '../../src/core/digest.ts';
import type { HavenError } from '../../src/core/errors.ts';
import { encodeFrame } from '../../src/protocol/codec.ts';
import { type SenderOptions, StreamReceiver, StreamSender } from '../../src/protocol/index.ts';
import { RawPeer } from '../../src/protocol/test-support/raw-peer.ts';
import { openFsStore, type Store } from '../../src/store/index.ts';
import {
  applyOps,
  C,
  checkGenerations,
  clone,
  content,
  imageDigestsOf,
  makeMeta,
  type Op,
  readImage,
  scratch,
  sendDelta,
  unixPair,
  wholeDisks,
} from './protocol-helpers.ts';

const VDA = 48 * C + 4096; // a short last chunk
const VDB = 16 * C;
const disks = [
  { name: 'vda', size: VDA },
  { name: 'vdb', size: VDB },
];

async function newStore(t: TestContext, name: string) {
  const dir = await scratch(t, name);
  const store = await openFsStore(join(dir, 'store'), { create: true });
  return { dir, store };
}

async function connect(
  dir: string,
  store: Store,
  so: SenderOptions = {},
  ro: { checkpointEveryBytes?: number } = {},
) {
  const [a, b] = await unixPair(dir);
  const receiver = new StreamReceiver(b, store, ro);
  const done = receiver.run().then(
    () => null,
    (e: HavenError) => e,
  );
  const sender = await StreamSender.connect(a, so);
  return { sender, done, socket: a };
}

describe('stream over a socket pair into the fs store', () => {
  for (const algorithm of ['zstd', 'none'] as const) {
    it(`full then incremental deltas, compression ${algorithm}`, async (t) => {
      const { dir, store } = await newStore(t, `full-${algorithm}`);
      const { sender, done } = await connect(dir, store, { compression: { algorithm, level: 1 } });
      const source = { vda: content(1, VDA), vdb: content(2, VDB) };
      const target = { vda: Buffer.alloc(VDA), vdb: Buffer.alloc(VDB) };
      const models = new Map<string, Record<string, Buffer>>();

      // Full copy, with a hole in vdb.
      const full: Op[] = [
        { disk: 'vda', kind: 'data', offset: 0, length: VDA },
        { disk: 'vdb', kind: 'data', offset: 0, length: 8 * C },
        { disk: 'vdb', kind: 'zero', offset: 8 * C, length: 8 * C },
      ];
      const opened = await sender.open(makeMeta('web', disks));
      assert.equal(opened.newest, null);
      const g1 = (await sendDelta(sender, makeMeta('web', disks), source, full))!;
      applyOps(target, source, full);
      models.set(g1.id, clone(target));
      assert.deepEqual(await checkGenerations(store, 'web', models), []);
      const wireAfterFull = sender.bytesOnWire;
      if (algorithm === 'zstd') assert.ok(wireAfterFull < (VDA + 8 * C) / 4, `wire ${wireAfterFull}`);
      else assert.ok(wireAfterFull > VDA + 8 * C);

      // Two incremental deltas: changed ranges (including the short last chunk) and a zeroed range.
      let base = g1;
      for (const [seed, ops] of [
        [
          3,
          [
            { disk: 'vda', kind: 'data', offset: 4 * C, length: 3 * C },
            { disk: 'vda', kind: 'zero', offset: 10 * C, length: 5 * C },
            { disk: 'vda', kind: 'data', offset: 48 * C, length: 4096 },
            { disk: 'vdb', kind: 'data', offset: 12 * C, length: C },
          ],
        ],
        [4, [{ disk: 'vdb', kind: 'data', offset: 0, length: 2 * C }]],
      ] as [number, Op[]][]) {
        for (const op of ops)
          if (op.kind === 'data') content(seed, op.length).copy(source[op.disk as 'vda'], op.offset);
        const meta = makeMeta('web', disks, {
          pointInTime: `p${seed}`,
          baseGenerationId: base.id,
          mode: 'incremental',
        });
        const o = await sender.open(meta);
        assert.equal(o.newest?.id, base.id);
        const before = sender.stats.dataBytes;
        const g = (await sendDelta(sender, meta, source, ops))!;
        assert.equal(
          sender.stats.dataBytes - before,
          ops.filter((x) => x.kind === 'data').reduce((n, x) => n + x.length, 0),
        );
        applyOps(target, source, ops);
        models.set(g.id, clone(target));
        base = g;
      }
      const m = await store.manifest('web');
      assert.equal(m?.generations.length, 2);
      assert.deepEqual(await checkGenerations(store, 'web', models), []);
      await sender.close();
      assert.equal(await done, null);
    });
  }

  it('verifies image digests at END_DELTA against what the generation will hold', async (t) => {
    const { dir, store } = await newStore(t, 'imagedigest');
    const { sender, done } = await connect(dir, store);
    const source = { vda: content(5, VDA), vdb: content(6, VDB) };
    const meta = makeMeta('web', disks);
    await sender.open(meta);
    const g1 = (await sendDelta(sender, meta, source, wholeDisks(source), { imageDigests: true }))!;

    // A resync that sends one changed chunk but claims a source image it did not send.
    const before = clone(source);
    content(7, C).copy(source.vda, 5 * C);
    const meta2 = makeMeta('web', disks, { pointInTime: 'p2', baseGenerationId: g1.id, mode: 'resync' });
    await sender.open(meta2);
    await sender.sendData('vda', 5 * C, source.vda.subarray(5 * C, 6 * C));
    sender.mark('vdb', VDB);
    const summary = { disks: { vda: { dataBytes: C, zeroBytes: 0 }, vdb: { dataBytes: 0, zeroBytes: 0 } } };
    const wrong = content(8, VDA);
    await assert.rejects(
      sender.endDelta(summary, { imageDigests: imageDigestsOf('blake3', { vda: wrong }) }),
      (e: HavenError) => e.code === 'PROTO_IMAGE_MISMATCH' && e.kind === 'integrity',
    );
    assert.deepEqual(
      (await store.manifest('web'))?.generations.map((g) => g.id),
      [g1.id],
    );
    assert.ok((await readImage(store, 'web', g1.id, 'vda')).equals(before.vda!));

    // The session goes on: the partial delta resumes and seals with the true image digests.
    const o = await sender.open(meta2);
    assert.equal(o.resume?.pointInTime, 'p2');
    assert.deepEqual(o.resume?.staged?.vda, { dataBytes: C, zeroBytes: 0 });
    sender.mark('vdb', VDB);
    await sender.endDelta(summary, { imageDigests: imageDigestsOf('blake3', source) });
    const g2 = await sender.commit();
    assert.ok((await readImage(store, 'web', g2.id, 'vda')).equals(source.vda));
    await sender.close();
    assert.equal(await done, null);
  });
});

describe('the receiver rejects malformed frames and leaves the fs store intact', () => {
  const disk = { name: 'vda', size: 16 * C };
  const header = (type: number, length: number, magic = 0x4856) => {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(magic, 0);
    h.writeUInt8(type, 2);
    h.writeUInt32BE(length, 4);
    return h;
  };
  const ext = (offset: number, data: Buffer, diskIndex = 0) =>
    RawPeer.dataExtent('blake3', C, diskIndex, offset, data);
  const tamper = (parts: Buffer[], fn: (head: Buffer, payload: Buffer) => void) => {
    const head = Buffer.from(parts[0]!);
    const payload = Buffer.from(parts[1]!);
    fn(head, payload);
    return [head, payload];
  };

  // Every kind of bad frame, sent inside an open incremental delta after a valid checkpoint.
  const cases: [string, string, () => Buffer[]][] = [
    ['bad magic', 'PROTO_BAD_MAGIC', () => [header(0x09, 0, 0x4855)]],
    ['unknown frame type', 'PROTO_UNKNOWN_FRAME', () => [header(0x66, 0)]],
    ['frame too large', 'PROTO_FRAME_TOO_LARGE', () => [header(0x09, 0x7fffffff)]],
    ['malformed body', 'PROTO_BAD_FRAME', () => [header(0x0c, 5), Buffer.from('{"a":')]],
    ['disk index out of range', 'PROTO_BAD_DISK', () => ext(C, content(20, C), 3)],
    ['offset beyond the disk', 'PROTO_BAD_RANGE', () => ext(16 * C, content(20, C))],
    ['length beyond the disk', 'PROTO_BAD_RANGE', () => ext(15 * C, content(20, 2 * C))],
    ['offset not chunk-aligned', 'PROTO_BAD_RANGE', () => ext(C + 4096, content(20, C))],
    ['length not chunk-aligned', 'PROTO_BAD_RANGE', () => ext(C, content(20, 3 * C - 512))],
    ['extent going backwards', 'PROTO_OUT_OF_ORDER', () => ext(0, content(20, C))],
    [
      'digest mismatch',
      'PROTO_DIGEST_MISMATCH',
      () => tamper(ext(C, content(20, C)), (_h, p) => p.fill(1, 0, 1)),
    ],
    [
      'bad compression',
      'PROTO_BAD_COMPRESSION',
      () =>
        tamper(ext(C, content(20, C)), (h) => {
          h.writeUInt8(1, 11);
        }),
    ],
    ['frame in the wrong state', 'PROTO_UNEXPECTED_FRAME', () => encodeFrame({ type: 'COMMIT', body: null })],
    [
      'duplicate OPEN',
      'PROTO_DUPLICATE_OPEN',
      () => encodeFrame({ type: 'OPEN', body: makeMeta('web', [disk]) }),
    ],
  ];

  it('rejects each with its code; the generations verify and a later run completes', async (t) => {
    const { dir, store } = await newStore(t, 'malformed');
    const source = { vda: content(21, disk.size) };
    const first = await connect(dir, store);
    await first.sender.open(makeMeta('web', [disk]));
    const g1 = (await sendDelta(first.sender, makeMeta('web', [disk]), source, wholeDisks(source)))!;
    await first.sender.close();
    await first.done;
    const models = new Map([[g1.id, clone(source)]]);

    for (const [i, [name, code, bytes]] of cases.entries()) {
      const [a, b] = await unixPair(dir);
      const done = new StreamReceiver(b, store, { checkpointEveryBytes: 1 }).run().then(
        () => null,
        (e: HavenError) => e,
      );
      const peer = new RawPeer(a);
      await peer.handshake();
      // A new point in time per case: the partial delta of the previous case is continued, but
      // its watermarks do not apply, so offset 0 is a valid start.
      await peer.open(
        makeMeta('web', [disk], { pointInTime: `bad-${i}`, baseGenerationId: g1.id, mode: 'incremental' }),
      );
      peer.send(...ext(0, content(22, C)));
      peer.sendFrame({ type: 'MARK', body: { disk: 0, offset: C } });
      await peer.expect('STAGED');
      peer.send(...bytes());
      const err = await peer.expect('ERROR');
      assert.equal(err.code, code, name);
      assert.equal(err.fatal, true, name);
      await peer.closed();
      assert.equal((await done)?.code, code, name);
      peer.stream.destroy();
      assert.deepEqual(
        (await store.manifest('web'))?.generations.map((g) => g.id),
        [g1.id],
        name,
      );
      assert.deepEqual(await checkGenerations(store, 'web', models), [], name);
    }

    // A stream cut inside a frame: the receiver sees a truncated frame; the store stays intact.
    {
      const [a, b] = await unixPair(dir);
      const done = new StreamReceiver(b, store).run().then(
        () => null,
        (e: HavenError) => e,
      );
      const peer = new RawPeer(a);
      await peer.handshake();
      await peer.open(
        makeMeta('web', [disk], { pointInTime: 'cut', baseGenerationId: g1.id, mode: 'incremental' }),
      );
      const [head, payload] = ext(0, content(23, C));
      a.end(Buffer.concat([head!, payload!.subarray(0, 1000)]));
      assert.equal((await done)?.code, 'PROTO_TRUNCATED');
      assert.deepEqual(await checkGenerations(store, 'web', models), []);
    }

    // After all that, a correct sender completes the next generation.
    const last = await connect(dir, store);
    const meta = makeMeta('web', [disk], {
      pointInTime: 'good',
      baseGenerationId: g1.id,
      mode: 'incremental',
    });
    const o = await last.sender.open(meta);
    assert.equal(o.resume?.pointInTime, 'cut');
    content(24, 2 * C).copy(source.vda, 4 * C);
    const ops: Op[] = [{ disk: 'vda', kind: 'data', offset: 0, length: disk.size }];
    const g2 = (await sendDelta(last.sender, meta, source, ops, { resume: o.resume }))!;
    models.set(g2.id, clone(source));
    assert.deepEqual(await checkGenerations(store, 'web', models), []);
    await last.sender.close();
    assert.equal(await last.done, null);
  });
});

describe('resume after a cut connection (fs store)', () => {
  for (const kind of ['first copy (direct)', 'incremental (staged)'] as const) {
    it(`${kind}: the second attempt sends only what was not staged`, async (t) => {
      const { dir, store } = await newStore(t, kind.startsWith('first') ? 'resume-direct' : 'resume-staged');
      const source = { vda: content(30, VDA), vdb: content(31, VDB) };
      let base: string | null = null;
      const models = new Map<string, Record<string, Buffer>>();
      if (kind.startsWith('incremental')) {
        const s = await connect(dir, store);
        await s.sender.open(makeMeta('web', disks));
        const g = (await sendDelta(s.sender, makeMeta('web', disks), clone(source), wholeDisks(source)))!;
        base = g.id;
        models.set(g.id, clone(source));
        await s.sender.close();
        await s.done;
        content(32, VDA).copy(source.vda);
        content(33, VDB).copy(source.vdb);
      }
      const meta = makeMeta('web', disks, {
        pointInTime: 'p2',
        baseGenerationId: base,
        mode: base ? 'incremental' : 'full',
      });
      const ops = wholeDisks(source).flatMap((op) => {
        const out: Op[] = [];
        for (let o = 0; o < op.length; o += 4 * C) {
          out.push({ ...op, offset: o, length: Math.min(4 * C, op.length - o) });
        }
        return out;
      });

      // First attempt: checkpoints every 8 chunks; the sender is killed (socket destroyed) in vdb.
      const one = await connect(dir, store, {}, { checkpointEveryBytes: 8 * C });
      const staged: Record<string, number>[] = [];
      one.sender.onStaged((w) => staged.push(w));
      await one.sender.open(meta);
      const cutAfter = ops.findIndex((op) => op.disk === 'vdb') + 1;
      for (const op of ops.slice(0, cutAfter)) {
        await one.sender.sendData(
          op.disk,
          op.offset,
          source[op.disk as 'vda'].subarray(op.offset, op.offset + op.length),
        );
        one.sender.mark(op.disk, op.offset + op.length);
      }
      // One more extent, staged but not marked: the resume sends it again (and counts it twice).
      const unmarked = ops[cutAfter]!;
      await one.sender.sendData(
        unmarked.disk,
        unmarked.offset,
        source[unmarked.disk as 'vda'].subarray(unmarked.offset, unmarked.offset + unmarked.length),
      );
      await one.sender.expectedDigests('vda', 0, 1);
      assert.ok(staged.length > 0);
      one.socket.destroy();
      assert.equal((await one.done)?.code, 'PROTO_CONNECTION_LOST');

      // Second attempt: OPEN tells what is durable; the sender skips it.
      const two = await connect(dir, store);
      const o = await two.sender.open(meta);
      assert.ok(o.resume, 'a partial delta to resume');
      assert.equal(o.resume.pointInTime, 'p2');
      assert.equal(o.resume.watermarks.vda, VDA);
      assert.equal(o.resume.watermarks.vdb, 4 * C);
      const rest = ops.filter((op) => op.offset >= (o.resume!.watermarks[op.disk] ?? 0));
      const g = (await sendDelta(two.sender, meta, source, rest, { resume: o.resume }))!;
      assert.equal(two.sender.stats.dataBytes, VDB - 4 * C);
      assert.ok(two.sender.bytesOnWire < VDB, `${two.sender.bytesOnWire} bytes on the wire`);
      models.set(g.id, clone(source));
      assert.deepEqual(await checkGenerations(store, 'web', models), []);
      await two.sender.close();
      assert.equal(await two.done, null);
    });
  }

  it('under a new point in time: only chunks whose expected digests differ are sent', async (t) => {
    const { dir, store } = await newStore(t, 'resume-newpit');
    const source = { vda: content(40, VDA) };
    const d1 = [{ name: 'vda', size: VDA }];
    const one = await connect(dir, store, {}, { checkpointEveryBytes: 1 });
    await one.sender.open(makeMeta('web', d1, { pointInTime: 'old' }));
    await one.sender.sendData('vda', 0, source.vda.subarray(0, 24 * C));
    one.sender.mark('vda', 24 * C);
    await one.sender.expectedDigests('vda', 0, 1);
    one.socket.destroy();
    await one.done;

    // The source moved on: three chunks in the already-sent half changed.
    for (const chunk of [2, 9, 17]) content(41 + chunk, C).copy(source.vda, chunk * C);
    const meta = makeMeta('web', d1, { pointInTime: 'new' });
    const two = await connect(dir, store);
    const o = await two.sender.open(meta);
    assert.equal(o.resume?.pointInTime, 'old');
    const n = Math.ceil(VDA / C);
    const expected = await two.sender.expectedDigests('vda', 0, n);
    const mine = chunkDigests('blake3', source.vda, C);
    let sent = 0;
    for (let i = 0; i < n; i++) {
      if (expected.subarray(i * 32, i * 32 + 32).equals(mine.subarray(i * 32, i * 32 + 32))) continue;
      const len = Math.min(C, VDA - i * C);
      await two.sender.sendData(
        'vda',
        i * C,
        source.vda.subarray(i * C, i * C + len),
        mine.subarray(i * 32, i * 32 + 32),
      );
      two.sender.mark('vda', i * C + len);
      sent += len;
    }
    assert.equal(sent, 3 * C + (VDA - 24 * C));
    const staged = o.resume?.staged?.vda ?? { dataBytes: 0, zeroBytes: 0 };
    await two.sender.endDelta(
      { disks: { vda: { dataBytes: staged.dataBytes + sent, zeroBytes: staged.zeroBytes } } },
      { imageDigests: imageDigestsOf('blake3', source) },
    );
    const g = await two.sender.commit();
    assert.ok((await readImage(store, 'web', g.id, 'vda')).equals(source.vda));
    await two.sender.close();
    await two.done;
  });
});
