/**
 * A journal segment's files (file.ts): per disk its data back to back and its index, and the two
 * things done with a segment: applying it to an image (folding into the base, materialising a
 * point) and to the head digests. Memory: one piece of at most PIECE bytes at a time.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { z } from 'zod';
import { chunkDigests, zeroRangeDigests } from '../../../core/digest.ts';
import { storeError } from '../../errors.ts';
import { CHUNK_SIZE, DIGEST_BYTES, type DigestAlgorithm } from '../../types.ts';
import { io, readAllAt, readJson, writeAllAt } from '../files.ts';
import { writeSums } from '../sums.ts';
import type { PitLayout } from './file.ts';

/** Largest piece read or written at once while applying. */
const PIECE = 1024 * 1024;
const ZEROES = Buffer.alloc(PIECE);

export interface IndexEntry {
  /** Offset in the disk. */
  o: number;
  /** Length. */
  l: number;
  /** Position of the data in the segment's data file; absent for a zero extent. */
  at?: number;
  /** The chunks' digests (hex, concatenated); absent for a zero extent. */
  d?: string;
}

const indexSchema = z.array(
  z.object({
    o: z.number().int().nonnegative(),
    l: z.number().int().positive(),
    at: z.number().int().nonnegative().optional(),
    d: z.string().optional(),
  }),
);

export async function readIndex(p: PitLayout, id: string, disk: string): Promise<IndexEntry[]> {
  const path = p.index(id, disk);
  const entries = await readJson(path, (v) => {
    const r = indexSchema.safeParse(v);
    if (!r.success) {
      throw storeError('STORE_JOURNAL_INVALID', 'integrity', `${path} is not a valid segment index`, {
        hint: 'Run `haven verify`; the journal was changed outside Haven.',
      });
    }
    return r.data;
  });
  return entries ?? [];
}

/** Writes a segment's extents of `disk` into `out` (an image of the disk's size), in order. */
export async function applySegment(p: PitLayout, id: string, disk: string, out: FileHandle): Promise<void> {
  const entries = await readIndex(p, id, disk);
  if (entries.length === 0) return;
  const dataPath = p.data(id, disk);
  const data = entries.some((e) => e.at !== undefined) ? await io(dataPath, () => open(dataPath, 'r')) : null;
  try {
    const buf = Buffer.allocUnsafe(PIECE);
    for (const e of entries) {
      for (let done = 0; done < e.l; done += PIECE) {
        const n = Math.min(PIECE, e.l - done);
        if (e.at === undefined || !data) {
          await writeAllAt(out, ZEROES.subarray(0, n), e.o + done);
          continue;
        }
        await readAllAt(data, buf, n, e.at + done);
        await writeAllAt(out, buf.subarray(0, n), e.o + done);
      }
    }
  } finally {
    await data?.close();
  }
}

/** Writes a segment's digests of `disk` over the head digests. */
export async function applySegmentSums(
  p: PitLayout,
  id: string,
  disk: { name: string; size: number },
  alg: DigestAlgorithm,
  sums: FileHandle,
): Promise<void> {
  for (const e of await readIndex(p, id, disk.name)) {
    const first = Math.floor(e.o / CHUNK_SIZE);
    const digests =
      e.d !== undefined ? Buffer.from(e.d, 'hex') : zeroRangeDigests(alg, e.o, e.l, CHUNK_SIZE, disk.size);
    if (digests.length !== Math.ceil(e.l / CHUNK_SIZE) * DIGEST_BYTES) {
      throw storeError(
        'STORE_JOURNAL_INVALID',
        'integrity',
        `segment ${id} of ${disk.name}: digests do not cover its extent`,
        {
          hint: 'Run `haven verify`; the journal was changed outside Haven.',
        },
      );
    }
    await writeSums(sums, first, digests);
  }
}

/** Chunks read at once when digesting an image (4 MiB). */
const DIGEST_PIECE_CHUNKS = 64;

/**
 * Reads `size` bytes of `image` in 4 MiB pieces and hands each piece's chunk digests to `each`
 * (the piece's first chunk, its digests): one piece in memory at a time.
 */
export async function eachImageDigests(
  alg: DigestAlgorithm,
  image: FileHandle,
  size: number,
  each: (firstChunk: number, digests: Buffer, bytes: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const buf = Buffer.allocUnsafe(DIGEST_PIECE_CHUNKS * CHUNK_SIZE);
  for (let off = 0; off < size; ) {
    signal?.throwIfAborted();
    const n = Math.min(buf.length, size - off);
    await readAllAt(image, buf, n, off);
    await each(off / CHUNK_SIZE, chunkDigests(alg, buf.subarray(0, n), CHUNK_SIZE), n);
    off += n;
  }
}
