/**
 * The NBD client against nbdkit, a server nobody here wrote (issue 13): its memory and
 * sparse-random plugins for data, and its error, delay and blocksize filters for failures,
 * latency and block size constraints. The reference for bytes is nbdcopy (libnbd) reading the same
 * server; for maps, nbdinfo; for what reached the server, nbdkit's own log filter.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import { mapExtents } from '../../src/nbd/extents.ts';
import { NbdPool } from '../../src/nbd/pool.ts';
import {
  connectOptions,
  MiB,
  type NbdkitServer,
  nbdinfoMap,
  nbdkit,
  prng,
  scratch,
  sh,
  uriOf,
} from './nbd-helpers.ts';

/** The export's bytes as nbdcopy (libnbd) reads them from the same server. */
async function nbdcopyBytes(dir: string, server: NbdkitServer): Promise<Buffer> {
  const out = join(dir, `copy-${Math.random().toString(36).slice(2)}.raw`);
  await sh('nbdcopy', uriOf(server), out);
  return readFileSync(out);
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  const rnd = prng(seed);
  for (let i = 0; i < length; i += 512) b.fill(rnd(256), i, Math.min(i + 512, length));
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One request as nbdkit's log filter wrote it. */
interface Logged {
  op: string;
  offset: number;
  count: number;
}

function loggedRequests(logFile: string): Logged[] {
  const out: Logged[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const m = / (Read|Write|Zero|Trim|Extents|Cache) id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+)/.exec(
      line,
    );
    if (m) out.push({ op: m[1]!, offset: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}

describe('NBD client against nbdkit: memory plugin', () => {
  it('writes, zeroes and trims are what nbdcopy reads back; the map is what nbdinfo says', async (t) => {
    const dir = scratch(t);
    const size = 48 * MiB;
    const server = await nbdkit(t, dir, ['memory', String(size)]);
    const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['base:allocation'] });
    t.after(() => c.close());
    assert.equal(c.size, size);
    const model = Buffer.alloc(size);
    const rnd = prng(13);
    const writes: Promise<void>[] = [];
    // Non-overlapping writes of every size, all in flight at once.
    for (let i = 0, off = 0; i < 60 && off < size - 2 * MiB; i++) {
      const len = 1 + rnd(MiB);
      const data = pattern(len, i);
      data.copy(model, off);
      writes.push(c.write(off, data));
      off += len + rnd(64 * 1024);
    }
    await Promise.all(writes);
    // One write over the 32 MiB a request may carry: split, and reassembled by the server.
    const big = pattern(40 * MiB, 99);
    big.copy(model, 6 * MiB);
    await c.write(6 * MiB, big);
    await c.writeZeroes(10 * MiB, 3 * MiB);
    model.fill(0, 10 * MiB, 13 * MiB);
    await c.trim(20 * MiB, 2 * MiB); // the memory plugin trims to zeroes
    model.fill(0, 20 * MiB, 22 * MiB);
    await c.flush();
    assert.ok((await c.read(0, size)).equals(model), 'our reads');
    assert.ok((await nbdcopyBytes(dir, server)).equals(model), "nbdcopy's reads");
    const ours: { offset: number; length: number; flags: number }[] = [];
    for await (const e of mapExtents(c, 'base:allocation')) ours.push(e);
    assert.deepEqual(ours, await nbdinfoMap(uriOf(server)));
    assert.equal(c.pendingCount, 0);
  });
});

describe('NBD client against nbdkit: sparse-random plugin', () => {
  it('reads equal nbdcopy byte for byte, deterministic by seed, over one connection and a pool', async (t) => {
    const dir = scratch(t);
    // random-content: every byte random (by default a block repeats one byte, which would hide
    // bytes landing at the wrong place within it).
    const args = (seed: number) => [
      'sparse-random',
      '96M',
      `seed=${seed}`,
      'percent=20',
      'runlength=1048576',
      'random-content=true',
    ];
    const server = await nbdkit(t, dir, args(4242));
    const again = await nbdkit(t, dir, args(4242));
    const other = await nbdkit(t, dir, args(4243));
    const reference = await nbdcopyBytes(dir, server);
    assert.equal(reference.length, 96 * MiB);

    const c = await NbdClient.connect({
      ...connectOptions(server),
      maxInFlight: 16,
      metaContexts: ['base:allocation'],
    });
    t.after(() => c.close());
    // 256 KiB reads, 16 in flight (the engine's pattern), into one buffer.
    const got = Buffer.alloc(c.size);
    const reads: Promise<void>[] = [];
    for (let off = 0; off < c.size; off += 256 * 1024) reads.push(c.readInto(off, got, off, 256 * 1024));
    await Promise.all(reads);
    assert.equal(sha(got), sha(reference), 'pipelined reads differ from nbdcopy');
    // Reads of any size at any 4 KiB block. (The plugin makes a block's bytes from the request
    // that reads it: a read starting inside a block gets other bytes, from qemu-io as from us.)
    const rnd = prng(7);
    for (let i = 0; i < 100; i++) {
      const len = 4096 * (1 + rnd(170));
      const off = 4096 * rnd((c.size - len) / 4096);
      assert.ok((await c.read(off, len)).equals(reference.subarray(off, off + len)), `[${off}, +${len})`);
    }
    const ours: { offset: number; length: number; flags: number }[] = [];
    for await (const e of mapExtents(c, 'base:allocation', { step: 8 * MiB })) ours.push(e);
    assert.deepEqual(ours, await nbdinfoMap(uriOf(server)));
    assert.ok(ours.some((e) => e.flags === 0) && ours.some((e) => e.flags !== 0), 'both data and holes');

    const pool = await NbdPool.connect({ ...connectOptions(again), connections: 3 });
    t.after(() => pool.close());
    assert.equal(sha(await pool.read(0, pool.size)), sha(reference), 'the same seed gives the same bytes');
    const third = await NbdClient.connect(connectOptions(other));
    t.after(() => third.close());
    assert.notEqual(sha(await third.read(0, third.size)), sha(reference), 'another seed other bytes');
  });
});

describe('NBD client against nbdkit: error filter', () => {
  it('each injected errno is its documented code, per command; the connection stays usable', async (t) => {
    const dir = scratch(t);
    const trigger = join(dir, 'inject');
    const cases: [string, string, string][] = [
      ['EPERM', 'NBD_EPERM', 'refused'],
      ['EIO', 'NBD_EIO', 'io'],
      ['ENOMEM', 'NBD_ENOMEM', 'resource'],
      ['EINVAL', 'NBD_EINVAL', 'protocol'],
      ['ENOSPC', 'NBD_ENOSPC', 'resource'],
    ];
    for (const [errno, code, kind] of cases) {
      const server = await nbdkit(t, dir, [
        '--filter=error',
        'memory',
        '4M',
        `error=${errno}`,
        'error-rate=100%',
        `error-file=${trigger}`,
      ]);
      const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['base:allocation'] });
      await c.write(0, Buffer.alloc(8192, 0x5a));
      writeFileSync(trigger, '');
      const ops: [string, () => Promise<unknown>][] = [
        ['read', () => c.read(0, 4096)],
        ['write', () => c.write(0, Buffer.alloc(4096))],
        ['write zeroes', () => c.writeZeroes(0, 4096)],
        ['trim', () => c.trim(0, 4096)],
        ['block status', () => c.blockStatus(0, 4096)],
      ];
      const settled = await Promise.allSettled(ops.map(([, op]) => op()));
      settled.forEach((r, i) => {
        assert.equal(r.status, 'rejected', `${errno} ${ops[i]![0]}`);
        const e = (r as PromiseRejectedResult).reason as NbdError;
        assert.equal(e.code, code, `${errno} ${ops[i]![0]}`);
        assert.equal(e.kind, kind);
        assert.equal(e.connectionUsable, true);
        assert.match(e.message, new RegExp(errno));
      });
      // error-file is looked at on every request: without it, no more errors.
      rmSync(trigger);
      assert.equal(c.pendingCount, 0);
      assert.ok(
        (await c.read(0, 8192)).every((b) => b === 0x5a),
        `${errno}: nothing changed, reads work again`,
      );
      await c.close();
    }
  });

  it('errors at random among pipelined reads: each read is its bytes or NBD_EIO; nothing hangs or lingers', async (t) => {
    const dir = scratch(t);
    const log = join(dir, 'requests.log');
    const server = await nbdkit(t, dir, [
      '--filter=log',
      '--filter=error',
      '--filter=delay',
      'memory',
      '16M',
      'error-pread=EIO',
      'error-pread-rate=30%',
      'delay-read=5ms',
      `logfile=${log}`,
    ]);
    const c = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 16 });
    const model = pattern(16 * MiB, 3);
    await c.write(0, model);
    const n = 256;
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => c.read((i % 256) * 64 * 1024, 64 * 1024)),
    );
    let failed = 0;
    results.forEach((r, i) => {
      const off = (i % 256) * 64 * 1024;
      if (r.status === 'fulfilled')
        assert.ok(r.value.equals(model.subarray(off, off + 64 * 1024)), `read ${i}`);
      else {
        failed++;
        assert.equal((r.reason as NbdError).code, 'NBD_EIO');
      }
    });
    assert.ok(failed > 20 && failed < n - 20, `${failed} of ${n} failed at a 30% rate`);
    assert.equal(c.pendingCount, 0);
    assert.equal(c.usable, true);
    await c.close();
    // The server saw every request once and a clean disconnect (NBD_CMD_DISC).
    const text = readFileSync(log, 'utf8');
    assert.equal(loggedRequests(log).filter((r) => r.op === 'Read').length, n);
    assert.match(text, /Disconnect transactions=\d+/);
  });
});

