/**
 * Staged data checked as it is applied (docs/store-format.md, "Bit rot never spreads"). A kept
 * delta lies at rest for as long as the generations it produced, like an image; its index holds
 * the digest of every chunk it staged, taken when the bytes arrived and were checked against the
 * stream's digests. A rotation that replays it compares the bytes it is about to write with those
 * digests, so damage in a kept delta is never carried into a new generation under a derived
 * digest. The cost is a hash of the replayed bytes: they are read anyway.
 */
import { chunkDigests, DIGEST_BYTES, type DigestAlgorithm } from '../../../core/digest.ts';
import { CHUNK_SIZE } from '../../types.ts';
import type { IndexEntry } from '../delta-log.ts';

/**
 * Chunk numbers (of the disk) where `bytes`, about to be written at `offset` from data entry
 * `entry`, do not match the entry's digests. `offset` starts a chunk: entries are chunk-aligned
 * (writer/disk.ts checkExtent) and so are the pieces a merged pass leaves of them.
 */
export function damagedChunks(
  alg: DigestAlgorithm,
  entry: IndexEntry,
  offset: number,
  bytes: Buffer,
): number[] {
  const first = (offset - entry.offset) / CHUNK_SIZE;
  if (!Number.isInteger(first) || first < 0 || offset + bytes.length > entry.offset + entry.length) {
    throw new RangeError(`piece ${offset}+${bytes.length} is not a chunk-aligned part of its entry`);
  }
  const got = chunkDigests(alg, bytes, CHUNK_SIZE);
  const want = entry.digests.subarray(first * DIGEST_BYTES, first * DIGEST_BYTES + got.length);
  if (got.equals(want)) return [];
  const out: number[] = [];
  const base = offset / CHUNK_SIZE;
  for (let i = 0; i * DIGEST_BYTES < got.length; i++) {
    const at = i * DIGEST_BYTES;
    if (!got.subarray(at, at + DIGEST_BYTES).equals(want.subarray(at, at + DIGEST_BYTES))) out.push(base + i);
  }
  return out;
}
