import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { HavenError } from '../core/errors.ts';
import { ExtentCompressor, ExtentDecompressor } from './compression.ts';

describe('extent compression', () => {
  const c = new ExtentCompressor(1);
  const d = new ExtentDecompressor();
  const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(2000));

  it('round-trips compressible data and shrinks it', () => {
    const packed = c.compress(text);
    assert.ok(packed && packed.length < text.length / 10);
    assert.ok(d.decompress(packed, text.length, {}).equals(text));
  });

  it('returns null for incompressible data (sent raw)', () => {
    assert.equal(c.compress(randomBytes(65536)), null);
  });

  it('rejects a payload that is not zstd, a truncated one, and a wrong declared length', () => {
    const packed = c.compress(text)!;
    const expectBad = (fn: () => unknown) =>
      assert.throws(fn, (e: HavenError) => e.code === 'PROTO_BAD_COMPRESSION');
    expectBad(() => d.decompress(Buffer.from('not zstd at all'), 100, {}));
    expectBad(() => d.decompress(packed.subarray(0, packed.length - 3), text.length, {}));
    expectBad(() => d.decompress(packed, text.length + 1, {}));
    // A payload that expands beyond the declared length fails instead of allocating more.
    expectBad(() => d.decompress(packed, 1000, {}));
    // The context is still usable afterwards.
    assert.ok(d.decompress(packed, text.length, {}).equals(text));
  });
});
