/**
 * Generations cut from the journal (docs/continuous.md, "Generations from the journal"): a
 * segment sent with `cut` (the job's schedule came) that ends consistent becomes, once
 * appended, the newest generation `_1` of the server, with the rotation and naming of every
 * periodic run (`copies`, `<server>_<disk>_<seq>`), so activation, drills and failback of
 * generations work for a continuously protected server as for any other.
 *
 * The point is materialised into `pit/cut/` (the journal is only read), then written through the
 * store's own delta path: a checksum resync against the newest generation when there is one (only
 * the chunks whose digests differ are written; the rotation recycles the oldest image as for any
 * run), else a full copy. The appended segment stays in the journal either way; a cut that fails
 * is logged and leaves the journal and the generations as they were (the next schedule cuts
 * again). Memory: one 4 MiB piece at a time.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkDigests, DIGEST_BYTES } from '../../../core/digest.ts';
import type { Logger } from '../../../core/log.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaWriter,
  type Generation,
  type JournalDeltaMeta,
  type SegmentRecord,
} from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { ensureDir, io, readAllAt, removeTree } from '../files.ts';
import { readManifest } from '../metadata.ts';
import { PitLayout } from './file.ts';

const PIECE_CHUNKS = 64;

export type OpenDelta = (meta: DeltaMeta, log: Logger) => Promise<DeltaWriter>;
/** Writes the point's disks into these images (journal.ts materialisePoint). */
export type Materialise = (images: ReadonlyMap<string, string>) => Promise<unknown>;

export async function cutGeneration(
  ctx: StoreContext,
  openDelta: OpenDelta,
  materialise: Materialise,
  meta: JournalDeltaMeta,
  point: SegmentRecord,
  log: Logger,
): Promise<Generation> {
  const dir = join(new PitLayout(ctx, meta.server).dir, 'cut');
  await removeTree(dir);
  await ensureDir(dir);
  try {
    const images = new Map(point.disks.map((d) => [d.name, join(dir, `${d.name}.raw`)]));
    await materialise(images);
    const newest = (await readManifest(ctx, meta.server))?.generations[0] ?? null;
    const { journal: _journal, ...periodic } = meta;
    const writer = await openDelta(
      {
        ...periodic,
        disks: point.disks,
        pointInTime: point.pointInTime,
        takenAt: point.takenAt,
        baseGenerationId: newest?.id ?? null,
        mode: newest ? 'resync' : 'full',
      },
      log,
    );
    try {
      const summary: Record<string, { dataBytes: number; zeroBytes: number }> = {};
      for (const d of point.disks) {
        summary[d.name] = await writeDisk(ctx, writer, d, images.get(d.name) ?? '', newest !== null);
      }
      await writer.seal({ disks: summary });
      const generation = await writer.commit();
      log.info('generation cut from the journal', { point: point.id, generation: generation.id });
      return generation;
    } catch (e) {
      await writer.discard().catch(() => {});
      throw e;
    }
  } finally {
    await removeTree(dir);
  }
}

/**
 * Writes the chunks of `image` that differ from what the delta's base holds (all of them without
 * a base), in ascending order, runs of data or zero chunks together.
 */
async function writeDisk(
  ctx: StoreContext,
  writer: DeltaWriter,
  disk: { name: string; size: number },
  image: string,
  compare: boolean,
): Promise<{ dataBytes: number; zeroBytes: number }> {
  const counts = { dataBytes: 0, zeroBytes: 0 };
  const fh = await io(image, () => open(image, 'r'));
  const buf = Buffer.allocUnsafe(PIECE_CHUNKS * CHUNK_SIZE);
  const zero = Buffer.alloc(CHUNK_SIZE);
  try {
    for (let off = 0; off < disk.size; off += buf.length) {
      const n = Math.min(buf.length, disk.size - off);
      await readAllAt(fh, buf, n, off);
      const data = buf.subarray(0, n);
      const got = chunkDigests(ctx.descriptor.digest, data, CHUNK_SIZE);
      const chunks = got.length / DIGEST_BYTES;
      const want = compare ? await writer.expectedDigests(disk.name, off / CHUNK_SIZE, chunks) : null;
      // Runs of chunks to write: [first, end) with whether they are all zeroes.
      let run: { first: number; end: number; zero: boolean } | null = null;
      const flush = async () => {
        if (!run) return;
        const at = off + run.first * CHUNK_SIZE;
        const len = Math.min(run.end * CHUNK_SIZE, n) - run.first * CHUNK_SIZE;
        if (run.zero) {
          await writer.writeZero(disk.name, at, len);
          counts.zeroBytes += len;
        } else {
          const digests = got.subarray(run.first * DIGEST_BYTES, run.end * DIGEST_BYTES);
          await writer.writeData(
            disk.name,
            at,
            Buffer.from(data.subarray(at - off, at - off + len)),
            digests,
          );
          counts.dataBytes += len;
        }
        run = null;
      };
      for (let i = 0; i < chunks; i++) {
        const a = i * DIGEST_BYTES;
        if (want && got.compare(want, a, a + DIGEST_BYTES, a, a + DIGEST_BYTES) === 0) {
          await flush();
          continue;
        }
        const piece = data.subarray(i * CHUNK_SIZE, Math.min((i + 1) * CHUNK_SIZE, n));
        const isZero = piece.equals(zero.subarray(0, piece.length));
        if (run && run.zero === isZero && run.end === i) run.end = i + 1;
        else {
          await flush();
          run = { first: i, end: i + 1, zero: isZero };
        }
      }
      await flush();
    }
  } finally {
    await fh.close();
  }
  return counts;
}
