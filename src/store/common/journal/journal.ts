/**
 * A server's point-in-time journal in a store (file.ts says where its files are): opening a
 * segment, appending it, folding what left the window into the base, answering what the journal
 * holds, and materialising a point as raw images (docs/continuous.md).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { asHavenError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { isSafeName } from '../../../core/names.ts';
import { activeAtDrError, storeError } from '../../errors.ts';
import type {
  JournalDeltaMeta,
  JournalInfo,
  JournalPoint,
  SegmentRecord,
  SegmentWriter,
} from '../../types.ts';
import { ensureDefinition } from '../commit/definition.ts';
import type { StoreContext } from '../context.ts';
import { validateDeltaMeta } from '../delta-meta.ts';
import { ensureDir, exists, fsyncDir, io, listDir, removeTree } from '../files.ts';
import { listServerDirs, readManifest } from '../metadata.ts';
import { lockServer } from '../server-lock.ts';
import { checkSourceDefinition } from '../source-definition.ts';
import { chunkCount, writeSums, writeZeroSums } from '../sums.ts';
import { cutGeneration, type OpenDelta } from './cut.ts';
import { emptyPit, type PitFile, PitLayout, pointsOf, readPit, writePit } from './file.ts';
import { applySegment, applySegmentSums, eachImageDigests } from './segment.ts';
import { JournalSegmentWriter, type SegmentHost } from './writer.ts';

const run = promisify(execFile);

export async function openSegment(
  ctx: StoreContext,
  meta: JournalDeltaMeta,
  log: Logger,
  openDelta?: OpenDelta,
): Promise<SegmentWriter> {
  validateDeltaMeta(meta);
  await checkSourceDefinition(meta.server, meta.sourceDefinition);
  const p = new PitLayout(ctx, meta.server);
  const lock = await lockServer(ctx, meta.server, `journal segment ${meta.pointInTime}`);
  try {
    const manifest = await readManifest(ctx, meta.server);
    if (manifest?.activeAtDr) throw activeAtDrError(meta.server, manifest.activeAtDr);
    let pit = await recoverJournal(ctx, p, log);
    if (!pit) pit = await createJournal(ctx, p, meta);
    checkDisks(pit, meta, p.dir);
    const tail = pit.segments.at(-1) ?? pit.base;
    if ((tail?.id ?? null) !== meta.journal.base) {
      throw storeError(
        'STORE_JOURNAL_TAIL',
        'conflict',
        `${meta.server}: the segment follows ${meta.journal.base ?? 'nothing (a new journal)'}, but the journal ends with ${tail?.id ?? 'nothing'}`,
        {
          hint: "The sender's idea of the journal is out of date; it asks the target again and resyncs by checksum.",
          details: { server: meta.server, base: meta.journal.base, tail: tail?.id ?? null },
        },
      );
    }
    const deltaId = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const host: SegmentHost = { append: (f, r) => appendSegment(ctx, p, f, r, meta, log) };
    // The job's schedule came: the point becomes the newest generation (cut.ts). A failed cut
    // leaves the segment appended; the next schedule cuts again.
    if (meta.journal.cut && openDelta) {
      host.appended = async (r) => {
        if (!r.consistent) return;
        const materialise = (out: ReadonlyMap<string, string>) =>
          materialisePoint(ctx, meta.server, r.id, out);
        await cutGeneration(ctx, openDelta, materialise, meta, r, log).catch((e: unknown) =>
          log.error('no generation cut from the journal', { point: r.id, err: asHavenError(e) }),
        );
      };
    }
    return new JournalSegmentWriter(ctx, p, pit, meta, deltaId, lock, host, log);
  } catch (e) {
    await lock.release();
    throw e;
  }
}

function checkDisks(pit: PitFile, meta: JournalDeltaMeta, dir: string): void {
  const same =
    pit.disks.length === meta.disks.length &&
    pit.disks.every((d, i) => d.name === meta.disks[i]?.name && d.size === meta.disks[i]?.size);
  if (same) return;
  throw storeError(
    'STORE_JOURNAL_DISKS',
    'conflict',
    `${meta.server}: the server's disks changed since its journal began`,
    {
      hint: 'The points no longer describe the disks: move the journal directory named in the details away, then protect the server again.',
      details: { journal: pit.disks, sent: meta.disks, path: dir },
    },
  );
}

async function createJournal(ctx: StoreContext, p: PitLayout, meta: JournalDeltaMeta): Promise<PitFile> {
  await removeTree(p.dir);
  for (const d of meta.disks) {
    await ensureDir(dirname(p.base(d.name)));
    await ensureDir(dirname(p.headSums(d.name)));
    await withFile(p.base(d.name), 'wx', (fh) => fh.truncate(d.size));
    for (const sums of [p.headSums(d.name), p.baseSums(d.name)]) {
      await withFile(sums, 'wx', async (fh) => {
        await writeZeroSums(fh, ctx.descriptor.digest, d.size, 0, chunkCount(d.size));
        await fh.sync();
      });
    }
  }
  await ensureDir(p.segmentsDir);
  const pit = emptyPit(meta.server, meta.disks, meta.journal.windowMs);
  await writePit(p, pit);
  return pit;
}

async function withFile<T>(path: string, flags: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
  const fh = await io(path, () => open(path, flags, 0o600));
  try {
    return await fn(fh);
  } finally {
    await fh.close();
  }
}

/**
 * Repairs what a crash left (a fold half done, head digests behind the newest segment, segment
 * directories never appended) and returns the journal; null when there is none.
 */
