/**
 * `haven verify` of a server's point-in-time journal (docs/continuous.md, "Verifying the
 * journal"): every point in the window is the base plus the segments up to it, so every point
 * verifies when each of those pieces does:
 *
 * - the base image against its digests (`base/<disk>.sums`, kept by folding);
 * - every segment's data against the chunk digests its index carries;
 * - the head digests against the base digests with every segment's digests written over them in
 *   order (what a checksum resync trusts).
 *
 * Damage in the base spoils every point; damage in segment k spoils the points from k on. Each is
 * reported as STORE_JOURNAL_DAMAGED naming the piece and the points it spoils; the verdict is per
 * server, and one server's damage never stops the others from being checked. The server's
 * writer lock is held meanwhile (as for materialising a point): folding waits, the lanes fall
 * behind for that long and catch up after. Memory: one 4 MiB piece and one block of digests.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { chunkDigests, zeroRangeDigests } from '../../../core/digest.ts';
import { asHavenError, InterruptedError } from '../../../core/errors.ts';
import {
  CHUNK_SIZE,
  DIGEST_BYTES,
  type JournalVerdict,
  type VerifyOptions,
  type VerifyProblem,
  type VerifyReport,
} from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { exists, io, readAllAt } from '../files.ts';
import { lockServer } from '../server-lock.ts';
import { chunkCount, readSums, SUMS_BLOCK_CHUNKS, sumsLength } from '../sums.ts';
import { type PitFile, PitLayout, pointsOf } from './file.ts';
import { recoverJournal } from './journal.ts';
import { eachImageDigests, type IndexEntry, readIndex } from './segment.ts';

type Problem = Omit<VerifyProblem, 'server'>;

export interface JournalCheck {
  verdict: JournalVerdict;
  problems: Problem[];
  checkedBytes: number;
}

interface Disk {
  name: string;
  size: number;
}

/** Sequence numbers from which points are spoiled, and the problems found. */
class Findings {
  /** The lowest seq whose point is spoiled (0: the base, so every point). */
  from = Number.POSITIVE_INFINITY;
  problems: Problem[] = [];
  bytes = 0;
  add(fromSeq: number, p: Omit<Problem, 'code'>): void {
    this.from = Math.min(this.from, fromSeq);
    this.problems.push({ code: 'STORE_JOURNAL_DAMAGED', ...p });
  }
}

export async function verifyJournal(
  ctx: StoreContext,
  server: string,
  options: VerifyOptions,
): Promise<JournalCheck> {
  const p = new PitLayout(ctx, server);
  const lock = await lockServer(ctx, server, 'verify the journal', 60_000);
  try {
    // Completes a fold a crash interrupted, as every opener of the journal does.
    const pit = await recoverJournal(ctx, p, ctx.log);
    const points = pit ? pointsOf(pit) : [];
    const f = new Findings();
    if (pit) {
      for (const d of pit.disks) await checkDisk(ctx, p, pit, d, options, f);
    }
    const spoiled = points.filter((pt) => (pit?.base?.id === pt.id ? 0 : pt.seq) >= f.from);
    return {
      verdict: {
        server,
        points: points.length,
        oldest: points[0]?.id ?? null,
        newest: points.at(-1)?.id ?? null,
        damaged: spoiled.map((pt) => pt.id),
        ok: f.problems.length === 0,
      },
      problems: f.problems,
      checkedBytes: f.bytes,
    };
  } finally {
    await lock.release();
  }
}

async function checkDisk(
  ctx: StoreContext,
  p: PitLayout,
  pit: PitFile,
  d: Disk,
  options: VerifyOptions,
  f: Findings,
): Promise<void> {
  await checkBase(ctx, p, d, options, f);
  const indexes: { seq: number; id: string; entries: IndexEntry[] }[] = [];
  for (const s of pit.segments) {
    try {
      const entries = await readIndex(p, s.id, d.name);
      indexes.push({ seq: s.seq, id: s.id, entries });
      await checkSegment(ctx, p, s, d, entries, options, f);
    } catch (e) {
      if (e instanceof InterruptedError || options.signal?.aborted) throw e;
      f.add(s.seq, {
        disk: d.name,
        pointId: s.id,
        message: `segment ${s.id} of ${d.name} cannot be read: ${asHavenError(e).message}`,
      });
    }
  }
  await checkHead(ctx, p, d, indexes, f);
}

