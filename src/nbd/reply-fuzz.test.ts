/**
 * Fuzzing the reply parser and the transmission state machine (and the handshake): thousands of
 * random and mutated byte streams, cut into random slices, some received through the zero-copy
 * path. Whatever the bytes, feeding them must never throw, and once the stream ends every request
 * must be settled, every failure an NbdError: typed errors, never a crash or a hang.
 *
 * The PRNG is seeded (HAVEN_FUZZ_SEED overrides the default), and every assertion names its case
 * number and seed, so a failure reproduces exactly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as C from './constants.ts';
import { NbdError } from './errors.ts';
import { Handshake } from './handshake.ts';
import {
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeMetaContextReply,
  encodeOptionReply,
} from './option-codec.ts';
import {
  encodeBlockStatusChunk,
  encodeDataChunk,
  encodeErrorChunk,
  encodeErrorOffsetChunk,
  encodeHoleChunk,
  encodeNoneChunk,
  encodeSimpleReply,
} from './reply-encoder.ts';
import { Transmission } from './transmission.ts';

const SEED = Number(process.env.HAVEN_FUZZ_SEED ?? 0x5eed2024);

/** mulberry32: small, fast, deterministic. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    bool: (p = 0.5) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes: (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}
type Rng = ReturnType<typeof prng>;

const CONTEXTS = new Map([
  ['base:allocation', 3],
  ['qemu:dirty-bitmap:b0', 9],
]);
const EXPORT_SIZE = 1 << 20;
const COMMANDS = [
  C.NBD_CMD_READ,
  C.NBD_CMD_READ,
  C.NBD_CMD_BLOCK_STATUS,
  C.NBD_CMD_WRITE,
  C.NBD_CMD_FLUSH,
  C.NBD_CMD_TRIM,
  C.NBD_CMD_WRITE_ZEROES,
];

interface Req {
  cookie: number;
  command: number;
  flags: number;
  offset: number;
  length: number;
  target?: Buffer;
  settled: boolean;
  error?: unknown;
}

function submitRandom(rng: Rng, tx: Transmission, n: number): Req[] {
  const reqs: Req[] = [];
  for (let i = 0; i < n; i++) {
    const command = rng.pick(COMMANDS);
    const length = command === C.NBD_CMD_FLUSH ? 0 : 1 + rng.int(4096);
    const offset = command === C.NBD_CMD_FLUSH ? 0 : rng.int(EXPORT_SIZE - length);
    const flags = command === C.NBD_CMD_BLOCK_STATUS && rng.bool(0.3) ? C.NBD_CMD_FLAG_REQ_ONE : 0;
    const target = command === C.NBD_CMD_READ ? Buffer.alloc(length) : undefined;
    const s = tx.submit({ command, flags, offset, length, target });
    const r: Req = { cookie: s.cookie, command, flags, offset, length, target, settled: false };
    s.promise.then(
      () => {
        r.settled = true;
      },
      (e) => {
        r.settled = true;
        r.error = e;
      },
    );
    reqs.push(r);
  }
  return reqs;
}

/** A valid reply (as chunks) for one request; `expectError` says whether it reports an error. */
function validReply(rng: Rng, r: Req, structured: boolean): { chunks: Buffer[]; expectError: boolean } {
  if (!structured) {
    if (r.command === C.NBD_CMD_BLOCK_STATUS)
      return { chunks: [encodeSimpleReply(r.cookie, C.NBD_EPERM)], expectError: true };
    const err = rng.bool(0.2) ? rng.pick([C.NBD_EIO, C.NBD_ENOSPC, C.NBD_EPERM]) : 0;
    const data = r.command === C.NBD_CMD_READ && err === 0 ? rng.bytes(r.length) : undefined;
    return { chunks: [encodeSimpleReply(r.cookie, err, data)], expectError: err !== 0 };
  }
  if (rng.bool(0.15)) {
    return {
      chunks: [encodeErrorChunk(r.cookie, rng.pick([C.NBD_EIO, C.NBD_ENOSPC]), rng.bool() ? 'oops' : '')],
      expectError: true,
    };
  }
  const chunks: Buffer[] = [];
  if (r.command === C.NBD_CMD_READ) {
    let pos = r.offset;
    const end = r.offset + r.length;
    const pieces: Buffer[] = [];
    while (pos < end) {
      const len = Math.min(end - pos, 1 + rng.int(1500));
      pieces.push(
        rng.bool(0.3) ? encodeHoleChunk(r.cookie, pos, len) : encodeDataChunk(r.cookie, pos, rng.bytes(len)),
      );
      pos += len;
    }
    // Content chunks may come in any order (proto.md).
    for (let i = pieces.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
    }
    chunks.push(...pieces);
    if (rng.bool(0.1)) {
      chunks.push(encodeErrorOffsetChunk(r.cookie, C.NBD_EIO, r.offset + rng.int(r.length)));
      chunks.push(encodeNoneChunk(r.cookie));
      return { chunks, expectError: true };
    }
  } else if (r.command === C.NBD_CMD_BLOCK_STATUS) {
    for (const id of CONTEXTS.values()) {
      const n = r.flags & C.NBD_CMD_FLAG_REQ_ONE ? 1 : 1 + rng.int(4);
      const ext: { length: number; flags: number }[] = [];
      let sum = 0;
      for (let i = 0; i < n && sum < r.length; i++) {
        const last = i === n - 1 || r.flags & C.NBD_CMD_FLAG_REQ_ONE;
        const room = r.length - sum;
        const len = last
          ? 1 + rng.int(r.flags & C.NBD_CMD_FLAG_REQ_ONE ? room : room + 5000)
          : 1 + rng.int(Math.max(1, room - 1));
        if (!last && sum + len >= r.length) break;
        ext.push({ length: len, flags: rng.int(4) });
        sum += len;
      }
      if (ext.length === 0) ext.push({ length: 1 + rng.int(r.length), flags: rng.int(4) });
      chunks.push(encodeBlockStatusChunk(r.cookie, id, ext));
    }
  }
  // End with a NONE chunk, or mark the last chunk DONE.
  if (chunks.length > 0 && rng.bool()) {
    const last = chunks[chunks.length - 1]!;
    last.writeUInt16BE(last.readUInt16BE(4) | 1, 4);
  } else chunks.push(encodeNoneChunk(r.cookie));
  return { chunks, expectError: false };
}