export async function recoverJournal(ctx: StoreContext, p: PitLayout, log: Logger): Promise<PitFile | null> {
  const pit = await readPit(p);
  if (!pit) return null;
  await ensureBaseSums(ctx, p, pit, log);
  if (pit.folding !== undefined) await fold(ctx, p, pit, pit.folding, log);
  const tailSeq = (pit.segments.at(-1) ?? pit.base)?.seq ?? 0;
  if (pit.sumsSeq < tailSeq) {
    await updateSums(
      ctx,
      p,
      pit,
      pit.segments.filter((s) => s.seq > pit.sumsSeq),
    );
    pit.sumsSeq = tailSeq;
    await writePit(p, pit);
  }
  const known = new Set(pit.segments.map((s) => s.id));
  for (const dir of await listDir(p.segmentsDir)) {
    if (!known.has(dir)) await removeTree(p.segmentDir(dir));
  }
  return pit;
}

/**
 * A journal begun before the base had digests (`base/<disk>.sums`) gets them once, read from the
 * base image as it is: from then on `haven verify` can tell a damaged base from a sound one.
 */
async function ensureBaseSums(ctx: StoreContext, p: PitLayout, pit: PitFile, log: Logger): Promise<void> {
  for (const d of pit.disks) {
    const path = p.baseSums(d.name);
    if (await exists(path)) continue;
    const tmp = `${path}.new`;
    await withFile(p.base(d.name), 'r', (image) =>
      withFile(tmp, 'w', async (out) => {
        await eachImageDigests(ctx.descriptor.digest, image, d.size, (first, digests) =>
          writeSums(out, first, digests),
        );
        await out.sync();
      }),
    );
    await rename(tmp, path);
    await fsyncDir(dirname(path));
    log.info('journal base digests written', { server: pit.server, disk: d.name });
  }
}

async function updateSums(
  ctx: StoreContext,
  p: PitLayout,
  pit: PitFile,
  segments: SegmentRecord[],
): Promise<void> {
  for (const d of pit.disks) {
    await withFile(p.headSums(d.name), 'r+', async (fh) => {
      for (const s of segments) await applySegmentSums(p, s.id, d, ctx.descriptor.digest, fh);
      await fh.sync();
    });
  }
}

/** Records a sealed segment, moves the head digests to it, folds what left the window. */
async function appendSegment(
  ctx: StoreContext,
  p: PitLayout,
  pit: PitFile,
  record: SegmentRecord,
  meta: JournalDeltaMeta,
  log: Logger,
): Promise<void> {
  await fsyncDir(p.segmentsDir);
  pit.segments.push(record);
  pit.windowMs = meta.journal.windowMs;
  if (record.consistent) {
    pit.ids = {
      ...meta.journal.ids,
      lastWriter: {
        side: 'primary',
        ...(meta.journal.by ? { by: meta.journal.by } : {}),
        at: record.takenAt,
      },
    };
    delete pit.failedBack;
  }
  // The record first: from here on the segment exists, and recovery catches the digests up.
  await writePit(p, pit);
  await updateSums(ctx, p, pit, [record]);
  pit.sumsSeq = record.seq;
  const through = foldThrough(pit, Date.now());
  if (through === null) await writePit(p, pit);
  else await fold(ctx, p, pit, through, log);
  if (record.seq === 1 || !pit.base) await ensureDefinition(ctx, { server: meta.server, meta }, log);
}

/**
 * The newest consistent segment that left the window, while a newer point stays: everything up
 * to it folds into the base, which then holds the window's oldest point.
 */
export function foldThrough(pit: PitFile, now: number): number | null {
  const cutoff = now - pit.windowMs;
  const newestPoint = pit.segments.filter((s) => s.consistent).at(-1);
  let through: number | null = null;
  for (const s of pit.segments) {
    if (!s.consistent || s === newestPoint) continue;
    if (Date.parse(s.takenAt) < cutoff) through = s.seq;
  }
  return through;
}

