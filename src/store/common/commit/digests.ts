/**
 * The new generation's digest files (docs/design.md §4.2 step 4), without reading images back (except
 * one chunk per resized disk whose size was not a multiple of a chunk). Store format 2: an
 * all-zero entry is a zero chunk (sums.ts), so nothing is written for ranges that were never
 * written or were sent as zero ranges (issue 13.2):
 * - a first run: the delta's own `.sums` as it is (unstaged chunks are holes of the image);
 * - later runs: the base generation's digests (cloned, or copied keeping holes), resized (grown
 *   chunks are holes), overlaid with the delta's chunk digests in index order, zero ranges
 *   cleared (long ones punched).
 */
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { copyFile, open, rename, stat } from 'node:fs/promises';
import { digest } from '../../../core/digest.ts';
import { exec } from '../../../core/exec.ts';
import { CHUNK_SIZE, type DiskSpec, type Generation } from '../../types.ts';
import { recordChecked } from '../checked.ts';
import type { StoreContext } from '../context.ts';
import { readIndexEntries, stagedFiles } from '../deltas.ts';
import { ensureDir, exists, fsyncDir, io, removeIfExists, tmpName } from '../files.ts';
import { readManifest } from '../metadata.ts';
import type { DeltaRecord, Journal } from '../records.ts';
import { chunkCount, chunkLength, clearSums, SumsOverlay, sumsLength, writeSums } from '../sums.ts';

export async function writeGenerationDigests(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
): Promise<void> {
  const server = journal.server;
  const dir = ctx.layout.digestsDir(server, journal.generationId);
  await ensureDir(dir);
  await fsyncDir(ctx.layout.digestsRoot(server));
  if (delta.kind === 'direct') await adoptFirstRunDigests(ctx, journal, delta);
  else {
    const base = (await readManifest(ctx, server))?.generations.find(
      (g) => g.id === journal.baseGenerationId,
    );
    await overlayBaseDigests(ctx, journal, delta, base);
  }
  // A journal from before the record existed says nothing: the next commit checks.
  for (const [disk, at] of Object.entries(journal.checked ?? {}))
    await recordChecked(ctx, server, journal.generationId, disk, Date.parse(at), ctx.log);
  await fsyncDir(dir);
  if (delta.kind === 'direct') await fsyncDir(delta.dataDir);
  for (const d of delta.meta.disks)
    await ctx.mirror?.saved(ctx.layout.sums(server, journal.generationId, d.name));
}

