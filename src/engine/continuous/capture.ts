/**
 * One cycle's point in time (docs/continuous.md, "A cycle"): a pull backup with prepared scratch
 * files (virt/backup.ts backupBeginPrepared) that creates the cycle's checkpoint and exports the
 * disks as they were at that instant, with the dirty map since the previous checkpoint. The
 * protector reads the dirty map, decides what the lanes need, has it read into the cycle's
 * spool, and ends the job at once. A shut-off server is read through qemu-nbd with its persistent
 * bitmap instead (engine/source.ts's offline path: the final cycle after a shutdown).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { ensureRunDir } from '../../core/paths.ts';
import { CONTEXT_BASE_ALLOCATION, mapExtents, type NbdClient } from '../../nbd/index.ts';
import { BufferPool } from '../../protocol/index.ts';
import {
  activeBackup,
  backupAbort,
  backupBeginPrepared,
  backupEnd,
  prepareScratch,
  type Server,
  type Virsh,
} from '../../virt/index.ts';
import { orderedReads } from '../ordered-reads.ts';
import { alignToChunks, allocationSegments, dirtyRanges, intersect } from '../plan.ts';
import { newCheckpointName } from '../points.ts';
import { pooledReader } from '../pooled-reader.ts';
import {
  acquireSource,
  backupExport,
  connectSourceDisk,
  type ProtectedDisk,
  type Source,
} from '../source.ts';
import { DiskChunks } from './chunk-set.ts';
import type { Spool } from './spool.ts';

export interface CaptureTuning {
  requestBytes: number;
  inflight: number;
  pieceBytes: number;
}

export const CAPTURE_TUNING: CaptureTuning = {
  requestBytes: 256 * 1024,
  inflight: 16,
  pieceBytes: 1024 * 1024,
};

interface CaptureDisk extends ProtectedDisk {
  socketPath: string;
  exportName: string;
  dirtyContext: string | undefined;
}

/** Scratch files for the next live cycle, made while the previous one's lanes ship. */
export class ScratchFiles {
  private ready: Promise<Map<string, string>> | undefined;
  private generation = 0;

  constructor(
    private readonly dir: string,
    private readonly server: string,
    private readonly disks: readonly ProtectedDisk[],
    private readonly log: Logger,
  ) {}

  /** Starts making the next set (idempotent until taken). */
  prepare(): void {
    if (this.ready) return;
    const n = ++this.generation;
    const made = (async () => {
      const files = new Map<string, string>();
      for (const d of this.disks) {
        const path = join(this.dir, `${this.server.slice(0, 40)}.${d.target}.${process.pid}.${n}.scratch`);
        await rm(path, { force: true });
        await prepareScratch(path, d.size, this.log);
        files.set(d.target, path);
      }
      return files;
    })();
    made.catch(() => {});
    this.ready = made;
  }

  /** The prepared set (made now if it was not): the caller's until it calls remove(). */
  async take(): Promise<Map<string, string>> {
    this.prepare();
    const files = this.ready as Promise<Map<string, string>>;
    this.ready = undefined;
    return files;
  }

  static async remove(files: ReadonlyMap<string, string>): Promise<void> {
    await Promise.all([...files.values()].map((f) => rm(f, { force: true })));
  }
}

export class Capture {
  private readonly clients = new Map<string, NbdClient>();
  private ended: Promise<void> | undefined;
  /** The job could not be ended (libvirtd away): the next live capture looks for it first. */
  endFailed = false;

