import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maxRequestLength } from './block-size.ts';

const MiB = 1024 * 1024;

test('the advertised maximum bounds a request, and so does the export size', () => {
  assert.equal(
    maxRequestLength({ minimum: 4096, preferred: 65536, maximum: 256 * 1024 }, 8 * MiB),
    256 * 1024,
  );
  assert.equal(maxRequestLength({ minimum: 1, preferred: 4096, maximum: 32 * MiB }, 100_000), 98_304);
  assert.equal(maxRequestLength({ minimum: 512, preferred: 4096, maximum: 64 * MiB }, 1024 * MiB), 64 * MiB);
});

test('"no inherent limit" (0xffffffff) sends what a portable client sends: 32 MiB', () => {
  // nbdkit advertises 0xffffffff and refuses a READ over 64 MiB (proto.md allows it to).
  assert.equal(maxRequestLength({ minimum: 1, preferred: 4096, maximum: 0xffffffff }, 1024 * MiB), 32 * MiB);
});

test('pieces are multiples of the preferred block size where they can be, always of the minimum', () => {
  // 96 KiB allowed, 64 KiB preferred: pieces of 64 KiB keep every piece of an aligned request aligned.
  assert.equal(maxRequestLength({ minimum: 4096, preferred: 65536, maximum: 96 * 1024 }, 8 * MiB), 65536);
  // Smaller than preferred: a multiple of the minimum.
  assert.equal(maxRequestLength({ minimum: 4096, preferred: 65536, maximum: 12 * 4096 }, 8 * MiB), 12 * 4096);
  assert.equal(maxRequestLength({ minimum: 4096, preferred: 65536, maximum: 0xffffffff }, 10_000), 8192);
  // Never below the minimum, even for an export smaller than it.
  assert.equal(maxRequestLength({ minimum: 4096, preferred: 4096, maximum: 0xffffffff }, 1000), 4096);
});