/** Interleaves per-request chunk lists, keeping each request's own order. */
function interleave(rng: Rng, lists: Buffer[][]): Buffer {
  const queues = lists.map((l) => [...l]).filter((l) => l.length > 0);
  const out: Buffer[] = [];
  while (queues.length > 0) {
    const i = rng.int(queues.length);
    out.push(queues[i]!.shift()!);
    if (queues[i]!.length === 0) queues.splice(i, 1);
  }
  return Buffer.concat(out);
}

function mutate(rng: Rng, s: Buffer): Buffer {
  const b = Buffer.from(s);
  switch (rng.int(7)) {
    case 0:
      return b.subarray(0, rng.int(b.length)); // truncate
    case 1: {
      const n = 1 + rng.int(4);
      for (let i = 0; i < n; i++) b[rng.int(b.length)] = rng.int(256); // random bytes
      return b;
    }
    case 2: {
      // a field-sized value at a random position: lengths, offsets, cookies, magics
      if (b.length < 4) return b;
      const at = rng.int(b.length - 3);
      b.writeUInt32BE(rng.pick([0, 1, 0xffffffff, 0x80000000, 0x668e33ef, 0x67446698, rng.int(2 ** 32)]), at);
      return b;
    }
    case 3: {
      const at = rng.int(b.length);
      return Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(40)), b.subarray(at)]); // insert
    }
    case 4: {
      const at = rng.int(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(40))]); // delete
    }
    case 5: {
      const at = rng.int(b.length);
      const len = 1 + rng.int(60);
      return Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]); // duplicate
    }
    default: {
      const i = rng.int(b.length);
      b[i] = (b[i] ?? 0) ^ (1 << rng.int(8)); // one bit
      return b;
    }
  }
}

/** Feeds the stream in random slices; sometimes through the zero-copy path. */
function feedRandomly(rng: Rng, tx: Transmission, stream: Buffer): void {
  let p = 0;
  while (p < stream.length) {
    const view = rng.bool(0.5) ? tx.directView() : undefined;
    if (view && view.length > 0) {
      const n = Math.min(view.length, stream.length - p, 1 + rng.int(view.length));
      stream.copy(view, 0, p, p + n);
      tx.feedDirect(n);
      p += n;
      continue;
    }
    const n = Math.min(stream.length - p, rng.bool(0.3) ? 1 + rng.int(8) : 1 + rng.int(2000));
    tx.feed(stream, p, p + n);
    p += n;
  }
}

const settle = () => new Promise((r) => setImmediate(r));

async function checkAllSettled(reqs: Req[], tx: Transmission, label: string): Promise<void> {
  await settle();
  for (const r of reqs) {
    assert.ok(r.settled, `${label}: request ${r.cookie} (cmd ${r.command}) never settled`);
    if (r.error !== undefined)
      assert.ok(r.error instanceof NbdError, `${label}: untyped failure ${String(r.error)}`);
  }
  assert.equal(tx.pendingCount, 0, `${label}: requests still pending`);
}