  private constructor(
    readonly kind: 'live' | 'offline',
    readonly pointInTime: string,
    readonly takenAt: Date,
    readonly disks: readonly CaptureDisk[],
    private readonly finish: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  /**
   * Begins the live cycle's backup: incremental from `base` (the previous cycle's checkpoint)
   * when given, creating a new checkpoint. Every disk must be qcow2 (continuous protection needs
   * dirty bitmaps; the protector refuses raw disks before it starts).
   */
  static async live(o: {
    virsh: Virsh;
    server: Server;
    disks: readonly ProtectedDisk[];
    base: string | undefined;
    runDir: string;
    scratch: ScratchFiles;
    /**
     * An earlier cycle may have left its backup job (libvirtd went away before it ended): look
     * for it before beginning. Beginning first would wait out libvirt's state change lock (30 s)
     * behind the job libvirt found again at its restart, and only then end it.
     */
    leftJob?: boolean;
    log: Logger;
  }): Promise<Capture> {
    const checkpoint = newCheckpointName();
    const socketPath = join(
      ensureRunDir(o.runDir, 'nbd'),
      `c-${o.server.uuid.slice(0, 8)}-${process.pid}.sock`,
    );
    const files = await o.scratch.take();
    const wanted = new Set(o.disks.map((d) => d.target));
    const excluded = o.server.disks.filter((d) => !wanted.has(d.target)).map((d) => d.target);
    const begin = async () =>
      backupBeginPrepared(o.virsh, o.server.name, {
        checkpointName: checkpoint,
        incrementalFrom: o.base,
        socketPath,
        disks: o.disks.map((d) => ({
          target: d.target,
          incremental: o.base !== undefined,
          scratchFile: files.get(d.target) as string,
        })),
        excluded,
        log: o.log,
      });
    // A job this host's protector left (a killed process, a restarted libvirtd): end it.
    const endLeft = async (): Promise<boolean> => {
      const left = await activeBackup(o.virsh, o.server.name).catch(() => null);
      if (!left?.socketPath.startsWith(o.runDir)) return false;
      o.log.info('ending a backup job an earlier cycle left', { socket: left.socketPath });
      await backupEnd(o.virsh, o.server.name);
      return true;
    };
    let job: Awaited<ReturnType<typeof backupBeginPrepared>>;
    try {
      if (o.leftJob) await endLeft();
      try {
        job = await begin();
      } catch (e) {
        if (!(await endLeft())) throw e;
        job = await begin();
      }
    } catch (e) {
      await ScratchFiles.remove(files);
      throw e;
    }
    const takenAt = new Date();
    const disks = o.disks.map((d) => {
      const exp = backupExport(
        job,
        o.server.name,
        d.target,
        '; the protector starts over with its disks as they are now.',
      );
      return {
        ...d,
        socketPath: job.socketPath,
        exportName: exp.exportName,
        dirtyContext: exp.bitmapContext,
      };
    });
    const finish = async () => {
      await backupAbort(o.virsh, o.server.name);
      // The teardown (NBD server, fleecing nodes) finishes in libvirt; the next begin waits for it.
      await backupEnd(o.virsh, o.server.name, { timeoutMs: 60_000 }).catch(() => {});
      await ScratchFiles.remove(files);
    };
    return new Capture('live', checkpoint, takenAt, disks, finish, o.log);
  }

  /** A shut-off server: its images through qemu-nbd, dirty since `base` from the persistent bitmaps. */
  static async offline(o: {
    virsh: Virsh;
    server: Server;
    disks: ProtectedDisk[];
    base: string | undefined;
    runDir: string;
    log: Logger;
  }): Promise<Capture> {
    const previous = new Map(o.disks.map((d) => [d.name, d.size]));
    const source: Source = await acquireSource({
      virsh: o.virsh,
      server: o.server,
      disks: o.disks,
      base: o.base ? { name: o.base, disks: new Set(o.disks.map((d) => d.target)) } : undefined,
      previous,
      consistency: 'live',
      runDir: o.runDir,
      log: o.log,
    });
    const disks = source.disks.map((d) => ({ ...d, dirtyContext: d.dirtyContext }));
    return new Capture('offline', source.pointInTime, source.takenAt, disks, () => source.release(), o.log);
  }

  private async client(d: CaptureDisk): Promise<NbdClient> {
    let c = this.clients.get(d.name);
    if (!c) {
      c = await connectSourceDisk(d, this.log);
      this.clients.set(d.name, c);
    }
    return c;
  }

  /** Whether every disk offers a dirty map (an incremental cycle). */
  get incremental(): boolean {
    return this.disks.every((d) => d.dirtyContext !== undefined);
  }

  /** The chunks changed since the base checkpoint; null when some disk has no dirty map. */
  async dirty(chunkSize: number): Promise<DiskChunks | null> {
    if (!this.incremental) return null;
    const out = new DiskChunks(
      this.disks.map((d) => [d.name, d.size] as [string, number]),
      chunkSize,
    );
    for (const d of this.disks) {
      const set = out.get(d.name);
      const c = await this.client(d);
      for await (const r of dirtyRanges(mapExtents(c, d.dirtyContext as string))) {
        set.addBytes(r.offset, r.length, chunkSize);
      }
    }
    return out;
  }

  /** The chunks that may hold data (a first copy's pending set). */
  async allocated(chunkSize: number): Promise<DiskChunks> {
    const out = new DiskChunks(
      this.disks.map((d) => [d.name, d.size] as [string, number]),
      chunkSize,
    );
    for (const d of this.disks) {
      const set = out.get(d.name);
      for await (const s of allocationSegments(mapExtents(await this.client(d), CONTEXT_BASE_ALLOCATION))) {
        if (s.kind === 'data') set.addBytes(s.offset, s.length, chunkSize);
      }
    }
    return out;
  }

  /**
   * Reads `selection` into the spool, disk by disk in order, each chunk as data or, where the
   * export reads as zero, as a zero extent. Returns the data bytes read.
   */
  async read(
    selection: DiskChunks,
    spool: Spool,
    chunkSize: number,
    tuning = CAPTURE_TUNING,
  ): Promise<number> {
    let bytes = 0;
    const pool = new BufferPool(tuning.pieceBytes);
    for (const d of this.disks) {
      const set = selection.disks.get(d.name);
      if (!set || set.isEmpty()) continue;
      const c = await this.client(d);
      const runs = [...set.runs()];
      const first = (runs[0]?.first ?? 0) * chunkSize;
      const last = runs[runs.length - 1] as { first: number; count: number };
      const end = Math.min(d.size, (last.first + last.count) * chunkSize);
      const ranges = (async function* () {
        for (const r of runs) {
          yield {
            offset: r.first * chunkSize,
            length: Math.min(d.size, (r.first + r.count) * chunkSize) - r.first * chunkSize,
          };
        }
      })();
      const alloc = allocationSegments(
        mapExtents(c, CONTEXT_BASE_ALLOCATION, { offset: first, length: end - first }),
      );
      const extents = alignToChunks(intersect(ranges, alloc), chunkSize, d.size);
      const pieces = orderedReads(extents, {
        read: pooledReader(c, pool, tuning.requestBytes),
        inflight: tuning.inflight,
        maxBytes: tuning.inflight * tuning.requestBytes,
        maxPiece: tuning.pieceBytes,
      });
      for await (const p of pieces) {
        if (p.data) {
          await spool.addData(d.name, p.extent.offset, p.data);
          bytes += p.data.length;
          pool.release(p.data);
        } else {
          spool.addZero(d.name, p.extent.offset, p.extent.length);
        }
      }
    }
    return bytes;
  }

  /**
   * Ends the point in time: NBD connections closed, the job aborted (live) or the exports
   * stopped (offline). Safe to call twice; resolves when libvirt has torn the job down.
   */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await Promise.allSettled([...this.clients.values()].map((c) => c.close()));
      this.clients.clear();
      await this.finish().catch((e) => {
        this.endFailed = true;
        this.log.warn('could not end the cycle’s backup job', { err: e });
      });
    })();
    return this.ended;
  }
}
