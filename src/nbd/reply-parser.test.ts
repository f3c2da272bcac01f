/**
 * The reply parser, exercised through its real sink (the Transmission state machine): a stream of
 * every reply form, fed whole, split at every byte boundary, and byte by byte, must give the same
 * results; each protocol violation must give its typed error and break the connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as C from './constants.ts';
import { NbdError, NbdServerError } from './errors.ts';
import {
  encodeBlockStatusChunk,
  encodeChunk,
  encodeDataChunk,
  encodeErrorChunk,
  encodeErrorOffsetChunk,
  encodeHoleChunk,
  encodeNoneChunk,
  encodeSimpleReply,
} from './reply-encoder.ts';
import { Transmission } from './transmission.ts';

const CONTEXTS = new Map([
  ['base:allocation', 1],
  ['qemu:dirty-bitmap:b0', 7],
]);
const EXPORT_SIZE = 1 << 20;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  return b;
}

type Outcome =
  | { ok: true; value: unknown }
  | { ok: false; code: string; usable: boolean; errorOffset?: unknown };

function track(p: Promise<unknown>): { outcome?: Outcome } {
  const box: { outcome?: Outcome } = {};
  p.then(
    (value) => {
      box.outcome = { ok: true, value: value instanceof Map ? Object.fromEntries(value) : value };
    },
    (e: NbdError) => {
      box.outcome = {
        ok: false,
        code: e.code,
        usable: e.connectionUsable,
        errorOffset: e.details?.errorOffset,
      };
    },
  );
  return box;
}

const settle = () => new Promise((r) => setImmediate(r));

/** A structured-reply scenario with every chunk type, chunks of different requests interleaved. */
function structuredScenario() {
  const tx = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
  const a = Buffer.alloc(4096, 0xee);
  const b = Buffer.alloc(512, 0xee);
  const c = Buffer.alloc(4096, 0xee);
  const r1 = tx.submit({ command: C.NBD_CMD_READ, flags: 0, offset: 0, length: 4096, target: a });
  const r2 = tx.submit({ command: C.NBD_CMD_READ, flags: 0, offset: 8192, length: 512, target: b });
  const r3 = tx.submit({ command: C.NBD_CMD_BLOCK_STATUS, flags: 0, offset: 0, length: 65536 });
  const r4 = tx.submit({ command: C.NBD_CMD_WRITE, flags: 0, offset: 0, length: 4096 });
  const r5 = tx.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 });
  const r6 = tx.submit({ command: C.NBD_CMD_TRIM, flags: 0, offset: 0, length: 8192 });
  const r7 = tx.submit({ command: C.NBD_CMD_READ, flags: 0, offset: 4096, length: 4096, target: c });
  const r8 = tx.submit({ command: C.NBD_CMD_WRITE_ZEROES, flags: 0, offset: 0, length: 4096 });
  const r9 = tx.submit({
    command: C.NBD_CMD_BLOCK_STATUS,
    flags: C.NBD_CMD_FLAG_REQ_ONE,
    offset: 4096,
    length: 4096,
  });
  const d1 = pattern(1000, 1);
  const d3 = pattern(1000, 3);
  const stream = Buffer.concat([
    encodeDataChunk(r1.cookie, 0, d1),
    encodeBlockStatusChunk(r3.cookie, 7, [
      { length: 4096, flags: 1 },
      { length: 61440, flags: 0 },
    ]),
    encodeDataChunk(r2.cookie, 8448, pattern(256, 2)),
    encodeHoleChunk(r1.cookie, 1000, 2096),
    encodeSimpleReply(r5.cookie, 0),
    encodeChunk(r4.cookie, C.NBD_REPLY_TYPE_NONE, C.NBD_REPLY_FLAG_DONE),
    encodeDataChunk(r2.cookie, 8192, pattern(256, 4)),
    // The final extent may reach past the request (proto.md), here even past the export's end.
    encodeBlockStatusChunk(
      r3.cookie,
      1,
      [
        { length: 8192, flags: 0 },
        { length: 2 * EXPORT_SIZE, flags: 3 },
      ],
      true,
    ),
    encodeErrorChunk(r6.cookie, C.NBD_EIO, 'disk on fire'),
    encodeErrorOffsetChunk(r7.cookie, C.NBD_EIO, 5000, 'bad sector'),
    encodeNoneChunk(r2.cookie),
    encodeDataChunk(r1.cookie, 3096, d3, true),
    encodeSimpleReply(r8.cookie, C.NBD_ENOSPC),
    encodeNoneChunk(r7.cookie),
    encodeBlockStatusChunk(r9.cookie, 1, [{ length: 4096, flags: 2 }]),
    encodeBlockStatusChunk(r9.cookie, 7, [{ length: 512, flags: 1 }], true),
  ]);
  const boxes = [r1, r2, r3, r4, r5, r6, r7, r8, r9].map((r) => track(r.promise));
  return { tx, stream, boxes, buffers: [a, b, c], d1, d3 };
}

