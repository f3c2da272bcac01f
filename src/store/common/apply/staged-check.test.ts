import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkDigests } from '../../../core/digest.ts';
import { CHUNK_SIZE } from '../../types.ts';
import type { IndexEntry } from '../delta-log.ts';
import { damagedChunks } from './staged-check.ts';

/** An entry of three and a half chunks at chunk 10 (a disk's last entry may end short). */
function entry(): { e: IndexEntry; bytes: Buffer } {
  const bytes = Buffer.alloc(3 * CHUNK_SIZE + 1000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
  const e: IndexEntry = {
    kind: 'data',
    disk: 0,
    offset: 10 * CHUNK_SIZE,
    length: bytes.length,
    dataPos: 0,
    digests: chunkDigests('blake3', bytes, CHUNK_SIZE),
  };
  return { e, bytes };
}

test('intact bytes, whole or a chunk-aligned piece, are not damaged', () => {
  const { e, bytes } = entry();
  assert.deepEqual(damagedChunks('blake3', e, e.offset, bytes), []);
  assert.deepEqual(damagedChunks('blake3', e, e.offset + CHUNK_SIZE, bytes.subarray(CHUNK_SIZE)), []);
  assert.deepEqual(
    damagedChunks('blake3', e, e.offset + CHUNK_SIZE, bytes.subarray(CHUNK_SIZE, 2 * CHUNK_SIZE)),
    [],
  );
});

test('a flipped bit names its chunk of the disk, in a piece too', () => {
  const { e, bytes } = entry();
  const bad = Buffer.from(bytes);
  bad.writeUInt8(bad.readUInt8(2 * CHUNK_SIZE + 5) ^ 1, 2 * CHUNK_SIZE + 5);
  bad.writeUInt8(bad.readUInt8(3 * CHUNK_SIZE + 999) ^ 0x80, 3 * CHUNK_SIZE + 999);
  assert.deepEqual(damagedChunks('blake3', e, e.offset, bad), [12, 13]);
  assert.deepEqual(
    damagedChunks('blake3', e, e.offset + 2 * CHUNK_SIZE, bad.subarray(2 * CHUNK_SIZE)),
    [12, 13],
  );
  assert.deepEqual(damagedChunks('blake3', e, e.offset, bad.subarray(0, 2 * CHUNK_SIZE)), []);
});

test('a piece that is not a chunk-aligned part of its entry is a caller bug', () => {
  const { e, bytes } = entry();
  assert.throws(() => damagedChunks('blake3', e, e.offset + 512, bytes.subarray(512)), RangeError);
  assert.throws(() => damagedChunks('blake3', e, e.offset + CHUNK_SIZE, bytes), RangeError);
  assert.throws(() => damagedChunks('blake3', e, e.offset - CHUNK_SIZE, bytes), RangeError);
});
