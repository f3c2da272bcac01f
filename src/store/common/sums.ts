/**
 * Digest files (`.sums`): DIGEST_BYTES per chunk, chunk i at byte i × 32, nothing else. They are
 * only ever read and written at positions, in bounded blocks: a 1 TiB disk has 512 MiB of them.
 *
 * 32 zero bytes are no real digest. In a delta's own sums file they mean "not staged" (holes read
 * as zeros, so a fresh sparse file starts all unstaged). In a generation's sums file (store format
 * 2, docs/store-format.md "Digest files") they mean "a zero chunk": ranges that were never written
 * or were sent as zero ranges are holes of the digest file, so a disk's declared size costs
 * nothing until data arrives (issue 13.2). Readers of generation digests go through
 * `GenerationSums` (or `expandZeroEntries`), which answers those entries with the zero chunk's
 * digest; a format 1 file, all of whose entries are real digests, reads the same.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { DIGEST_BYTES, type DigestAlgorithm, zeroChunkDigest } from '../../core/digest.ts';
import type { Logger } from '../../core/log.ts';
import { CHUNK_SIZE } from '../types.ts';
import type { StoreContext } from './context.ts';
import { io, isErrno, readAllAt, writeAllAt } from './files.ts';
import { punchHoles } from './holes.ts';

/** Largest digest range one request (expectedDigests, readDigests) may ask for (32 MiB of answer). */
export const MAX_DIGEST_REQUEST_CHUNKS = 1 << 20;

/** Chunks per I/O block when streaming through a digest file (1 MiB of digests). */
export const SUMS_BLOCK_CHUNKS = 32768;

export function chunkCount(size: number): number {
  return Math.ceil(size / CHUNK_SIZE);
}

export function chunkLength(size: number, index: number): number {
  return Math.min(CHUNK_SIZE, size - index * CHUNK_SIZE);
}

export function sumsLength(size: number): number {
  return chunkCount(size) * DIGEST_BYTES;
}

export function isUnstaged(buf: Buffer, index: number): boolean {
  const at = index * DIGEST_BYTES;
  for (let i = 0; i < DIGEST_BYTES; i++) if (buf[at + i] !== 0) return false;
  return true;
}

export async function readSums(fh: FileHandle, fromChunk: number, count: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(count * DIGEST_BYTES);
  await readAllAt(fh, buf, buf.length, fromChunk * DIGEST_BYTES);
  return buf;
}

export async function writeSums(fh: FileHandle, fromChunk: number, digests: Buffer): Promise<void> {
  await writeAllAt(fh, digests, fromChunk * DIGEST_BYTES);
}

/** Positioned writes a flush keeps in flight. */
const OVERLAY_WRITES = 16;

/**
 * Digests written over a sums file the way writing them one by one, in order, would leave it,
 * but gathered and written sorted, adjacent chunks together. An incremental's index lists
 * hundreds of scattered 64 KiB chunks, and one awaited write per entry cost about 0.2 ms each
 * (120 ms for 640 entries on the CI machines). A later digest for a chunk replaces an earlier
 * one. Memory: at most `limit` pending chunks (32 bytes each), then a flush; call flush() before
 * any other write to the file, and at the end.
 */
export class SumsOverlay {
  private readonly pending = new Map<number, Buffer>();

  constructor(
    private readonly fh: FileHandle,
    private readonly limit = SUMS_BLOCK_CHUNKS,
  ) {}

  async add(fromChunk: number, digests: Buffer): Promise<void> {
    for (let i = 0; i * DIGEST_BYTES < digests.length; i++) {
      this.pending.set(fromChunk + i, digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES));
    }
    if (this.pending.size >= this.limit) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.pending.size) return;
    const sorted = [...this.pending].sort((a, b) => a[0] - b[0]);
    let batch: Promise<void>[] = [];
    let run: Buffer[] = [];
    let runStart = 0;
    const writeRun = async () => {
      batch.push(writeAllAt(this.fh, Buffer.concat(run), runStart * DIGEST_BYTES));
      run = [];
      if (batch.length >= OVERLAY_WRITES) {
        await Promise.all(batch);
        batch = [];
      }
    };
    for (const [chunk, chunkDigest] of sorted) {
      // Adjacent chunks go out together, up to a block at a time.
      if (run.length && (chunk !== runStart + run.length || run.length >= SUMS_BLOCK_CHUNKS))
        await writeRun();
      if (!run.length) runStart = chunk;
      run.push(chunkDigest);
    }
    if (run.length) await writeRun();
    await Promise.all(batch);
    this.pending.clear();
  }
}