async function runStructured(feed: (tx: Transmission, stream: Buffer) => void) {
  const s = structuredScenario();
  feed(s.tx, s.stream);
  await settle();
  return {
    outcomes: s.boxes.map((b) => b.outcome),
    buffers: s.buffers.map((b) => b.toString('hex')),
    state: s.tx.state,
    pending: s.tx.pendingCount,
    s,
  };
}

describe('reply parser: structured replies', () => {
  it('decodes every chunk type into the right results', async () => {
    const r = await runStructured((tx, stream) => tx.feed(stream));
    const { s } = r;
    assert.equal(r.state, 'open');
    assert.equal(r.pending, 0);
    const [a, b] = s.buffers as [Buffer, Buffer, Buffer];
    assert.deepEqual(a.subarray(0, 1000), s.d1);
    assert.ok(
      a.subarray(1000, 3096).every((x) => x === 0),
      'hole reads as zeroes',
    );
    assert.deepEqual(a.subarray(3096), s.d3);
    assert.deepEqual(b, Buffer.concat([pattern(256, 4), pattern(256, 2)]));
    const o = r.outcomes;
    assert.deepEqual(o[0], { ok: true, value: undefined });
    assert.deepEqual(o[2], {
      ok: true,
      value: {
        'qemu:dirty-bitmap:b0': [
          { length: 4096, flags: 1 },
          { length: 61440, flags: 0 },
        ],
        // clipped at the export's end, not at the request's
        'base:allocation': [
          { length: 8192, flags: 0 },
          { length: EXPORT_SIZE - 8192, flags: 3 },
        ],
      },
    });
    assert.deepEqual(o[3], { ok: true, value: undefined });
    assert.deepEqual(o[4], { ok: true, value: undefined });
    assert.deepEqual(o[5], { ok: false, code: 'NBD_EIO', usable: true, errorOffset: undefined });
    assert.deepEqual(o[6], { ok: false, code: 'NBD_EIO', usable: true, errorOffset: 5000 });
    assert.deepEqual(o[7], { ok: false, code: 'NBD_ENOSPC', usable: true, errorOffset: undefined });
    assert.deepEqual(o[8], {
      ok: true,
      value: {
        'base:allocation': [{ length: 4096, flags: 2 }],
        'qemu:dirty-bitmap:b0': [{ length: 512, flags: 1 }],
      },
    });
  });

  it('gives identical results when the stream is split at every byte boundary', async () => {
    const whole = await runStructured((tx, stream) => tx.feed(stream));
    const len = structuredScenario().stream.length;
    for (let cut = 1; cut < len; cut++) {
      const r = await runStructured((tx, stream) => {
        tx.feed(stream, 0, cut);
        tx.feed(stream, cut, stream.length);
      });
      assert.deepEqual(r.outcomes, whole.outcomes, `split at ${cut}`);
      assert.deepEqual(r.buffers, whole.buffers, `split at ${cut}`);
    }
  });

  it('gives identical results fed one byte at a time, and in 3-way splits', async () => {
    const whole = await runStructured((tx, stream) => tx.feed(stream));
    const bytewise = await runStructured((tx, stream) => {
      for (let i = 0; i < stream.length; i++) tx.feed(stream.subarray(i, i + 1));
    });
    assert.deepEqual(bytewise.outcomes, whole.outcomes);
    assert.deepEqual(bytewise.buffers, whole.buffers);
    const len = structuredScenario().stream.length;
    for (let i = 1; i < len; i += 97) {
      for (let j = i + 1; j < len; j += 31) {
        const r = await runStructured((tx, stream) => {
          tx.feed(stream.subarray(0, i));
          tx.feed(stream.subarray(i, j));
          tx.feed(stream.subarray(j));
        });
        assert.deepEqual(r.outcomes, whole.outcomes, `split at ${i}, ${j}`);
      }
    }
  });

  it('receives data directly into the destination (directView / feedDirect)', async () => {
    const tx = new Transmission({ structured: true, contexts: new Map(), exportSize: EXPORT_SIZE });
    const target = Buffer.alloc(10000, 0xee);
    const r = tx.submit({
      command: C.NBD_CMD_READ,
      flags: 0,
      offset: 4096,
      length: 8192,
      target,
      targetOffset: 1000,
    });
    const box = track(r.promise);
    const data = pattern(8192, 9);
    const chunk = encodeDataChunk(r.cookie, 4096, data, true);
    assert.equal(tx.directView(), undefined, 'no view before the data starts');
    tx.feed(chunk, 0, 28 + 100); // header, offset and 100 bytes through the parser
    for (const n of [1000, 4000, 3092]) {
      const view = tx.directView()!;
      assert.equal(view.buffer, target.buffer, 'the view is the caller buffer itself');
      const from = 28 + (8192 - view.length);
      chunk.copy(view, 0, from, from + n); // what the kernel would do
      tx.feedDirect(n);
    }
    await settle();
    assert.deepEqual(box.outcome, { ok: true, value: undefined });
    assert.deepEqual(target.subarray(1000, 1000 + 8192), data);
    assert.ok(
      target.subarray(0, 1000).every((x) => x === 0xee) && target.subarray(9192).every((x) => x === 0xee),
    );
  });
});

