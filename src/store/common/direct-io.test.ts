import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { alignedBuffer, DIRECT_ALIGN } from '../../core/aligned-memory.ts';
import { silentLogger } from '../../core/log.ts';
import { DirectWrites } from './direct-io.ts';

const SIZE = 16 << 20;

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

async function target(t: TestContext, enabled: boolean) {
  const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, 'haven-t-dio-'));
  const path = join(dir, 'image.raw');
  const fh = await open(path, 'w+');
  await fh.truncate(SIZE);
  const out = await DirectWrites.open(path, fh, enabled, silentLogger);
  t.after(async () => {
    await out.close();
    await fh.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, fh, out };
}

for (const enabled of [true, false]) {
  test(`writes land byte for byte (direct I/O ${enabled ? 'on' : 'off'}), whatever their alignment`, async (t) => {
    const { path, fh, out } = await target(t, enabled);
    // The test root is on ext4 here, which takes O_DIRECT: the direct path must really be used.
    assert.equal(out.isDirect, enabled);
    const expected = Buffer.alloc(SIZE);
    const writes: Array<[number, Buffer]> = [
      [0, pattern(1 << 20, 1)], // aligned, ordinary (unaligned) memory: copied through scratch
      [(1 << 20) + 100, pattern(3 * DIRECT_ALIGN, 2)], // unaligned head and tail
      [3 << 20, pattern(100, 3)], // smaller than one block
      [4 << 20, pattern(9 << 20, 4)], // larger than the scratch buffer
      [(14 << 20) - 7, pattern(DIRECT_ALIGN + 7, 5)], // crosses an alignment boundary, unaligned end
      [512, pattern(DIRECT_ALIGN * 2, 6)], // overwrites earlier direct data through a mixed write
    ];
    const fromAligned = alignedBuffer(2 << 20);
    pattern(2 << 20, 7).copy(fromAligned);
    writes.push([SIZE - (2 << 20), fromAligned]); // aligned memory: written without a copy
    for (const [pos, buf] of writes) {
      await out.write(buf, pos);
      buf.copy(expected, pos);
    }
    await fh.sync();
    assert.ok(readFileSync(path).equals(expected));
    if (enabled) assert.ok(out.directBytes >= 12 << 20, `only ${out.directBytes} bytes went direct`);
    else assert.equal(out.directBytes, 0);
  });
}

test('writes sharing the scratch buffer concurrently do not mix their data', async (t) => {
  const { path, fh, out } = await target(t, true);
  const expected = Buffer.alloc(SIZE);
  await Promise.all(
    Array.from({ length: 8 }, (_, i) => {
      const buf = pattern(1 << 20, 10 + i);
      buf.copy(expected, i * (2 << 20));
      return out.write(buf, i * (2 << 20));
    }),
  );
  await fh.sync();
  assert.ok(readFileSync(path).equals(expected));
});