async function withRead<T>(path: string, fn: (fh: FileHandle) => Promise<T>): Promise<T | null> {
  if (!(await exists(path))) return null;
  const fh = await io(path, () => open(path, 'r'));
  try {
    return await fn(fh);
  } finally {
    await fh.close();
  }
}

async function checkBase(
  ctx: StoreContext,
  p: PitLayout,
  d: Disk,
  options: VerifyOptions,
  f: Findings,
): Promise<void> {
  const image = p.base(d.name);
  const sumsPath = p.baseSums(d.name);
  const size = (await exists(image)) ? (await stat(image)).size : -1;
  const sumsSize = (await exists(sumsPath)) ? (await stat(sumsPath)).size : -1;
  if (size !== d.size || sumsSize !== sumsLength(d.size)) {
    f.add(0, {
      disk: d.name,
      message: `the base of ${d.name} is ${size < 0 ? 'missing' : `${size} bytes`}, its digests ${sumsSize < 0 ? 'missing' : `${sumsSize} bytes`} (expected ${d.size} and ${sumsLength(d.size)})`,
    });
    return;
  }
  if (options.readImages === false) return;
  const bad: number[] = [];
  await withRead(sumsPath, (sums) =>
    withRead(image, (fh) =>
      eachImageDigests(
        ctx.descriptor.digest,
        fh,
        d.size,
        async (first, got, bytes) => {
          f.bytes += bytes;
          const want = await readSums(sums, first, got.length / DIGEST_BYTES);
          if (!got.equals(want)) bad.push(...differing(got, want, first));
        },
        options.signal,
      ),
    ),
  );
  if (bad.length) {
    f.add(0, {
      disk: d.name,
      badChunks: bad.slice(0, 100),
      message: `the base of ${d.name}: ${bad.length} chunk(s) differ from their digests (first at byte ${(bad[0] ?? 0) * CHUNK_SIZE})`,
    });
  }
}

function differing(got: Buffer, want: Buffer, first: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < got.length / DIGEST_BYTES; i++) {
    const a = i * DIGEST_BYTES;
    if (got.compare(want, a, a + DIGEST_BYTES, a, a + DIGEST_BYTES) !== 0) out.push(first + i);
  }
  return out;
}

/** The segment's data of `d`: there, long enough, and every data chunk matching its digest. */
async function checkSegment(
  ctx: StoreContext,
  p: PitLayout,
  s: { id: string; seq: number },
  d: Disk,
  entries: IndexEntry[],
  options: VerifyOptions,
  f: Findings,
): Promise<void> {
  const dataEntries = entries.filter((e) => e.at !== undefined);
  if (dataEntries.length === 0) return;
  const path = p.data(s.id, d.name);
  const need = Math.max(...dataEntries.map((e) => (e.at ?? 0) + e.l));
  const have = (await exists(path)) ? (await stat(path)).size : -1;
  if (have < need) {
    f.add(s.seq, {
      disk: d.name,
      pointId: s.id,
      message: `segment ${s.id} of ${d.name}: its data is ${have < 0 ? 'missing' : `${have} bytes`}, its index needs ${need}`,
    });
    return;
  }
  if (options.readImages === false) return;
  const bad: number[] = [];
  await withRead(path, async (fh) => {
    const buf = Buffer.allocUnsafe(64 * CHUNK_SIZE);
    for (const e of dataEntries) {
      const want = Buffer.from(e.d ?? '', 'hex');
      for (let done = 0; done < e.l; done += buf.length) {
        options.signal?.throwIfAborted();
        const n = Math.min(buf.length, e.l - done);
        await readAllAt(fh, buf, n, (e.at ?? 0) + done);
        f.bytes += n;
        const got = chunkDigests(ctx.descriptor.digest, buf.subarray(0, n), CHUNK_SIZE);
        const at = (done / CHUNK_SIZE) * DIGEST_BYTES;
        const expected = Buffer.alloc(got.length);
        want.copy(expected, 0, at, at + got.length);
        if (!got.equals(expected)) bad.push(...differing(got, expected, (e.o + done) / CHUNK_SIZE));
      }
    }
  });
  if (bad.length) {
    f.add(s.seq, {
      disk: d.name,
      pointId: s.id,
      badChunks: bad.slice(0, 100),
      message: `segment ${s.id} of ${d.name}: ${bad.length} chunk(s) differ from their digests (first at byte ${(bad[0] ?? 0) * CHUNK_SIZE})`,
    });
  }
}