describe('reply parser: simple replies (no structured replies negotiated)', () => {
  async function run(feed: (tx: Transmission, s: Buffer) => void) {
    const tx = new Transmission({ structured: false, contexts: new Map(), exportSize: EXPORT_SIZE });
    const t1 = Buffer.alloc(3000);
    const t2 = Buffer.alloc(100);
    const r1 = tx.submit({ command: C.NBD_CMD_READ, flags: 0, offset: 0, length: 3000, target: t1 });
    const r2 = tx.submit({ command: C.NBD_CMD_WRITE, flags: 0, offset: 0, length: 10 });
    const r3 = tx.submit({ command: C.NBD_CMD_READ, flags: 0, offset: 100, length: 100, target: t2 });
    const r4 = tx.submit({ command: C.NBD_CMD_TRIM, flags: 0, offset: 0, length: 10 });
    const stream = Buffer.concat([
      encodeSimpleReply(r2.cookie, 0),
      encodeSimpleReply(r3.cookie, C.NBD_EPERM), // an error reply carries no data
      encodeSimpleReply(r1.cookie, 0, pattern(3000, 5)),
      encodeSimpleReply(r4.cookie, 0),
    ]);
    const boxes = [r1, r2, r3, r4].map((r) => track(r.promise));
    feed(tx, stream);
    await settle();
    return { outcomes: boxes.map((b) => b.outcome), t1: t1.toString('hex'), len: stream.length };
  }

  it('matches payloads to READ requests, at every split point', async () => {
    const whole = await run((tx, s) => tx.feed(s));
    assert.deepEqual(whole.outcomes, [
      { ok: true, value: undefined },
      { ok: true, value: undefined },
      { ok: false, code: 'NBD_EPERM', usable: true, errorOffset: undefined },
      { ok: true, value: undefined },
    ]);
    assert.equal(whole.t1, pattern(3000, 5).toString('hex'));
    for (let cut = 1; cut < whole.len; cut += 1) {
      const r = await run((tx, s) => {
        tx.feed(s.subarray(0, cut));
        tx.feed(s.subarray(cut));
      });
      assert.deepEqual(r, whole, `split at ${cut}`);
    }
  });
});