/** A first run's digests are the delta's own: moved into place, "not staged" read as zero chunks. */
async function adoptFirstRunDigests(ctx: StoreContext, journal: Journal, delta: DeltaRecord): Promise<void> {
  for (const d of delta.meta.disks) {
    const src = stagedFiles(delta.dataDir).sums(d.name);
    const dst = ctx.layout.sums(journal.server, journal.generationId, d.name);
    if (await exists(src)) await io(src, () => rename(src, dst));
    await io(dst, async () => {
      const fh = await open(dst, 'r+');
      try {
        await fh.truncate(sumsLength(d.size));
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
  }
}

/** One new digest file being written (a temporary name until it is complete). */
interface NewSums {
  disk: DiskSpec;
  fh: FileHandle;
  tmp: string;
  dst: string;
  overlay: SumsOverlay;
  /** The chunk whose bytes changed by a resize alone, until an entry of the delta covers it. */
  boundary: number | undefined;
}

async function overlayBaseDigests(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
  base: Generation | undefined,
): Promise<void> {
  const files: NewSums[] = [];
  try {
    for (const d of delta.meta.disks) await startNewSums(ctx, journal, d, base, files);
    await overlayIndex(ctx, delta, files);
    for (const f of files) if (f.boundary !== undefined) await digestBoundary(ctx, journal, f, f.boundary);
    for (const f of files) {
      await io(f.tmp, () => f.fh.sync());
      await f.fh.close();
      await io(f.tmp, () => rename(f.tmp, f.dst));
    }
    files.length = 0;
  } finally {
    for (const f of files) {
      await f.fh.close().catch(() => {});
      await removeIfExists(f.tmp).catch(() => {});
    }
  }
}

/**
 * Starts the new digest file of `disk` (added to `files` as soon as it is open): the base's
 * digests (cloned where the filesystem can), resized, grown chunks as zero chunks.
 */
async function startNewSums(
  ctx: StoreContext,
  journal: Journal,
  disk: DiskSpec,
  base: Generation | undefined,
  files: NewSums[],
): Promise<void> {
  const dst = ctx.layout.sums(journal.server, journal.generationId, disk.name);
  const tmp = tmpName(dst);
  const baseDisk = base?.disks.find((x) => x.name === disk.name);
  if (base && baseDisk) await copySparse(ctx.layout.sums(journal.server, base.id, disk.name), tmp);
  const fh = await io(tmp, () => open(tmp, baseDisk ? 'r+' : 'w+'));
  const file: NewSums = { disk, fh, tmp, dst, overlay: new SumsOverlay(fh), boundary: undefined };
  files.push(file);
  // Grown chunks are holes, which read as zero chunks.
  await io(tmp, () => fh.truncate(sumsLength(disk.size)));
  if (baseDisk && baseDisk.size !== disk.size) {
    // The base's last chunk may have been short: as a hole it was a zero chunk of that length, and
    // the boundary chunk's digest is worked out below whatever it held.
    const shorter = Math.min(baseDisk.size, disk.size);
    if (shorter % CHUNK_SIZE !== 0) file.boundary = Math.floor(shorter / CHUNK_SIZE);
  }
}

/** The delta's index in order: data entries' digests overlaid, zero ranges as zero chunks. */
async function overlayIndex(ctx: StoreContext, delta: DeltaRecord, files: NewSums[]): Promise<void> {
  const indexPath = stagedFiles(delta.dataDir).index;
  const index = await io(indexPath, () => open(indexPath, 'r'));
  try {
    for await (const e of readIndexEntries(index, delta.indexLength, indexPath)) {
      const f = files[e.disk];
      if (!f) continue;
      const first = e.offset / CHUNK_SIZE;
      const end = chunkCount(e.offset + e.length);
      if (e.kind === 'data') await f.overlay.add(first, e.digests);
      else {
        // A zero range may span millions of chunks: cleared directly (long ones punched), after
        // what came before.
        await f.overlay.flush();
        await io(f.tmp, () => clearSums(f.fh, first, end, { path: f.tmp, log: ctx.log }));
      }
      if (f.boundary !== undefined && f.boundary >= first && f.boundary < end) f.boundary = undefined;
    }
    for (const f of files) await io(f.tmp, () => f.overlay.flush());
  } finally {
    await index.close();
  }
}

/** Files up to this size are copied by Node; larger ones by `cp`, which keeps their holes. */
const SMALL_SUMS = 4 * 1024 * 1024;

/**
 * A digest file copied: a reflink where the filesystem has them, else with its holes kept (a
 * disk declared huge and never written has a huge, empty digest file: issue 13.2).
 */
async function copySparse(src: string, dst: string): Promise<void> {
  const size = (await io(src, () => stat(src))).size;
  if (size <= SMALL_SUMS) {
    await io(src, () => copyFile(src, dst, fsConstants.COPYFILE_FICLONE));
    return;
  }
  await exec('cp', ['--reflink=auto', '--sparse=always', '--', src, dst]);
}

/** The boundary chunk's digest, read from the slot image (its bytes were cut or padded, not sent). */
async function digestBoundary(
  ctx: StoreContext,
  journal: Journal,
  file: NewSums,
  chunk: number,
): Promise<void> {
  const buf = Buffer.alloc(chunkLength(file.disk.size, chunk));
  await ctx.images.read(journal.server, file.disk.name, 'incomplete', buf, buf.length, chunk * CHUNK_SIZE);
  await writeSums(file.fh, chunk, digest(ctx.descriptor.digest, buf));
}