/**
 * The head digests equal the base digests with every segment's digests written over them, in
 * order: compared a block of digests at a time.
 */
async function checkHead(
  ctx: StoreContext,
  p: PitLayout,
  d: Disk,
  indexes: { entries: IndexEntry[] }[],
  f: Findings,
): Promise<void> {
  const headPath = p.headSums(d.name);
  const headSize = (await exists(headPath)) ? (await stat(headPath)).size : -1;
  if (headSize !== sumsLength(d.size)) {
    f.problems.push({
      code: 'STORE_JOURNAL_DAMAGED',
      disk: d.name,
      message: `the head digests of ${d.name} are ${headSize < 0 ? 'missing' : `${headSize} bytes`} (expected ${sumsLength(d.size)}); the points are not affected, a checksum resync would be`,
    });
    return;
  }
  const chunks = chunkCount(d.size);
  let differ = 0;
  await withRead(p.baseSums(d.name), (base) =>
    withRead(headPath, async (head) => {
      for (let c = 0; c < chunks; c += SUMS_BLOCK_CHUNKS) {
        const n = Math.min(SUMS_BLOCK_CHUNKS, chunks - c);
        const want = await readSums(base, c, n);
        for (const { entries } of indexes) overlay(ctx, want, c, n, entries, d.size);
        const got = await readSums(head, c, n);
        if (!got.equals(want)) differ += differing(got, want, c).length;
      }
    }),
  );
  if (differ) {
    f.problems.push({
      code: 'STORE_JOURNAL_DAMAGED',
      disk: d.name,
      message: `the head digests of ${d.name}: ${differ} chunk(s) differ from the base's and the segments'; the points are not affected, a checksum resync would be`,
    });
  }
}

/** Writes the digests of `entries` that fall in chunks [c, c+n) over `block`. */
function overlay(
  ctx: StoreContext,
  block: Buffer,
  c: number,
  n: number,
  entries: IndexEntry[],
  size: number,
): void {
  for (const e of entries) {
    const first = Math.floor(e.o / CHUNK_SIZE);
    const count = Math.ceil(e.l / CHUNK_SIZE);
    if (first + count <= c || first >= c + n) continue;
    const digests =
      e.d !== undefined
        ? Buffer.from(e.d, 'hex')
        : zeroRangeDigests(ctx.descriptor.digest, e.o, e.l, CHUNK_SIZE, size);
    const from = Math.max(first, c);
    const to = Math.min(first + count, c + n);
    digests.copy(
      block,
      (from - c) * DIGEST_BYTES,
      (from - first) * DIGEST_BYTES,
      (to - first) * DIGEST_BYTES,
    );
  }
}

/**
 * The journals of `servers` checked into `report`: per server its verdict, its problems, the
 * points and bytes checked. A server whose journal cannot be checked at all (its record damaged,
 * its lock held for over a minute) is one problem of that server; the others are still checked.
 */
export async function verifyJournals(
  ctx: StoreContext,
  servers: string[],
  options: VerifyOptions,
  report: VerifyReport,
): Promise<void> {
  for (const server of servers) {
    try {
      const c = await verifyJournal(ctx, server, options);
      report.journals.push(c.verdict);
      report.checkedPoints += c.verdict.points;
      report.checkedBytes += c.checkedBytes;
      for (const p of c.problems) report.problems.push({ server, ...p });
    } catch (e) {
      if (e instanceof InterruptedError || options.signal?.aborted) throw e;
      const err = asHavenError(e);
      report.journals.push({ server, points: 0, oldest: null, newest: null, damaged: [], ok: false });
      report.problems.push({
        server,
        code: err.code,
        message: `the journal of ${server} cannot be checked: ${err.message}`,
        ...(err.hint ? { hint: err.hint } : {}),
      });
    }
  }
  report.ok = report.problems.length === 0;
}
