/**
 * Primary-side staging on a cache drive (docs/design.md §4.6): the point in time is copied to the cache
 * at local disk speed, the backup job (or the offline export) is ended, and the transfer then
 * reads the staged copy instead, at whatever pace the link allows.
 *
 * Each disk is staged as a qcow2 image of the disk's size holding only the extents the run's
 * plan reads (data and zero ranges), plus an enabled persistent bitmap. QEMU marks every write,
 * including write-zeroes, in that bitmap, so re-exporting the image with `qemu-nbd -B` offers
 * the same two maps the engine plans from: `base:allocation` (what the staged image holds) and
 * `qemu:dirty-bitmap:haven-stage` (exactly the ranges written). The transfer then runs unchanged:
 * a full disk plans its data extents from the allocation map, an incremental one plans dirty ∩
 * allocation, a resync reads everything (the staged image holds all of it). The bitmap's
 * granularity divides the chunk size and planned extents are chunk-aligned, so a dirty bit never
 * covers bytes that were not staged.
 *
 * On any failure the staged files are removed and the caller's source is left as it was (still
 * held), so the copy can go on without the cache.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';
import { ensureRunDir } from '../core/paths.ts';
import { NbdClient } from '../nbd/index.ts';
import {
  bitmapAdd,
  exportImage,
  getCheckpoint,
  getServer,
  type ImageExport,
  qemuImgInfo,
  type Virsh,
} from '../virt/index.ts';
import { orderedReads } from './ordered-reads.ts';
import { type ProgressSnapshot, ProgressTracker } from './progress.ts';
import type { ProtectPlan } from './replicate.ts';
import { protectedDisks } from './replicate.ts';
import { connectSourceDisk, type Source, type SourceDisk, servedBy } from './source.ts';
import { diskPlan, diskPlanTotals } from './transfer.ts';

/** Name of the bitmap in staged images (offered as qemu:dirty-bitmap:haven-stage). */
export const STAGE_BITMAP = 'haven-stage';

/** qcow2 metadata (L1/L2 tables, refcounts, the bitmap) on top of the data, per disk. */
export function stagingOverhead(size: number): number {
  return Math.ceil(size / 4096) + 2 * 1024 * 1024;
}

export interface StageOptions {
  server: string;
  /** A directory on the cache drive; created, and removed again by the returned source's release. */
  dir: string;
  /** Where the staging exports' sockets go (QEMU-writable run directory). */
  runDir: string;
  /** The target's chunk size (extents are planned on it). */
  chunkSize: number;
  /** Bytes per read and reads in flight (memory: pieceBytes × inflight). */
  pieceBytes?: number;
  inflight?: number;
  onProgress?: (p: ProgressSnapshot) => void;
  signal?: AbortSignal;
  log: Logger;
}

/** A source that reads from the cache drive. */
export interface StagedSource extends Source {
  /** Bytes of data and zero ranges staged. */
  stagedBytes: number;
  /** Bytes the staged images occupy on the cache drive. */
  stagedOnDisk: number;
  /** When the server's point in time was released (the backup job ended). */
  releasedAt: Date;
}

/** The largest power of two (up to 64 KiB) that divides the chunk size. */
function granularityFor(chunkSize: number): number {
  let g = 512;
  while (g < 65536 && chunkSize % (g * 2) === 0) g *= 2;
  return g;
}

async function stageDisk(
  d: SourceDisk,
  file: string,
  o: StageOptions,
  progress: ProgressTracker,
  exports: ImageExport[],
): Promise<number> {
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', file, String(d.size)]);
  await bitmapAdd(file, STAGE_BITMAP, { granularity: granularityFor(o.chunkSize), log: o.log });
  const sockets = ensureRunDir(o.runDir, 'nbd');
  const writable = await exportImage({
    path: file,
    format: 'qcow2',
    readOnly: false,
    cache: 'writeback',
    socketPath: join(sockets, `stage-${process.pid}-${exports.length}-${Date.now() % 1e6}.sock`),
    exportName: 'stage',
    log: o.log,
  });
  exports.push(writable);
  const src = await connectSourceDisk(d, o.log);
  let dst: NbdClient | undefined;
  let staged = 0;
  try {
    dst = await NbdClient.connect({ socketPath: writable.socketPath, exportName: 'stage', log: o.log });
    const plan = diskPlan({
      client: src,
      mode: d.mode,
      dirtyContext: d.dirtyContext,
      chunkSize: o.chunkSize,
      size: d.size,
      from: 0,
    });
    const pieces = orderedReads(plan, {
      read: (offset, length) => src.read(offset, length),
      inflight: o.inflight ?? 16,
      maxPiece: o.pieceBytes ?? 256 * 1024,
    });
    const out = dst;
    // Writes are pipelined like the reads (extents never overlap, so their order does not
    // matter): memory stays within reads in flight + writes in flight, each at most a piece.
    const maxWrites = o.inflight ?? 16;
    const writes = new Set<Promise<void>>();
    let failure: unknown;
    for await (const { extent, data } of pieces) {
      o.signal?.throwIfAborted();
      if (failure !== undefined) throw failure;
      const w: Promise<void> = (
        data ? out.write(extent.offset, data) : out.writeZeroes(extent.offset, extent.length)
      )
        .then(() => {
          staged += extent.length;
          progress.add(extent.length);
        })
        .catch((e) => {
          failure ??= e;
        })
        .finally(() => writes.delete(w));
      writes.add(w);
      if (writes.size >= maxWrites) await Promise.race(writes);
    }
    await Promise.all(writes);
    if (failure !== undefined) throw failure;
    await out.flush();
  } finally {
    await Promise.allSettled([src.close(), dst?.close()]);
  }
  // Stopping qemu-nbd closes the image, which writes the bitmap into it.
  await writable.stop();
  exports.splice(exports.indexOf(writable), 1);
  return staged;
}