describe('NBD client against nbdkit: delay filter', () => {
  it('delayed replies with requests pipelined: answered as the server finishes, each to its caller', async (t) => {
    const dir = scratch(t);
    // More threads than requests: the write must not wait for a thread a delayed read holds.
    const server = await nbdkit(t, dir, [
      '--threads=64',
      '--filter=delay',
      'memory',
      '16M',
      'delay-read=400ms',
    ]);
    const c = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 32 });
    t.after(() => c.close());
    const data = Array.from({ length: 16 }, (_, i) => pattern(256 * 1024, 50 + i));
    await Promise.all(data.map((d, i) => c.write(i * MiB, d)));
    const order: string[] = [];
    const started = Date.now();
    const reads = data.map((d, i) =>
      c.read(i * MiB, 256 * 1024).then((b) => {
        order.push(`read ${i}`);
        assert.ok(b.equals(d), `read ${i} got another request's bytes`);
      }),
    );
    // Sent after the reads, answered before them: writes are not delayed.
    const write = c.write(15 * MiB + 512 * 1024, Buffer.alloc(4096, 1)).then(() => order.push('write'));
    await Promise.all([...reads, write]);
    const ms = Date.now() - started;
    assert.equal(order[0], 'write', order.join(', '));
    // One after another they would take 16 × 400 ms.
    assert.ok(ms < 8 * 400, `16 delayed reads took ${ms} ms: not pipelined`);
  });

  it('a reply later than requestTimeoutMs breaks the connection with NBD_TIMEOUT, failing everything pending', async (t) => {
    const dir = scratch(t);
    const server = await nbdkit(t, dir, ['--filter=delay', 'memory', '4M', 'delay-read=3']);
    const c = await NbdClient.connect({ ...connectOptions(server), requestTimeoutMs: 500 });
    t.after(() => c.close());
    const started = Date.now();
    const results = await Promise.allSettled([c.read(0, 4096), c.read(4096, 4096), c.read(8192, 4096)]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.equal(((r as PromiseRejectedResult).reason as NbdError).code, 'NBD_TIMEOUT');
    }
    assert.ok(Date.now() - started < 2500, 'failed at the timeout, not at the reply');
    assert.equal(c.usable, false);
    assert.equal(c.pendingCount, 0);
  });
});