/** Runs a single-violation case: returns the error that failed the pending requests. */
async function violation(
  build: (
    tx: Transmission,
    c: (cmd: number, offset: number, length: number, flags?: number) => number,
  ) => Buffer,
  structured = true,
) {
  const tx = new Transmission({ structured, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
  const promises: Promise<unknown>[] = [];
  const submit = (command: number, offset: number, length: number, flags = 0) => {
    const s = tx.submit({
      command,
      flags,
      offset,
      length,
      target: command === C.NBD_CMD_READ ? Buffer.alloc(length) : undefined,
    });
    promises.push(s.promise);
    return s.cookie;
  };
  const stream = build(tx, submit);
  // A bystander request that the violation must fail as well.
  const bystander = track(tx.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 }).promise);
  tx.feed(stream);
  const results = await Promise.allSettled(promises);
  await settle();
  const errors = results.map((r) => (r.status === 'rejected' ? (r.reason as NbdError) : undefined));
  return { tx, errors, bystander: bystander.outcome };
}

function assertBroken(v: Awaited<ReturnType<typeof violation>>, code: string) {
  assert.equal(v.tx.state, 'broken');
  assert.equal(v.tx.brokenBy?.code, code);
  assert.equal(v.tx.brokenBy?.connectionUsable, false);
  assert.ok(v.tx.brokenBy instanceof NbdError);
  assert.deepEqual(v.bystander, { ok: false, code, usable: false, errorOffset: undefined });
  assert.throws(
    () => v.tx.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 }),
    (e: NbdError) => e.code === 'NBD_CONNECTION_UNUSABLE' && (e.cause as NbdError).code === code,
  );
}

