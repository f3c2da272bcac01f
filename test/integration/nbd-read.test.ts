/**
 * Reading through a real qemu-nbd: raw and qcow2 images with data, holes and zeroed ranges, over a
 * unix socket and over TCP. Every read must equal the image's bytes as qemu-img converts them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NbdClient } from '../../src/nbd/client.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import { NbdPool } from '../../src/nbd/pool.ts';
import { connectOptions, IMAGE_SIZE, MiB, makeImage, prng, rawBytes, scratch, serve } from './nbd-helpers.ts';

for (const format of ['raw', 'qcow2'] as const) {
  for (const tcp of [false, true]) {
    const transport = tcp ? 'TCP' : 'unix socket';
    describe(`NBD reads: ${format} over ${transport}`, () => {
      it('reads equal the image bytes: whole export, 1 MiB pieces, unaligned pieces', async (t) => {
        const dir = scratch(t);
        const image = await makeImage(dir, `disk.${format}`, format);
        const expected = await rawBytes(dir, image, format);
        const server = await serve(t, dir, { image, format, readOnly: true, tcp, exportName: 'vda' });
        const c = await NbdClient.connect({ ...connectOptions(server) });
        t.after(() => c.close());
        assert.equal(c.size, IMAGE_SIZE);
        assert.equal(c.exportName, 'vda');
        assert.equal(c.flags.readOnly, true);
        assert.equal(c.structured, true);

        // One call for the whole 64 MiB: split at the server's 32 MiB maximum, sent concurrently.
        assert.ok(c.maxRequest < IMAGE_SIZE, `max request ${c.maxRequest}`);
        const whole = await c.read(0, IMAGE_SIZE);
        assert.ok(whole.equals(expected), 'whole-export read differs from the image');

        for (let off = 0; off < IMAGE_SIZE; off += MiB) {
          assert.ok((await c.read(off, MiB)).equals(expected.subarray(off, off + MiB)), `1 MiB at ${off}`);
        }

        const rnd = prng(format === 'raw' ? 1 : 2);
        for (let i = 0; i < 200; i++) {
          const len = 1 + rnd(300_000);
          const off = rnd(IMAGE_SIZE - len);
          assert.ok(
            (await c.read(off, len)).equals(expected.subarray(off, off + len)),
            `read [${off}, +${len})`,
          );
        }
        // The discarded range reads as zeroes (a hole), the zeroed range too.
        assert.ok((await c.read(5 * MiB, 512 * 1024)).every((b) => b === 0));
        assert.ok((await c.read(10 * MiB, MiB)).every((b) => b === 0));
        assert.equal((await c.read(0, 0)).length, 0);
      });

      it('64 concurrent reads on one connection all complete correctly', async (t) => {
        const dir = scratch(t);
        const image = await makeImage(dir, `disk.${format}`, format);
        const expected = await rawBytes(dir, image, format);
        const server = await serve(t, dir, { image, format, readOnly: true, tcp, shared: 2 });
        const c = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 64 });
        t.after(() => c.close());
        const rnd = prng(64);
        const ranges = Array.from({ length: 64 }, () => {
          const len = 1 + rnd(2 * MiB);
          return [rnd(IMAGE_SIZE - len), len] as const;
        });
        const results = await Promise.all(ranges.map(([off, len]) => c.read(off, len)));
        results.forEach((r, i) => {
          const [off, len] = ranges[i]!;
          assert.ok(r.equals(expected.subarray(off, off + len)), `concurrent read ${i} [${off}, +${len})`);
        });
        // More requests than maxInFlight queue locally and still complete.
        const small = await NbdClient.connect({ ...connectOptions(server), maxInFlight: 4 });
        t.after(() => small.close());
        const many = await Promise.all(ranges.map(([off, len]) => small.read(off, len)));
        for (const [i, r] of many.entries()) assert.ok(r.equals(results[i]!));
      });
    });
  }
}

describe('NBD reads into caller buffers', () => {
  it('readInto fills exactly the asked part of a reused buffer', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const expected = await rawBytes(dir, image, 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    const buf = Buffer.alloc(3 * MiB, 0xcc);
    for (const [off, at, len] of [
      [MiB - 100, 17, 200_000],
      [4 * MiB + 3, 0, 3 * MiB],
      [IMAGE_SIZE - 4096, 3 * MiB - 4096, 4096],
    ] as const) {
      buf.fill(0xcc);
      await c.readInto(off, buf, at, len);
      assert.ok(buf.subarray(at, at + len).equals(expected.subarray(off, off + len)));
      assert.ok(
        buf.subarray(0, at).every((b) => b === 0xcc),
        'bytes before the range untouched',
      );
      assert.ok(
        buf.subarray(at + len).every((b) => b === 0xcc),
        'bytes after the range untouched',
      );
    }
    await assert.rejects(c.readInto(0, buf, 3 * MiB - 10, 11), (e: NbdError) => e.code === 'NBD_BAD_RANGE');
  });

  it('out-of-range reads fail typed and leave the connection usable', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    for (const [off, len] of [
      [IMAGE_SIZE - 10, 11],
      [-1, 10],
      [0.5, 10],
      [IMAGE_SIZE + 4096, 0],
      [0, -1],
      [0, 2 ** 60],
    ] as const) {
      await assert.rejects(
        c.read(off, len),
        (e: NbdError) => e.code === 'NBD_BAD_RANGE' && e.kind === 'usage' && e.connectionUsable,
      );
    }
    assert.equal(c.usable, true);
    assert.equal((await c.read(IMAGE_SIZE - 10, 10)).length, 10);
  });
});

describe('NbdPool', () => {
  it('spreads reads over several connections when the server allows multi-conn', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.qcow2', 'qcow2');
    const expected = await rawBytes(dir, image, 'qcow2');
    const server = await serve(t, dir, { image, format: 'qcow2', readOnly: true, shared: 8 });
    const pool = await NbdPool.connect({ ...connectOptions(server), connections: 4, maxInFlight: 4 });
    t.after(() => pool.close());
    assert.equal(pool.flags.canMultiConn, true);
    assert.equal(pool.clients.length, 4);
    const whole = await pool.read(0, IMAGE_SIZE);
    assert.ok(whole.equals(expected));
    const rnd = prng(7);
    const ranges = Array.from({ length: 40 }, () => {
      const len = 1 + rnd(3 * MiB);
      return [rnd(IMAGE_SIZE - len), len] as const;
    });
    const got = await Promise.all(ranges.map(([o, l]) => pool.read(o, l)));
    for (const [i, g] of got.entries()) {
      const [o, l] = ranges[i]!;
      assert.ok(g.equals(expected.subarray(o, o + l)));
    }
  });

  it('uses a single connection when the server does not allow multi-conn', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    // qemu-nbd advertises multi-conn only when it accepts several clients (--shared > 1).
    const server = await serve(t, dir, { image, format: 'raw', shared: 1 });
    const pool = await NbdPool.connect({ ...connectOptions(server), connections: 4 });
    t.after(() => pool.close());
    assert.equal(pool.flags.canMultiConn, false);
    assert.equal(pool.clients.length, 1);
  });
});
