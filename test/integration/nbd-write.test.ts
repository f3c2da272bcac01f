/**
 * Writing through real servers: qemu-nbd on raw and qcow2 images, and nbdkit's memory plugin (which
 * allows multi-conn writes, for NbdPool). Writes, write-zeroes, trim and flush must be visible
 * afterwards: through a new connection, and in the image file itself once the server is gone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NbdClient } from '../../src/nbd/client.ts';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../../src/nbd/constants.ts';
import type { NbdError } from '../../src/nbd/errors.ts';
import { mapExtents } from '../../src/nbd/extents.ts';
import { NbdPool } from '../../src/nbd/pool.ts';
import {
  connectOptions,
  IMAGE_SIZE,
  MiB,
  makeImage,
  nbdkit,
  prng,
  rawBytes,
  scratch,
  serve,
} from './nbd-helpers.ts';

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  const rnd = prng(seed);
  for (let i = 0; i < len; i++) b[i] = rnd(256);
  return b;
}

/** Flags of base:allocation over a range, as the set of distinct values. */
async function flagsOver(c: NbdClient, offset: number, length: number): Promise<Set<number>> {
  const out = new Set<number>();
  for await (const e of mapExtents(c, 'base:allocation', { offset, length })) out.add(e.flags);
  return out;
}

for (const format of ['raw', 'qcow2'] as const) {
  describe(`NBD writes to ${format} through qemu-nbd`, () => {
    it('write, write zeroes, trim and flush are visible afterwards', async (t) => {
      const dir = scratch(t);
      const image = await makeImage(dir, `disk.${format}`, format);
      const model = await rawBytes(dir, image, format);
      const server = await serve(t, dir, { image, format, discard: 'unmap', shared: 2 });
      const c = await NbdClient.connect({ ...connectOptions(server), metaContexts: ['base:allocation'] });
      assert.equal(c.flags.readOnly, false);
      assert.ok(
        c.flags.canFlush && c.flags.canFua && c.flags.canTrim && c.flags.canWriteZeroes,
        JSON.stringify(c.flags),
      );

      const a = pattern(100_000, 1);
      await c.write(3 * MiB + 7, a);
      a.copy(model, 3 * MiB + 7);
      const b = pattern(65536, 2);
      await c.write(0, b, { fua: true });
      b.copy(model, 0);
      // One call larger than the server's maximum request: split into several WRITEs.
      const big = pattern(40 * MiB, 3);
      assert.ok(big.length > c.maxRequest);
      await c.write(12 * MiB, big);
      big.copy(model, 12 * MiB);

      // Zeroes over data, keeping it allocated, and plain zeroes over the 0x77 run.
      await c.writeZeroes(MiB, 65536, { noHole: true });
      model.fill(0, MiB, MiB + 65536);
      await c.writeZeroes(60 * MiB, 2 * MiB, { fua: true });
      model.fill(0, 60 * MiB, 62 * MiB);
      await c.trim(63 * MiB, MiB);
      await c.flush();

      // Trimmed contents are unspecified (proto.md); the export reports the range as a hole.
      assert.deepEqual(await flagsOver(c, 63 * MiB, MiB), new Set([NBD_STATE_HOLE | NBD_STATE_ZERO]));
      const trimmed = (buf: Buffer) => Buffer.concat([buf.subarray(0, 63 * MiB)]);

      // Visible through the same connection and through a new one...
      assert.ok(trimmed(await c.read(0, IMAGE_SIZE)).equals(trimmed(model)));
      const d = await NbdClient.connect(connectOptions(server));
      assert.ok(trimmed(await d.read(0, IMAGE_SIZE)).equals(trimmed(model)));
      await d.close();
      await c.close();
      assert.equal(c.usable, false);
      await assert.rejects(c.read(0, 1), (e: NbdError) => e.code === 'NBD_CLOSED');
      // ...and in the image once qemu-nbd has exited.
      await server.stop();
      assert.ok(trimmed(await rawBytes(dir, image, format)).equals(trimmed(model)));
    });
  });
}

describe('NBD write refusals', () => {
  it('a read-only export refuses writes before sending them, and stays usable', async (t) => {
    const dir = scratch(t);
    const image = await makeImage(dir, 'disk.raw', 'raw');
    const server = await serve(t, dir, { image, format: 'raw', readOnly: true });
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    for (const op of [
      () => c.write(0, Buffer.alloc(512)),
      () => c.writeZeroes(0, 512),
      () => c.trim(0, 512),
    ]) {
      await assert.rejects(
        op(),
        (e: NbdError) => e.code === 'NBD_READ_ONLY' && e.kind === 'refused' && e.connectionUsable,
      );
    }
    await c.flush();
    assert.equal((await c.read(MiB, 4)).toString('hex'), 'abababab');
  });

  it('features the server does not advertise are refused as NBD_UNSUPPORTED', async (t) => {
    const dir = scratch(t);
    // nbdkit's nozero filter with zeromode=none stops advertising WRITE_ZEROES (and so FAST_ZERO).
    const server = await nbdkit(t, dir, ['--filter=nozero', 'memory', '4M', 'zeromode=none']);
    const c = await NbdClient.connect(connectOptions(server));
    t.after(() => c.close());
    assert.equal(c.flags.canWriteZeroes, false);
    assert.equal(c.flags.canFastZero, false);
    await assert.rejects(
      c.writeZeroes(0, 4096),
      (e: NbdError) => e.code === 'NBD_UNSUPPORTED' && e.kind === 'unavailable',
    );
    await assert.rejects(
      c.writeZeroes(0, 4096, { fastZero: true }),
      (e: NbdError) => e.code === 'NBD_UNSUPPORTED',
    );
    await c.write(0, Buffer.alloc(4096, 1));
    assert.equal((await c.read(4095, 1))[0], 1);
  });
});

describe('NbdPool writes (nbdkit memory, multi-conn)', () => {
  it('writes spread over connections are all visible after flush', async (t) => {
    const dir = scratch(t);
    const server = await nbdkit(t, dir, ['memory', '64M']);
    const pool = await NbdPool.connect({ ...connectOptions(server), connections: 4 });
    t.after(() => pool.close());
    assert.equal(pool.clients.length, 4);
    assert.equal(pool.flags.canFastZero, true);
    const model = Buffer.alloc(64 * MiB);
    const writes: Promise<void>[] = [];
    const rnd = prng(11);
    for (let i = 0; i < 100; i++) {
      const len = 1 + rnd(MiB);
      const off = rnd(64 * MiB - len);
      const data = pattern(len, 100 + i);
      data.copy(model, off);
      // Sequential in the model, concurrent on the wire: give each write its own region order.
      writes.push(pool.write(off, data));
      await writes[writes.length - 1];
    }
    const huge = pattern(48 * MiB, 5);
    huge.copy(model, 8 * MiB);
    await pool.write(8 * MiB, huge);
    await pool.writeZeroes(20 * MiB, 3 * MiB, { fastZero: true });
    model.fill(0, 20 * MiB, 23 * MiB);
    await pool.flush();
    const check = await NbdClient.connect(connectOptions(server));
    t.after(() => check.close());
    assert.ok((await check.read(0, 64 * MiB)).equals(model));
    assert.ok((await pool.read(0, 64 * MiB)).equals(model));
  });
});