describe('reply parser: protocol violations break the connection with typed errors', () => {
  it('bad magic', async () => {
    const v = await violation((_tx, c) => {
      c(C.NBD_CMD_READ, 0, 512);
      return Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    assertBroken(v, 'NBD_BAD_MAGIC');
    assert.equal(v.errors[0]?.code, 'NBD_BAD_MAGIC');
  });

  it('unknown cookie, including one above 2^32', async () => {
    assertBroken(await violation(() => encodeNoneChunk(999)), 'NBD_UNKNOWN_COOKIE');
    assertBroken(
      await violation((_tx, c) => {
        const k = c(C.NBD_CMD_WRITE, 0, 1);
        const r = encodeSimpleReply(k, 0);
        r.writeUInt32BE(1, 8); // high word of the cookie
        return r;
      }),
      'NBD_UNKNOWN_COOKIE',
    );
  });

  it('a reply for a request that already completed', async () => {
    const v = await violation((_tx, c) => {
      const k = c(C.NBD_CMD_WRITE, 0, 1);
      return Buffer.concat([encodeSimpleReply(k, 0), encodeSimpleReply(k, 0)]);
    });
    assertBroken(v, 'NBD_UNKNOWN_COOKIE');
  });

  it('data, holes and error offsets outside the request overrun it', async () => {
    for (const build of [
      (k: number) => encodeDataChunk(k, 4096 + 3584, Buffer.alloc(1024), true),
      (k: number) => encodeDataChunk(k, 0, Buffer.alloc(10), true),
      (k: number) => encodeHoleChunk(k, 4096, 8192, true),
      (k: number) => encodeErrorOffsetChunk(k, C.NBD_EIO, 9000, '', true),
    ]) {
      const v = await violation((_tx, c) => build(c(C.NBD_CMD_READ, 4096, 4096)));
      assertBroken(v, 'NBD_REPLY_OVERRUN');
    }
  });

  it('block status describing more than asked (before its final extent) overruns', async () => {
    const v = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096), 1, [
        { length: 4096, flags: 0 },
        { length: 4096, flags: 1 },
      ]),
    );
    assertBroken(v, 'NBD_REPLY_OVERRUN');
    const one = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096, C.NBD_CMD_FLAG_REQ_ONE), 1, [
        { length: 8192, flags: 0 },
      ]),
    );
    assertBroken(one, 'NBD_REPLY_OVERRUN');
    const two = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 8192, C.NBD_CMD_FLAG_REQ_ONE), 1, [
        { length: 512, flags: 0 },
        { length: 512, flags: 1 },
      ]),
    );
    assertBroken(two, 'NBD_BAD_REPLY');
    const zero = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 8192), 1, [{ length: 0, flags: 0 }]),
    );
    assertBroken(zero, 'NBD_BAD_REPLY');
  });

  it('a read that ends without all its bytes is a short reply', async () => {
    const v = await violation((_tx, c) => {
      const k = c(C.NBD_CMD_READ, 0, 4096);
      return Buffer.concat([encodeDataChunk(k, 0, Buffer.alloc(1024)), encodeNoneChunk(k)]);
    });
    assertBroken(v, 'NBD_SHORT_REPLY');
  });

  it('overlapping read chunks', async () => {
    const v = await violation((_tx, c) => {
      const k = c(C.NBD_CMD_READ, 0, 4096);
      return Buffer.concat([
        encodeDataChunk(k, 2048, Buffer.alloc(2048)),
        encodeHoleChunk(k, 0, 2049),
        encodeNoneChunk(k),
      ]);
    });
    assertBroken(v, 'NBD_BAD_REPLY');
  });

  it('malformed chunks: NONE without DONE or with payload, wrong command, unknown type, short data', async () => {
    const cases: ((c: (cmd: number, o: number, l: number) => number) => Buffer)[] = [
      (c) => encodeChunk(c(C.NBD_CMD_WRITE, 0, 1), C.NBD_REPLY_TYPE_NONE, 0),
      (c) =>
        encodeChunk(c(C.NBD_CMD_WRITE, 0, 1), C.NBD_REPLY_TYPE_NONE, C.NBD_REPLY_FLAG_DONE, Buffer.alloc(4)),
      (c) => encodeDataChunk(c(C.NBD_CMD_WRITE, 0, 4096), 0, Buffer.alloc(16), true),
      (c) => encodeHoleChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096), 0, 16, true),
      (c) => encodeBlockStatusChunk(c(C.NBD_CMD_READ, 0, 4096), 1, [{ length: 512, flags: 0 }], true),
      (c) => encodeChunk(c(C.NBD_CMD_WRITE, 0, 1), 77, C.NBD_REPLY_FLAG_DONE),
      (c) =>
        encodeChunk(
          c(C.NBD_CMD_READ, 0, 4096),
          C.NBD_REPLY_TYPE_OFFSET_DATA,
          C.NBD_REPLY_FLAG_DONE,
          Buffer.alloc(8),
        ),
      (c) => encodeChunk(c(C.NBD_CMD_READ, 0, 4096), 2, C.NBD_REPLY_FLAG_DONE, Buffer.alloc(11)),
      (c) => encodeChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096), 5, C.NBD_REPLY_FLAG_DONE, Buffer.alloc(13)),
      (c) => {
        // error message longer than the chunk
        const e = encodeErrorChunk(c(C.NBD_CMD_WRITE, 0, 1), C.NBD_EIO, 'abc');
        e.writeUInt16BE(100, 24);
        return e;
      },
      (c) => encodeChunk(c(C.NBD_CMD_WRITE, 0, 1), 0x8001, C.NBD_REPLY_FLAG_DONE, Buffer.alloc(5)),
    ];
    for (const [i, build] of cases.entries()) {
      const v = await violation((_tx, c) => build(c));
      assert.equal(v.tx.brokenBy?.code, 'NBD_BAD_REPLY', `case ${i}`);
      assertBroken(v, 'NBD_BAD_REPLY');
    }
  });

  it('reply forms that contradict the negotiation', async () => {
    // structured chunk without structured replies
    assertBroken(
      await violation((_tx, c) => encodeNoneChunk(c(C.NBD_CMD_WRITE, 0, 1)), false),
      'NBD_BAD_REPLY',
    );
    // simple reply to READ with structured replies
    assertBroken(
      await violation((_tx, c) => encodeSimpleReply(c(C.NBD_CMD_READ, 0, 16), 0, Buffer.alloc(16))),
      'NBD_BAD_REPLY',
    );
    // successful simple reply to BLOCK_STATUS
    assertBroken(
      await violation((_tx, c) => encodeSimpleReply(c(C.NBD_CMD_BLOCK_STATUS, 0, 16), 0)),
      'NBD_BAD_REPLY',
    );
  });

  it('block status for an unknown context, twice for one context, or missing one', async () => {
    const unknown = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096), 99, [{ length: 4096, flags: 0 }], true),
    );
    assertBroken(unknown, 'NBD_BAD_REPLY');
    const twice = await violation((_tx, c) => {
      const k = c(C.NBD_CMD_BLOCK_STATUS, 0, 4096);
      return Buffer.concat([
        encodeBlockStatusChunk(k, 1, [{ length: 4096, flags: 0 }]),
        encodeBlockStatusChunk(k, 1, [{ length: 4096, flags: 0 }], true),
      ]);
    });
    assertBroken(twice, 'NBD_BAD_REPLY');
    const missing = await violation((_tx, c) =>
      encodeBlockStatusChunk(c(C.NBD_CMD_BLOCK_STATUS, 0, 4096), 1, [{ length: 4096, flags: 0 }], true),
    );
    assertBroken(missing, 'NBD_BAD_REPLY');
  });

  it('the stream ending inside a reply is truncation; with requests pending, a lost connection', async () => {
    const tx = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
    const r = tx.submit({
      command: C.NBD_CMD_READ,
      flags: 0,
      offset: 0,
      length: 4096,
      target: Buffer.alloc(4096),
    });
    const box = track(r.promise);
    tx.feed(encodeDataChunk(r.cookie, 0, Buffer.alloc(4096), true).subarray(0, 100));
    tx.end();
    await settle();
    assert.deepEqual(box.outcome, {
      ok: false,
      code: 'NBD_TRUNCATED',
      usable: false,
      errorOffset: undefined,
    });
    assert.equal(tx.state, 'broken');

    const tx2 = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
    const box2 = track(tx2.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 }).promise);
    tx2.end();
    await settle();
    assert.deepEqual(box2.outcome, {
      ok: false,
      code: 'NBD_CONNECTION_LOST',
      usable: false,
      errorOffset: undefined,
    });

    const tx3 = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
    tx3.end();
    assert.equal(tx3.state, 'broken', 'an idle connection closed by the server cannot be used either');
    assert.throws(() => tx3.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 }), NbdError);
  });

  it('after a violation further input is ignored and nothing settles twice', async () => {
    const v = await violation((_tx, c) => {
      const k = c(C.NBD_CMD_WRITE, 0, 1);
      return Buffer.concat([Buffer.from('garbage!'), encodeSimpleReply(k, 0)]);
    });
    assertBroken(v, 'NBD_BAD_MAGIC');
    v.tx.feed(encodeSimpleReply(1, 0));
    v.tx.end();
    assert.equal(v.tx.brokenBy?.code, 'NBD_BAD_MAGIC');
  });
});

