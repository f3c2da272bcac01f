/**
 * Chunks the target wants sent again from the source (issue 13.5): damage found where no other
 * generation holds the chunk intact — by the slot check before a commit, by `haven verify`, by
 * activation's check — is recorded per server in `.haven/servers/<server>/resend.json`. Until the
 * chunks are sent again:
 * - the receiver tells the sender (QUERY_REPLY and OPENED `resync`), and the sender reads every
 *   chunk and compares (a checksum resync, docs/stream-protocol.md §4.2);
 * - the digests a delta reports for a marked chunk of its base (`expectedDigests`) match no
 *   chunk, so the comparison always sends it again (base-digests.ts);
 * - a commit drops the marks its delta staged (the new generation holds the source's bytes there).
 *
 * The file holds chunk ranges per disk, bounded: more than MAX_RANGES ranges mark the whole disk.
 */
import { open } from 'node:fs/promises';
import { z } from 'zod';
import type { Logger } from '../../core/log.ts';
import { CHUNK_SIZE } from '../types.ts';
import type { StoreContext } from './context.ts';
import { stagedFiles } from './deltas.ts';
import { io, isErrno, readJson, removeIfExists, writeFileDurable } from './files.ts';
import type { DeltaRecord } from './records.ts';
import { isUnstaged, readSums, SUMS_BLOCK_CHUNKS } from './sums.ts';

/** Chunk ranges [from, to) per disk. */
export type ResendMarks = Record<string, [number, number][]>;

const MAX_RANGES = 4096;

const marksSchema = z.object({
  format: z.literal('haven-resend'),
  disks: z.record(z.string(), z.array(z.tuple([z.number().int().min(0), z.number().int().min(0)]))),
});

/** The server's marks; empty when none (or the file cannot be read: the next verify finds the damage again). */
export async function readResendMarks(ctx: StoreContext, server: string, log?: Logger): Promise<ResendMarks> {
  try {
    const file = await readJson(ctx.layout.resend(server), (v) => marksSchema.parse(v));
    // Sorted and merged here, whatever the file holds: isMarked searches them.
    return Object.fromEntries(Object.entries(file?.disks ?? {}).map(([d, r]) => [d, mergeRanges(r)]));
  } catch (e) {
    log?.warn('the list of chunks to send again cannot be read; ignored', { server, err: e });
    return {};
  }
}

export async function hasResendMarks(ctx: StoreContext, server: string): Promise<boolean> {
  return Object.values(await readResendMarks(ctx, server)).some((r) => r.length > 0);
}

/** Whether chunk `c` of `disk` is marked (ranges are sorted and disjoint: a binary search). */
export function isMarked(marks: ResendMarks, disk: string, c: number): boolean {
  const ranges = marks[disk] ?? [];
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const range = ranges[mid];
    if (!range) return false;
    const [from, to] = range;
    if (c < from) hi = mid - 1;
    else if (c >= to) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * Adds damaged chunks of `disk` (of `size` bytes). `whole`: more are damaged than were listed, so
 * the whole disk is marked. Best effort for readers (`haven verify` on a read-only store): a mark
 * that cannot be written is logged, and the damage is found again by the next check.
 */
export async function addResendMarks(
  ctx: StoreContext,
  server: string,
  disk: string,
  chunks: number[],
  size: number,
  whole: boolean,
  log: Logger,
): Promise<void> {
  if (!chunks.length && !whole) return;
  try {
    const marks = await readResendMarks(ctx, server, log);
    const all: [number, number][] = [
      ...(marks[disk] ?? []),
      ...chunks.map((c): [number, number] => [c, c + 1]),
    ];
    let ranges = mergeRanges(all);
    if (whole || ranges.length > MAX_RANGES) ranges = [[0, Math.ceil(size / CHUNK_SIZE)]];
    marks[disk] = ranges;
    await writeMarks(ctx, server, marks);
    log.warn('damaged chunks marked to be sent again from the source by the next run', {
      server,
      disk,
      chunks: chunks.length,
      wholeDisk: ranges.length === 1 && ranges[0]?.[0] === 0 && whole,
    });
  } catch (e) {
    log.warn('could not mark damaged chunks to be sent again', { server, disk, err: e });
  }
}

/**
 * After delta `delta` is planned for commit: drops the marks of chunks it staged. A first run's
 * delta (direct) wrote every chunk of its disks.
 */
export async function settleResendMarks(ctx: StoreContext, delta: DeltaRecord, log: Logger): Promise<void> {
  const marks = await readResendMarks(ctx, delta.server, log);
  const disks = Object.keys(marks);
  if (!disks.length) return;
  for (const disk of disks) {
    if (!delta.meta.disks.some((d) => d.name === disk)) continue;
    if (delta.kind === 'direct') {
      delete marks[disk];
      continue;
    }
    const left = await unstaged(delta, disk, marks[disk] ?? []);
    if (left.length) marks[disk] = left;
    else delete marks[disk];
  }
  const remaining = Object.values(marks).reduce((n, r) => n + r.length, 0);
  if (remaining) await writeMarks(ctx, delta.server, marks);
  else await removeIfExists(ctx.layout.resend(delta.server));
  log.info('chunks sent again from the source', { server: delta.server, stillMarked: remaining });
}

/** The marked chunks the staged delta does not hold, read in blocks of digest entries. */
async function unstaged(delta: DeltaRecord, disk: string, ranges: [number, number][]) {
  const path = stagedFiles(delta.dataDir).sums(disk);
  const fh = await open(path, 'r').catch((e) => {
    if (isErrno(e, 'ENOENT')) return null;
    throw e;
  });
  if (!fh) return ranges;
  const left: [number, number][] = [];
  try {
    for (const [from, to] of ranges) {
      for (let first = from; first < to; first += SUMS_BLOCK_CHUNKS) {
        const n = Math.min(SUMS_BLOCK_CHUNKS, to - first);
        const entries = await io(path, () => readSums(fh, first, n));
        for (let i = 0; i < n; i++) if (isUnstaged(entries, i)) left.push([first + i, first + i + 1]);
      }
    }
  } finally {
    await fh.close();
  }
  return mergeRanges(left);
}

function mergeRanges(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [from, to] of sorted) {
    const last = out[out.length - 1];
    if (last && from <= last[1]) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  }
  return out;
}

async function writeMarks(ctx: StoreContext, server: string, marks: ResendMarks): Promise<void> {
  const disks = Object.fromEntries(Object.entries(marks).filter(([, r]) => r.length));
  await writeFileDurable(ctx.layout.resend(server), `${JSON.stringify({ format: 'haven-resend', disks })}\n`);
}