describe('NBD client against nbdkit: block size constraints', () => {
  async function constrained(t: TestContext, dir: string, log: string) {
    // Outermost first: the policy filter advertises the constraints (NBD_INFO_BLOCK_SIZE) and
    // answers EINVAL to any request outside them; the log filter records what passed; the
    // blocksize filter shows the plugin only 4 KiB-aligned requests.
    return nbdkit(t, dir, [
      '--filter=blocksize-policy',
      '--filter=log',
      '--filter=blocksize',
      'memory',
      '8M',
      'blocksize-minimum=4096',
      'blocksize-preferred=64k',
      'blocksize-maximum=96k',
      'blocksize-error-policy=error',
      'minblock=4096',
      `logfile=${log}`,
    ]);
  }

  it('honours the advertised minimum, preferred and maximum block sizes (proto.md "Block size constraints")', async (t) => {
    const dir = scratch(t);
    const log = join(dir, 'requests.log');
    const server = await constrained(t, dir, log);
    const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['base:allocation'] });
    t.after(() => c.close());
    assert.deepEqual(c.blockSize, { minimum: 4096, preferred: 65536, maximum: 98304 });
    // Pieces of 64 KiB: within the 96 KiB maximum and multiples of the preferred size.
    assert.equal(c.maxRequest, 65536);

    const model = pattern(8 * MiB, 21);
    await c.write(0, model);
    await c.write(4096, model.subarray(4096, 4096 + 700 * 1024));
    await c.writeZeroes(MiB, 2 * MiB);
    model.fill(0, MiB, 3 * MiB);
    await c.trim(5 * MiB, MiB);
    model.fill(0, 5 * MiB, 6 * MiB);
    assert.ok((await c.read(0, 8 * MiB)).equals(model));
    assert.ok((await c.read(12_288, 200 * 1024)).equals(model.subarray(12_288, 12_288 + 200 * 1024)));
    const map: unknown[] = [];
    for await (const e of mapExtents(c, 'base:allocation')) map.push(e);
    assert.deepEqual(map, await nbdinfoMap(uriOf(server)));

    // Requests the server would refuse are refused here, before anything is sent.
    const before = loggedRequests(log).length;
    for (const bad of [
      () => c.read(1000, 4096),
      () => c.read(0, 1000),
      () => c.write(512, Buffer.alloc(4096)),
    ]) {
      await assert.rejects(bad(), (e: NbdError) => e.code === 'NBD_BAD_RANGE' && e.connectionUsable);
    }
    assert.equal(loggedRequests(log).length, before, 'an unaligned request reached the server');

    const sent = loggedRequests(log).filter((r) => r.op !== 'Extents');
    assert.ok(sent.length > 100);
    for (const r of sent) {
      assert.equal(r.offset % 4096, 0, `${r.op} at ${r.offset}`);
      assert.equal(r.count % 4096, 0, `${r.op} of ${r.count}`);
      if (r.op !== 'Trim') assert.ok(r.count <= 98_304, `${r.op} of ${r.count} over the maximum`);
      // Every piece of an aligned request is a whole number of preferred blocks.
      if (r.offset % 65536 === 0 && r.count > 65536)
        assert.fail(`${r.op} of ${r.count} is not split at 64 KiB`);
    }
  });

  it('"no inherent limit" (0xffffffff) still sends reads of at most 32 MiB, which nbdkit accepts', async (t) => {
    const dir = scratch(t);
    // The blocksize filter advertises minimum 1 and maximum 0xffffffff; nbdkit itself refuses a
    // read over 64 MiB (which a 100 MiB read in one request was, with ENOMEM).
    const server = await nbdkit(t, dir, [
      '--filter=blocksize',
      'memory',
      '128M',
      'minblock=4096',
      'maxdata=64k',
    ]);
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    assert.equal(c.blockSize.maximum, 0xffffffff);
    assert.equal(c.maxRequest, 32 * MiB);
    const data = pattern(100 * MiB, 77);
    await c.write(8 * MiB, data);
    const back = await c.read(8 * MiB, 100 * MiB);
    assert.ok(back.equals(data));
    assert.ok((await nbdcopyBytes(dir, server)).subarray(8 * MiB, 108 * MiB).equals(data));
  });
});