describe('server error replies leave the connection usable', () => {
  it('an error chunk of unknown type still errors just that request', async () => {
    const tx = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
    const w = tx.submit({ command: C.NBD_CMD_WRITE, flags: 0, offset: 0, length: 1 });
    const box = track(w.promise);
    const p = Buffer.alloc(6 + 3);
    p.writeUInt32BE(C.NBD_EIO, 0);
    p.writeUInt16BE(3, 4);
    p.write('abc', 6);
    tx.feed(encodeChunk(w.cookie, 0x8077, C.NBD_REPLY_FLAG_DONE, p));
    await settle();
    assert.deepEqual(box.outcome, { ok: false, code: 'NBD_EIO', usable: true, errorOffset: undefined });
    assert.equal(tx.state, 'open');
    const f = tx.submit({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 });
    tx.feed(encodeSimpleReply(f.cookie, 0));
    await f.promise;
  });

  it('unexpected errno values count as EINVAL; the message and errno are kept', async () => {
    const tx = new Transmission({ structured: true, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
    const w = tx.submit({ command: C.NBD_CMD_TRIM, flags: 0, offset: 512, length: 1024 });
    tx.feed(encodeErrorChunk(w.cookie, 4242, 'strange'));
    const e = (await w.promise.catch((x) => x)) as NbdServerError;
    assert.ok(e instanceof NbdServerError);
    assert.equal(e.code, 'NBD_EINVAL');
    assert.equal(e.details?.serverMessage, 'strange');
    assert.equal(e.details?.offset, 512);
    assert.match(e.message, /TRIM \[512, \+1024\)/);
  });
});