/** Applies segments up to `through` to the base, in order, then drops them (idempotent). */
async function fold(
  ctx: StoreContext,
  p: PitLayout,
  pit: PitFile,
  through: number,
  log: Logger,
): Promise<void> {
  pit.folding = through;
  await writePit(p, pit);
  const folded = pit.segments.filter((s) => s.seq <= through);
  for (const d of pit.disks) {
    await withFile(p.base(d.name), 'r+', async (fh) => {
      for (const s of folded) await applySegment(p, s.id, d.name, fh);
      await fh.sync();
    });
    await withFile(p.baseSums(d.name), 'r+', async (fh) => {
      for (const s of folded) await applySegmentSums(p, s.id, d, ctx.descriptor.digest, fh);
      await fh.sync();
    });
  }
  const newBase = folded.filter((s) => s.consistent).at(-1);
  if (newBase) pit.base = newBase;
  pit.segments = pit.segments.filter((s) => s.seq > through);
  delete pit.folding;
  await writePit(p, pit);
  for (const s of folded) await removeTree(p.segmentDir(s.id));
  log.verbose('journal folded', { through, segments: folded.length });
}

export async function journalInfo(ctx: StoreContext, server: string): Promise<JournalInfo | null> {
  const pit = await readPit(new PitLayout(ctx, server));
  if (!pit) return null;
  const points = pointsOf(pit);
  const tail = pit.segments.at(-1) ?? pit.base;
  return {
    windowMs: pit.windowMs,
    segments: pit.segments.length,
    points: points.length,
    oldest: points[0] ? asPoint(points[0]) : null,
    newest: points.at(-1) ? asPoint(points.at(-1) as SegmentRecord) : null,
    tail: tail
      ? {
          id: tail.id,
          seq: tail.seq,
          pointInTime: tail.pointInTime,
          consistent: tail.consistent,
          generationId: tail.generationId,
        }
      : null,
    ids: pit.ids,
    ...(pit.failedBack ? { failedBack: pit.failedBack } : {}),
  };
}

/** Servers that have a journal in this store. */
export async function listJournals(ctx: StoreContext): Promise<string[]> {
  const out: string[] = [];
  for (const s of await listServerDirs(ctx)) {
    if (isSafeName(s) && (await exists(new PitLayout(ctx, s).file))) out.push(s);
  }
  return out;
}

export async function journalPoints(ctx: StoreContext, server: string): Promise<JournalPoint[]> {
  const pit = await readPit(new PitLayout(ctx, server));
  return pit ? pointsOf(pit).map(asPoint) : [];
}

function asPoint(s: SegmentRecord): JournalPoint {
  const { consistent: _c, dataBytes: _d, zeroBytes: _z, ...point } = s;
  return point;
}

/**
 * Writes the disks as they were at `pointId` into `outputs` (disk name → path of a raw image
 * that must not exist): a sparse copy of the base (a reflink where the filesystem has them),
 * then every segment up to the point, in order. The base and the segments are only read; the
 * server's writer lock keeps folding away meanwhile.
 */
export async function materialisePoint(
  ctx: StoreContext,
  server: string,
  pointId: string,
  outputs: ReadonlyMap<string, string>,
  signal?: AbortSignal,
): Promise<SegmentRecord> {
  const p = new PitLayout(ctx, server);
  const lock = await lockServer(ctx, server, `materialise point ${pointId}`, 60_000);
  const made: string[] = [];
  try {
    const pit = await recoverJournal(ctx, p, ctx.log);
    const point = pit ? pointsOf(pit).find((s) => s.id === pointId) : undefined;
    if (!pit || !point) throw pointNotFound(server, pointId);
    const upTo = pit.segments.filter((s) => s.seq <= point.seq);
    for (const d of pit.disks) {
      const out = outputs.get(d.name);
      if (!out) continue;
      signal?.throwIfAborted();
      made.push(out);
      await run('cp', ['--reflink=auto', '--sparse=always', '--no-clobber', p.base(d.name), out], { signal });
      await withFile(out, 'r+', async (fh) => {
        for (const s of upTo) {
          signal?.throwIfAborted();
          await applySegment(p, s.id, d.name, fh);
        }
        await fh.sync();
      });
    }
    return point;
  } catch (e) {
    for (const m of made) await rm(m, { force: true });
    throw e;
  } finally {
    await lock.release();
  }
}

export function pointNotFound(server: string, point: string) {
  return storeError('STORE_POINT_NOT_FOUND', 'not-found', `${server} has no journal point ${point}`, {
    hint: `List the points with \`haven images ${server} --store <store> --points\`.`,
    details: { server, point },
  });
}