/**
 * Copies the source's planned extents to `o.dir`, releases the source, and returns a source
 * reading the staged copy. Its release stops the exports and deletes the staged files.
 */
export async function stageSource(source: Source, o: StageOptions): Promise<StagedSource> {
  const log = o.log.child({ staging: o.dir });
  await mkdir(o.dir, { recursive: true });
  const exports: ImageExport[] = [];
  const files = source.disks.map((d) => join(o.dir, `${d.name}.qcow2`));
  const cleanup = async () => {
    await Promise.allSettled(exports.map((e) => e.stop()));
    await rm(o.dir, { recursive: true, force: true });
  };
  const progress = new ProgressTracker(0, o.server, undefined, o.onProgress);
  let stagedBytes = 0;
  let stagedOnDisk = 0;
  try {
    let total = 0;
    for (const d of source.disks) {
      const client = await connectSourceDisk(d, log);
      try {
        const t = await diskPlanTotals({
          client,
          mode: d.mode,
          dirtyContext: d.dirtyContext,
          chunkSize: o.chunkSize,
          size: d.size,
          from: 0,
        });
        total += t.data + t.zero;
      } finally {
        await client.close();
      }
    }
    progress.setTotal(total);
    for (const [i, d] of source.disks.entries()) {
      progress.setPhase('staging to the cache drive', d.name);
      stagedBytes += await stageDisk(d, files[i]!, o, progress, exports);
    }
    for (const f of files) stagedOnDisk += (await stat(f)).blocks * 512;
  } catch (e) {
    await cleanup();
    throw e;
  }
  // The point in time is on the cache drive: end the backup job (a shut-down server was already
  // running again; a live one stops paying for copy-before-write).
  await source.release();
  const releasedAt = new Date();
  log.info('staged on the cache drive; point in time released', {
    stagedBytes,
    stagedOnDisk,
    checkpoint: source.pointInTime,
  });
  try {
    const disks: SourceDisk[] = [];
    for (const [i, d] of source.disks.entries()) {
      const exp = await exportImage({
        path: files[i]!,
        format: 'qcow2',
        readOnly: true,
        bitmap: d.dirtyContext ? STAGE_BITMAP : undefined,
        socketPath: join(
          ensureRunDir(o.runDir, 'nbd'),
          `staged-${process.pid}-${i}-${Date.now() % 1e6}.sock`,
        ),
        exportName: d.name,
        log,
      });
      exports.push(exp);
      disks.push(servedBy(d, exp));
    }
    let released: Promise<void> | undefined;
    return {
      ...source,
      disks,
      partial: true,
      // No backup socket any more: a crashed run's successor takes a new point in time.
      socketPath: undefined,
      stagedBytes,
      stagedOnDisk,
      releasedAt,
      release: () => {
        released ??= cleanup();
        return released;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * An upper bound of what staging a server will write to the cache drive, from its plan: the
 * changed bytes libvirt reports for the base checkpoint for an incremental disk of a running
 * server, else the bytes its image occupies (a full copy or resync never stages more than
 * what is allocated), plus qcow2 metadata.
 */
export async function estimateStaging(virsh: Virsh, plan: ProtectPlan, log: Logger): Promise<number> {
  const server = await getServer(virsh, plan.server, { log });
  const disks = protectedDisks(server);
  let dirty: Map<string, number> | undefined;
  if (plan.base && plan.state === 'running' && plan.disks.some((d) => d.mode === 'incremental')) {
    try {
      const cp = await getCheckpoint(virsh, plan.server, plan.base, { size: true });
      dirty = new Map(cp.disks.filter((d) => d.size !== undefined).map((d) => [d.name, d.size!]));
    } catch (e) {
      log.verbose('checkpoint size unavailable; estimating from allocation', { err: e });
    }
  }
  let total = 0;
  for (const d of disks) {
    const mode = plan.disks.find((p) => p.target === d.target)?.mode ?? 'full';
    const changed = mode === 'incremental' ? dirty?.get(d.target) : undefined;
    let bytes = changed;
    if (bytes === undefined) {
      try {
        const info = await qemuImgInfo(d.path, { format: d.format, log });
        bytes = info.actualSize ?? d.size;
      } catch {
        bytes = d.size;
      }
    }
    total += Math.min(bytes, d.size) + stagingOverhead(d.size);
  }
  return total;
}