/** Writes the digests of zero chunks over [fromChunk, toChunk) of a disk of `size` bytes. */
export async function writeZeroSums(
  fh: FileHandle,
  alg: DigestAlgorithm,
  size: number,
  fromChunk: number,
  toChunk: number,
): Promise<void> {
  const full = zeroChunkDigest(alg, CHUNK_SIZE);
  for (let c = fromChunk; c < toChunk; ) {
    const n = Math.min(SUMS_BLOCK_CHUNKS, toChunk - c);
    const buf = Buffer.allocUnsafe(n * DIGEST_BYTES);
    for (let i = 0; i < n; i++) {
      const d =
        chunkLength(size, c + i) === CHUNK_SIZE ? full : zeroChunkDigest(alg, chunkLength(size, c + i));
      d.copy(buf, i * DIGEST_BYTES);
    }
    await writeSums(fh, c, buf);
    c += n;
  }
}

const CLEAR = Buffer.alloc(SUMS_BLOCK_CHUNKS * DIGEST_BYTES);

/** Cleared runs at least this long are punched as holes rather than written (2 MiB of digests). */
export const PUNCH_MIN_CHUNKS = 65536;

/**
 * Clears chunks [fromChunk, toChunk) to 32 zero bytes each: "not staged" in a delta's sums, "a
 * zero chunk" in a generation's. A long run becomes a hole of the file (`punch` names the file
 * and the log for holes.ts), so clearing costs the same whatever the range's size.
 */
export async function clearSums(
  fh: FileHandle,
  fromChunk: number,
  toChunk: number,
  punch?: { path: string; log: Logger },
): Promise<void> {
  if (punch && toChunk - fromChunk >= PUNCH_MIN_CHUNKS) {
    const range = { offset: fromChunk * DIGEST_BYTES, length: (toChunk - fromChunk) * DIGEST_BYTES };
    await punchHoles(fh, punch.path, [range], punch.log);
    return;
  }
  for (let c = fromChunk; c < toChunk; ) {
    const n = Math.min(SUMS_BLOCK_CHUNKS, toChunk - c);
    await writeSums(fh, c, CLEAR.subarray(0, n * DIGEST_BYTES));
    c += n;
  }
}

/**
 * A generation's digests as stored (format 2) made real: every all-zero entry of `buf`, which
 * holds chunks from `fromChunk` of a disk of `size` bytes, becomes the zero chunk's digest.
 */
export function expandZeroEntries(
  buf: Buffer,
  fromChunk: number,
  size: number,
  alg: DigestAlgorithm,
): Buffer {
  for (let i = 0; i * DIGEST_BYTES < buf.length; i++) {
    if (isUnstaged(buf, i))
      zeroChunkDigest(alg, chunkLength(size, fromChunk + i)).copy(buf, i * DIGEST_BYTES);
  }
  return buf;
}

/** A generation's digest file open for reading; zero entries are answered as zero chunks. */
export class GenerationSums {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly alg: DigestAlgorithm,
  ) {}

  /** The file, or null when it does not exist. */
  static async open(path: string, alg: DigestAlgorithm): Promise<GenerationSums | null> {
    try {
      return new GenerationSums(path, await open(path, 'r'), alg);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return null;
      return io(path, () => Promise.reject(e));
    }
  }

  /** Digests of chunks [fromChunk, +count) of a disk of `size` bytes. */
  async read(fromChunk: number, count: number, size: number): Promise<Buffer> {
    const buf = await io(this.path, () => readSums(this.fh, fromChunk, count));
    return expandZeroEntries(buf, fromChunk, size, this.alg);
  }

  /** Entries as stored: all zeros for a zero chunk (format 2), for callers that skip those. */
  readStored(fromChunk: number, count: number): Promise<Buffer> {
    return io(this.path, () => readSums(this.fh, fromChunk, count));
  }

  /** Null when the file holds exactly one entry per chunk of a disk of `size` bytes, else why not. */
  async checkLength(size: number): Promise<string | null> {
    const length = (await io(this.path, () => this.fh.stat())).size;
    return length === sumsLength(size)
      ? null
      : `${this.path} is ${length} bytes, expected ${sumsLength(size)}`;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

export function openGenerationSums(
  ctx: StoreContext,
  server: string,
  generationId: string,
  disk: string,
): Promise<GenerationSums | null> {
  return GenerationSums.open(ctx.layout.sums(server, generationId, disk), ctx.descriptor.digest);
}