describe(`reply fuzz (seed ${SEED})`, () => {
  it('valid interleaved streams settle every request as generated', async () => {
    const rng = prng(SEED);
    for (let c = 0; c < 500; c++) {
      const structured = rng.bool(0.8);
      const tx = new Transmission({ structured, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
      const reqs = submitRandom(rng, tx, 1 + rng.int(10));
      const replies = reqs.map((r) => validReply(rng, r, structured));
      feedRandomly(
        rng,
        tx,
        interleave(
          rng,
          replies.map((x) => x.chunks),
        ),
      );
      await settle();
      const label = `case ${c} seed ${SEED}`;
      assert.equal(tx.state, 'open', `${label}: ${tx.brokenBy?.message}`);
      reqs.forEach((r, i) => {
        assert.ok(r.settled, `${label}: request ${i} not settled`);
        assert.equal(r.error !== undefined, replies[i]!.expectError, `${label}: request ${i} outcome`);
        if (r.error) assert.equal((r.error as NbdError).connectionUsable, true, label);
      });
      tx.end();
      await checkAllSettled(reqs, tx, label);
    }
  });

  it('random bytes end in typed errors, never a crash or a hang', async () => {
    const rng = prng(SEED + 1);
    for (let c = 0; c < 3000; c++) {
      const tx = new Transmission({ structured: rng.bool(0.8), contexts: CONTEXTS, exportSize: EXPORT_SIZE });
      const reqs = submitRandom(rng, tx, rng.int(6));
      // Random bytes, sometimes behind a valid-looking header prefix to get past the magic.
      const prefix = rng.bool(0.5) ? Buffer.from(rng.pick(['668e33ef', '67446698']), 'hex') : Buffer.alloc(0);
      const stream = Buffer.concat([prefix, rng.bytes(rng.int(300))]);
      assert.doesNotThrow(() => feedRandomly(rng, tx, stream), `case ${c}`);
      assert.doesNotThrow(() => tx.end(), `case ${c}`);
      await checkAllSettled(reqs, tx, `random case ${c} seed ${SEED + 1}`);
      if (reqs.length > 0 && stream.length > 0) assert.equal(tx.state, 'broken', `case ${c}`);
    }
  });

  it('mutated and truncated valid streams end in typed errors, never a crash or a hang', async () => {
    const rng = prng(SEED + 2);
    let broken = 0;
    for (let c = 0; c < 3000; c++) {
      const structured = rng.bool(0.8);
      const tx = new Transmission({ structured, contexts: CONTEXTS, exportSize: EXPORT_SIZE });
      const reqs = submitRandom(rng, tx, 1 + rng.int(8));
      const stream = interleave(
        rng,
        reqs.map((r) => validReply(rng, r, structured).chunks),
      );
      let mutated = mutate(rng, stream);
      if (rng.bool(0.3)) mutated = mutate(rng, mutated);
      const label = `mutated case ${c} seed ${SEED + 2}`;
      assert.doesNotThrow(() => feedRandomly(rng, tx, mutated), label);
      assert.doesNotThrow(() => tx.end(), label);
      await checkAllSettled(reqs, tx, label);
      if (tx.state === 'broken') broken++;
    }
    // The mutations must actually reach the error paths.
    assert.ok(broken > 1000, `only ${broken} of 3000 mutated streams broke the connection`);
  });
});

describe(`handshake fuzz (seed ${SEED})`, () => {
  function validServerBytes(rng: Rng): Buffer {
    return Buffer.concat([
      encodeGreeting(C.NBD_FLAG_FIXED_NEWSTYLE | (rng.bool() ? C.NBD_FLAG_NO_ZEROES : 0)),
      encodeOptionReply(C.NBD_OPT_STRUCTURED_REPLY, C.NBD_REP_ACK),
      encodeOptionReply(
        C.NBD_OPT_SET_META_CONTEXT,
        C.NBD_REP_META_CONTEXT,
        encodeMetaContextReply(3, 'base:allocation'),
      ),
      encodeOptionReply(C.NBD_OPT_SET_META_CONTEXT, C.NBD_REP_ACK),
      encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoExport(EXPORT_SIZE, 0x3ef)),
      encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_INFO, encodeInfoBlockSize(1, 4096, 1 << 25)),
      encodeOptionReply(C.NBD_OPT_GO, C.NBD_REP_ACK),
    ]);
  }

  it('random, mutated and truncated server bytes give done, an NbdError, or a wait for more', () => {
    const rng = prng(SEED + 3);
    let done = 0;
    let failed = 0;
    for (let c = 0; c < 3000; c++) {
      const h = new Handshake({ exportName: 'disk', metaContexts: ['base:allocation'] });
      const valid = validServerBytes(rng);
      const stream = c % 10 === 0 ? valid : c % 3 === 0 ? rng.bytes(rng.int(200)) : mutate(rng, valid);
      let p = 0;
      let outcome: 'done' | 'error' | 'more' = 'more';
      while (p < stream.length && outcome === 'more') {
        const n = 1 + rng.int(64);
        const step = h.feed(stream.subarray(p, p + n));
        p += n;
        for (const b of step.send) assert.ok(Buffer.isBuffer(b));
        if (step.error) {
          assert.ok(step.error instanceof NbdError, `case ${c}: untyped ${String(step.error)}`);
          assert.equal(step.error.connectionUsable, false);
          outcome = 'error';
        } else if (step.done) outcome = 'done';
      }
      if (c % 10 === 0) assert.equal(outcome, 'done', `case ${c}: the valid handshake must succeed`);
      if (outcome === 'done') done++;
      if (outcome === 'error') failed++;
    }
    assert.ok(done >= 300 && failed > 1000, `done ${done}, failed ${failed}`);
  });
});
