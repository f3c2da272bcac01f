/**
 * Receiving one delta into a filesystem store (DeltaWriter, DESIGN §4.2 step 1).
 *
 * Two kinds:
 * - *direct* (first run, no generation yet): data goes straight into `<server>_<disk>_incomplete.raw`
 *   (sparse; zero ranges stay holes), chunk digests into the delta's own `.sums` files. There is
 *   nothing older to protect, so the full copy is written once (DESIGN §4.2).
 * - *staged* (every later run): data is appended to `data`, each extent logged in `index` with its
 *   chunk digests (delta-log.ts); `.sums` files hold the staged digests by position so
 *   `expectedDigests` answers without scanning the log. Generations are untouched until commit.
 *
 * Resume: `checkpoint()` makes everything durable and records the sender's watermarks with the
 * staged state (counts, file lengths). A later `openDelta` continues from exactly that state:
 * - staged: `data` and `index` are cut back to their checkpointed lengths and the `.sums` files
 *   rebuilt from the index, so whatever arrived after the checkpoint is gone.
 * - direct: image writes cannot be cut back, so each disk keeps a durable *floor*: every write
 *   since the last checkpoint lies at or above it (writes ascend per disk; a write below the floor
 *   first lowers it durably). Resuming resets [floor, end) of each image and its digests to holes,
 *   i.e. "not staged". The floor never drops below the watermark, so nothing the sender will skip
 *   is reset.
 * Either way every chunk the store reports as staged holds exactly the bytes its digest names,
 * which is what a sender resuming under a new point in time relies on (`expectedDigests`).
 *
 * Counting: the summary given to `seal()` must equal, per disk, `resumed.staged` (what the delta
 * held when this attempt began) plus what this attempt sent. Bytes sent twice count twice on both
 * sides, so the sender never has to reason about overlaps.
 */
import { randomUUID } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { alignUp } from '../../core/aligned-memory.ts';
import { DIGEST_BYTES, digest, zeroChunkDigest } from '../../core/digest.ts';
import { asHavenError, HavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { crashPoint } from '../crash.ts';
import { badRequest, storeError } from '../errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaSummary,
  type DeltaWriter,
  type Generation,
  type ResumeState,
} from '../types.ts';
import { readIndexEntries } from './apply.ts';
import { encodeEntry, encodeIndexHeader, INDEX_HEADER_BYTES } from './delta-log.ts';
import { DirectWrites } from './direct-io.ts';
import { ensureDir, fsyncDir, io, readAllAt, removeIfExists, removeTree, writeAllAt } from './files.ts';
import { addRange, type ByteRange, punchHoles } from './holes.ts';
import type { HeldLock } from './lock.ts';
import type { DeltaRecord } from './records.ts';
import { type FsContext, listDeltaRecords, writeDeltaRecord } from './state.ts';
import {
  chunkCount,
  chunkLength,
  clearSums,
  isUnstaged,
  readSums,
  sumsLength,
  writeSums,
  writeZeroSums,
} from './sums.ts';

/** Largest digest range one expectedDigests call may ask for (32 MiB of answer). */
export const MAX_DIGEST_REQUEST_CHUNKS = 1 << 20;
const INDEX_FLUSH_BYTES = 1 << 20;
/**
 * Data written between write-behind flushes. Linux starts writing dirty pages back only at
 * dirty_background_ratio (gigabytes on a large host), so without this a checkpoint or the seal
 * would flush everything at once while nothing else moves; a datasync running beside the writes
 * overlaps the disk's work with the transfer.
 */
const WRITE_BEHIND_BYTES = 32 << 20;
const PUNCH_BATCH = 256;
/** Data writes this writer runs at once (a bound; the receiver keeps a few in flight). */
const MAX_IO_IN_FLIGHT = 8;

/** A data write running beside later calls, and the range it covers. */
interface RunningWrite {
  disk: number;
  start: number;
  end: number;
  /** Settles when the write is done; never rejects (failures go to `ioFailure`). */
  settled: Promise<void>;
}

interface DiskState {
  name: string;
  index: number;
  size: number;
  chunks: number;
  sums: FileHandle;
  /** direct deltas: the `_incomplete` image, and its data writes (direct-io.ts). */
  image: FileHandle | null;
  imageOut: DirectWrites | null;
  imagePath: string;
  dataBytes: number;
  zeroBytes: number;
  /** direct: durable lower bound of every write since the last checkpoint. */
  floor: number;
  /** direct: end of the highest data ever written (zero ranges above it are holes already). */
  dataHigh: number;
  /** End of the highest write of this attempt. */
  attemptHi: number;
  punches: ByteRange[];
  punchEnd: number;
  dirty: boolean;
  /** Base generation's digest file, opened on demand. */
  baseSums: FileHandle | null;
  boundaryDigest: Buffer | null;
}

type State = 'open' | 'sealed' | 'committed' | 'closed' | 'failed';

export interface WriterHost {
  /** Runs DESIGN §4.2 steps 2–4 for this server (the caller holds the server lock). */
  commit(server: string, log: Logger): Promise<Generation>;
}

function sameDisks(a: DeltaMeta['disks'], b: DeltaMeta['disks']): boolean {
  return a.length === b.length && a.every((d, i) => d.name === b[i]!.name && d.size === b[i]!.size);
}

/** Removes a delta and everything it owns. `dataDir` is only removed where Haven would have put it. */
export async function deleteDelta(ctx: FsContext, r: DeltaRecord, log: Logger): Promise<void> {
  const recordDir = ctx.layout.deltaDir(r.server, r.id);
  if (r.kind === 'direct' && r.state !== 'committed') {
    for (const d of r.meta.disks) await removeIfExists(ctx.layout.image(r.server, d.name, 'incomplete'));
  }
  if (r.dataDir !== recordDir) {
    const ownDir =
      basename(r.dataDir) === r.id &&
      basename(dirname(r.dataDir)) === r.server &&
      basename(dirname(dirname(r.dataDir))) === ctx.descriptor.id &&
      basename(dirname(dirname(dirname(r.dataDir)))) === 'haven-staging';
    if (ownDir) await removeTree(r.dataDir);
    else
      log.warn('delta data directory is not where Haven stages deltas; left in place', {
        dataDir: r.dataDir,
      });
  }
  await removeTree(recordDir);
}

function stagingDataDir(ctx: FsContext, server: string, id: string): string {
  return join(ctx.stagingDir!, 'haven-staging', ctx.descriptor.id, server, id);
}

export class FsDeltaWriter implements DeltaWriter {
  private state: State = 'open';
  private failure: HavenError | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private dataLength: number;
  private indexLength: number;
  private indexBuf: Buffer[] = [];
  private indexBufBytes = 0;
  private filesDirty = false;
  private resumedState: ResumeState | null = null;
  /** The write-behind datasync running, its failure (reported at the next sync), bytes since. */
  private flushing: Promise<void> | null = null;
  private flushError: unknown = null;
  private sinceFlush = 0;
  /** Data writes submitted in call order and still running; the first failure of one. */
  private running: RunningWrite[] = [];
  private ioFailure: unknown = null;

  private constructor(
    private readonly ctx: FsContext,
    private readonly record: DeltaRecord,
    private readonly base: Generation | null,
    private readonly lock: HeldLock,
    private readonly disks: DiskState[],
    private readonly data: FileHandle | null,
    private readonly dataOut: DirectWrites | null,
    private readonly index: FileHandle | null,
    private readonly host: WriterHost,
    private readonly log: Logger,
  ) {
    this.dataLength = record.dataLength;
    this.indexLength = record.indexLength;
  }

  get deltaId(): string {
    return this.record.id;
  }

  get resumed(): ResumeState | null {
    return this.resumedState;
  }

  /**
   * Opens the server's delta: continues a compatible partial one, else starts afresh. The caller
   * holds the server lock, has rolled forward any interrupted commit and checked the base; for a
   * fresh delta, `register` runs the name-collision check and writes the first record.
   */
  static async open(args: {
    ctx: FsContext;
    meta: DeltaMeta;
    base: Generation | null;
    lock: HeldLock;
    host: WriterHost;
    log: Logger;
    register: (record: DeltaRecord) => Promise<void>;
  }): Promise<FsDeltaWriter> {
    const { ctx, meta, log } = args;
    const kind = meta.baseGenerationId === null ? 'direct' : 'staged';
    const partials = (await listDeltaRecords(ctx, meta.server)).filter((r) => r.state === 'open').reverse();
    let candidate: DeltaRecord | null = null;
    for (const r of partials) {
      if (
        !candidate &&
        r.kind === kind &&
        r.meta.baseGenerationId === meta.baseGenerationId &&
        sameDisks(r.meta.disks, meta.disks)
      ) {
        candidate = r;
      } else {
        log.info('discarding a partial delta that no longer fits (base or disks changed)', { deltaId: r.id });
        await deleteDelta(ctx, r, log);
      }
    }
    if (candidate) {
      const w = await FsDeltaWriter.resume({ ...args, record: candidate });
      if (w) return w;
      await deleteDelta(ctx, candidate, log);
    }
    return FsDeltaWriter.create(args);
  }

  private static async create(args: {
    ctx: FsContext;
    meta: DeltaMeta;
    base: Generation | null;
    lock: HeldLock;
    host: WriterHost;
    log: Logger;
    register: (record: DeltaRecord) => Promise<void>;
  }): Promise<FsDeltaWriter> {
    const { ctx, meta } = args;
    const id = randomUUID();
    const kind = meta.baseGenerationId === null ? 'direct' : 'staged';
    const recordDir = ctx.layout.deltaDir(meta.server, id);
    const now = new Date().toISOString();
    const zero = () => Object.fromEntries(meta.disks.map((d) => [d.name, 0]));
    const record: DeltaRecord = {
      format: 'haven-delta',
      version: 1,
      id,
      server: meta.server,
      generationId: randomUUID(),
      kind,
      state: 'open',
      meta: structuredClone(meta),
      dataDir: kind === 'staged' && args.ctx.stagingDir ? stagingDataDir(ctx, meta.server, id) : recordDir,
      createdAt: now,
      updatedAt: now,
      watermarks: {},
      counts: Object.fromEntries(meta.disks.map((d) => [d.name, { dataBytes: 0, zeroBytes: 0 }])),
      dataLength: 0,
      indexLength: INDEX_HEADER_BYTES,
      floors: Object.fromEntries(meta.disks.map((d) => [d.name, d.size])),
      dataHigh: zero(),
    };
    // The record first: whatever else a crash leaves behind is then owned by a delta that
    // discard() or a resume can clean up.
    await args.register(record);
    const w = await FsDeltaWriter.openFiles({ ...args, record, create: true });
    args.log.verbose('delta opened', { deltaId: id, kind, disks: meta.disks.length });
    return w;
  }

  private static async resume(args: {
    ctx: FsContext;
    meta: DeltaMeta;
    base: Generation | null;
    lock: HeldLock;
    host: WriterHost;
    log: Logger;
    record: DeltaRecord;
  }): Promise<FsDeltaWriter | null> {
    const { ctx, meta, record, log } = args;
    const fresh = record.meta.disks.every((d) => {
      const c = record.counts[d.name];
      return !c || (c.dataBytes === 0 && c.zeroBytes === 0);
    });
    let w: FsDeltaWriter;
    try {
      w = await FsDeltaWriter.openFiles({ ...args, create: fresh });
    } catch (e) {
      if (e instanceof HavenError && (e.code === 'FILE_NOT_FOUND' || e.code === 'STORE_PARTIAL_DAMAGED')) {
        log.warn('partial delta is incomplete on disk (staging drive gone?); starting afresh', {
          deltaId: record.id,
          reason: e.message,
        });
        return null;
      }
      throw e;
    }
    try {
      await w.reconcile();
    } catch (e) {
      await w.closeFiles();
      if (e instanceof HavenError && e.code === 'STORE_PARTIAL_DAMAGED') {
        log.warn('partial delta cannot be resumed; starting afresh', {
          deltaId: record.id,
          reason: e.message,
        });
        return null;
      }
      throw e;
    }
    const resumed: ResumeState = {
      deltaId: record.id,
      pointInTime: record.meta.pointInTime,
      watermarks: { ...record.watermarks },
      stagedBytes: w.disks.reduce((n, d) => n + d.dataBytes + d.zeroBytes, 0),
      staged: Object.fromEntries(
        w.disks.map((d) => [d.name, { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes }]),
      ),
    };
    // A new attempt: positions from an older point in time mean nothing to the new sender.
    if (record.meta.pointInTime !== meta.pointInTime) record.watermarks = {};
    record.meta = structuredClone(meta);
    for (const d of w.disks) {
      d.floor = d.size;
      d.attemptHi = 0;
      record.floors[d.name] = d.size;
      record.dataHigh[d.name] = d.dataHigh;
    }
    await writeDeltaRecord(ctx, record);
    log.info('resuming a partial delta', {
      deltaId: record.id,
      stagedBytes: resumed.stagedBytes,
      samePointInTime: resumed.pointInTime === meta.pointInTime,
    });
    w.resumedState = resumed;
    return w;
  }

  private static async openFiles(args: {
    ctx: FsContext;
    base: Generation | null;
    lock: HeldLock;
    host: WriterHost;
    log: Logger;
    record: DeltaRecord;
    create: boolean;
  }): Promise<FsDeltaWriter> {
    const { ctx, record, create } = args;
    const server = record.server;
    const direct = record.kind === 'direct';
    const handles: FileHandle[] = [];
    const outs: DirectWrites[] = [];
    const directWrites = async (path: string, fh: FileHandle): Promise<DirectWrites> => {
      const out = await io(path, () => DirectWrites.open(path, fh, ctx.directIo, args.log));
      outs.push(out);
      return out;
    };
    const openFile = async (path: string, make: boolean, size?: number): Promise<FileHandle> => {
      const fh = await io(path, () => open(path, make ? 'w+' : 'r+'));
      handles.push(fh);
      if (make && size !== undefined) await io(path, () => fh.truncate(size));
      return fh;
    };
    try {
      await ensureDir(record.dataDir);
      let data: FileHandle | null = null;
      let dataOut: DirectWrites | null = null;
      let index: FileHandle | null = null;
      if (!direct) {
        const dataPath = join(record.dataDir, 'data');
        data = await openFile(dataPath, create);
        dataOut = await directWrites(dataPath, data);
        index = await openFile(join(record.dataDir, 'index'), create);
        if (create) await writeAllAt(index, encodeIndexHeader(), 0);
      }
      const disks: DiskState[] = [];
      for (const [i, d] of record.meta.disks.entries()) {
        const imagePath = ctx.layout.image(server, d.name, 'incomplete');
        const image = direct ? await openFile(imagePath, create, d.size) : null;
        const imageOut = image ? await directWrites(imagePath, image) : null;
        // Staged sums are a cache rebuilt from the index on every resume; direct ones are truth.
        const sums = await openFile(
          join(record.dataDir, `${d.name}.sums`),
          create || !direct,
          sumsLength(d.size),
        );
        const c = record.counts[d.name] ?? { dataBytes: 0, zeroBytes: 0 };
        disks.push({
          name: d.name,
          index: i,
          size: d.size,
          chunks: chunkCount(d.size),
          sums,
          image,
          imageOut,
          imagePath,
          dataBytes: c.dataBytes,
          zeroBytes: c.zeroBytes,
          floor: record.floors[d.name] ?? d.size,
          dataHigh: record.dataHigh[d.name] ?? 0,
          attemptHi: 0,
          punches: [],
          punchEnd: 0,
          dirty: create,
          baseSums: null,
          boundaryDigest: null,
        });
      }
      const w = new FsDeltaWriter(
        ctx,
        record,
        args.base,
        args.lock,
        disks,
        data,
        dataOut,
        index,
        args.host,
        args.log,
      );
      if (create) {
        w.filesDirty = true;
        await w.syncAll();
        if (direct) await fsyncDir(ctx.layout.root);
        await fsyncDir(record.dataDir);
      }
      return w;
    } catch (e) {
      await Promise.all(outs.map((o) => o.close()));
      await Promise.all(handles.map((h) => h.close().catch(() => {})));
      throw e;
    }
  }

  /** Brings the files back to the last checkpoint (see the module comment). */
  private async reconcile(): Promise<void> {
    const r = this.record;
    const damaged = (why: string) =>
      storeError('STORE_PARTIAL_DAMAGED', 'integrity', `partial delta ${r.id}: ${why}`, {
        hint: 'The partial delta is discarded and the sender starts it again.',
      });
    if (r.kind === 'staged') {
      const dataSize = (await this.data!.stat()).size;
      const indexSize = (await this.index!.stat()).size;
      if (dataSize < r.dataLength || indexSize < r.indexLength)
        throw damaged('staged files are shorter than recorded');
      await this.data!.truncate(r.dataLength);
      await this.index!.truncate(r.indexLength);
      for (const d of this.disks) {
        await d.sums.truncate(0);
        await d.sums.truncate(sumsLength(d.size));
      }
      for await (const e of readIndexEntries(this.index!, r.indexLength, join(r.dataDir, 'index'))) {
        const d = this.disks[e.disk];
        if (!d || e.offset + e.length > d.size) throw damaged('index entry out of range');
        if (e.kind === 'data') await writeSums(d.sums, e.offset / CHUNK_SIZE, e.digests);
        else
          await writeZeroSums(
            d.sums,
            this.ctx.descriptor.digest,
            d.size,
            e.offset / CHUNK_SIZE,
            chunkCount(e.offset + e.length),
          );
      }
    } else {
      for (const d of this.disks) {
        const st = await d.image!.stat();
        if (st.size !== d.size) throw damaged(`${d.imagePath} has the wrong size`);
        if (d.floor >= d.size) continue;
        // To the end of the disk: writes after the checkpoint may lie above the recorded dataHigh.
        const start = Math.floor(d.floor / CHUNK_SIZE) * CHUNK_SIZE;
        await punchHoles(d.image!, d.imagePath, [{ offset: start, length: d.size - start }], this.log);
        d.dataHigh = Math.min(d.dataHigh, start);
        const sumsFrom = (start / CHUNK_SIZE) * DIGEST_BYTES;
        const sumsPath = join(r.dataDir, `${d.name}.sums`);
        await punchHoles(
          d.sums,
          sumsPath,
          [{ offset: sumsFrom, length: sumsLength(d.size) - sumsFrom }],
          this.log,
        );
      }
    }
    this.filesDirty = true;
    for (const d of this.disks) d.dirty = true;
    await this.syncAll();
  }

  // ---- serialisation and state ----

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private assertState(want: State, op: string): void {
    if (this.state === 'failed') {
      throw storeError(
        'STORE_DELTA_FAILED',
        this.failure?.kind ?? 'io',
        `${op}: an earlier write failed (${this.failure?.code})`,
        {
          hint: 'Close this delta and open it again: it resumes from its last checkpoint.',
          details: { deltaId: this.deltaId, cause: this.failure?.code },
        },
      );
    }
    if (this.state !== want) {
      throw badRequest('STORE_DELTA_STATE', `${op} is not allowed: the delta is ${this.state}`, {
        deltaId: this.deltaId,
        state: this.state,
      });
    }
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const he = asHavenError(e);
      if (he.kind !== 'protocol') {
        this.state = 'failed';
        this.failure = he;
      }
      throw he;
    }
  }

  private disk(name: string): DiskState {
    const d = this.disks.find((x) => x.name === name);
    if (!d)
      throw badRequest('STORE_UNKNOWN_DISK', `disk ${JSON.stringify(name)} is not part of this delta`, {
        disk: name,
      });
    return d;
  }

  private checkExtent(d: DiskState, offset: number, length: number): void {
    const end = offset + length;
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length <= 0 ||
      offset % CHUNK_SIZE !== 0 ||
      end > d.size ||
      (length % CHUNK_SIZE !== 0 && end !== d.size)
    ) {
      throw badRequest(
        'STORE_BAD_EXTENT',
        `extent ${offset}+${length} is not chunk-aligned inside disk ${d.name} (${d.size} bytes)`,
        {
          disk: d.name,
          offset,
          length,
          size: d.size,
        },
      );
    }
  }

  // ---- DeltaWriter ----

  expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    return this.serial(async () => {
      if (this.state !== 'open' && this.state !== 'sealed') this.assertState('open', 'expectedDigests');
      const d = this.disk(disk);
      await this.drainIo();
      if (
        !Number.isSafeInteger(fromChunk) ||
        !Number.isSafeInteger(count) ||
        fromChunk < 0 ||
        count < 0 ||
        count > MAX_DIGEST_REQUEST_CHUNKS ||
        fromChunk + count > d.chunks
      ) {
        throw badRequest(
          'STORE_BAD_RANGE',
          `chunks ${fromChunk}+${count} are outside disk ${d.name} (${d.chunks} chunks)`,
          {
            disk,
            fromChunk,
            count,
          },
        );
      }
      const out = await readSums(d.sums, fromChunk, count);
      const bd = this.base?.disks.find((x) => x.name === d.name);
      const baseChunks = bd ? chunkCount(bd.size) : 0;
      let baseBuf: Buffer | null = null;
      const boundary = this.boundaryChunk(d);
      for (let i = 0; i < count; i++) {
        if (!isUnstaged(out, i)) continue;
        const c = fromChunk + i;
        let dg: Buffer;
        if (c === boundary) dg = await this.boundaryDigest(d);
        else if (bd && c < baseChunks) {
          if (!baseBuf)
            baseBuf = await this.readBaseSums(d, fromChunk, Math.min(count, baseChunks - fromChunk));
          dg = baseBuf.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
        } else dg = zeroChunkDigest(this.ctx.descriptor.digest, chunkLength(d.size, c));
        dg.copy(out, i * DIGEST_BYTES);
      }
      return out;
    });
  }

  /** The chunk whose bytes change when a disk is resized without being sent, or -1. */
  private boundaryChunk(d: DiskState): number {
    const bd = this.base?.disks.find((x) => x.name === d.name);
    if (!bd || bd.size === d.size) return -1;
    const m = Math.min(bd.size, d.size);
    return m % CHUNK_SIZE === 0 ? -1 : Math.floor(m / CHUNK_SIZE);
  }

  /** Digest of the resized boundary chunk: the base's bytes, cut or padded to the new size. */
  private async boundaryDigest(d: DiskState): Promise<Buffer> {
    if (d.boundaryDigest) return d.boundaryDigest;
    const bd = this.base!.disks.find((x) => x.name === d.name)!;
    const c = this.boundaryChunk(d);
    const buf = Buffer.alloc(chunkLength(d.size, c));
    const path = this.ctx.layout.image(this.record.server, d.name, this.base!.seq);
    await io(path, async () => {
      const fh = await open(path, 'r');
      try {
        await readAllAt(fh, buf, Math.min(buf.length, bd.size - c * CHUNK_SIZE), c * CHUNK_SIZE);
      } finally {
        await fh.close();
      }
    });
    buf.fill(0, Math.min(buf.length, bd.size - c * CHUNK_SIZE));
    d.boundaryDigest = digest(this.ctx.descriptor.digest, buf);
    return d.boundaryDigest;
  }

  private async readBaseSums(d: DiskState, fromChunk: number, count: number): Promise<Buffer> {
    if (!d.baseSums) {
      const path = this.ctx.layout.sums(this.record.server, this.base!.id, d.name);
      d.baseSums = await io(path, () => open(path, 'r'));
    }
    return readSums(d.baseSums, fromChunk, count);
  }

  /**
   * The checks and bookkeeping run in call order (serial); the data and digest writes then run
   * beside later calls, so several are on their way to the disk at once. A later write that
   * overlaps a running one, and every operation that reads or syncs the files, waits for them.
   */
  writeData(disk: string, offset: number, data: Buffer, chunkDigests: Buffer): Promise<void> {
    let written: Promise<void> = Promise.resolve();
    const submitted = this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'writeData');
        const d = this.disk(disk);
        this.checkExtent(d, offset, data.length);
        if (chunkDigests.length !== Math.ceil(data.length / CHUNK_SIZE) * DIGEST_BYTES) {
          throw badRequest('STORE_BAD_DIGESTS', `expected one ${DIGEST_BYTES}-byte digest per chunk`, {
            disk,
            offset,
            length: data.length,
            digestBytes: chunkDigests.length,
          });
        }
        const end = offset + data.length;
        if (this.running.some((w) => w.disk === d.index && w.start < end && offset < w.end)) {
          await this.drainIo();
        }
        if (this.running.length >= MAX_IO_IN_FLIGHT) await this.running.shift()!.settled;
        if (this.ioFailure !== null) await this.drainIo();
        if (this.record.kind === 'staged') {
          // Aligned positions let the data go through O_DIRECT (the gap is never read).
          const pos = alignUp(this.dataLength);
          written = this.run(d, offset, data, chunkDigests, this.dataOut!, pos, 'staged delta data');
          this.appendIndex(
            encodeEntry({
              kind: 'data',
              disk: d.index,
              offset,
              length: data.length,
              dataPos: pos,
              digests: chunkDigests,
            }),
          );
          this.dataLength = pos + data.length;
          this.writeBehind(this.data!, 'staged delta data', data.length);
          if (this.indexBufBytes >= INDEX_FLUSH_BYTES) await this.flushIndex();
        } else {
          if (offset < d.floor) await this.lowerFloor(d, offset);
          if (d.punches.length && d.punchEnd > offset) await this.flushPunches(d);
          written = this.run(d, offset, data, chunkDigests, d.imageOut!, offset, d.imagePath);
          d.dataHigh = Math.max(d.dataHigh, end);
          this.writeBehind(d.image!, d.imagePath, data.length);
        }
        d.dataBytes += data.length;
        d.attemptHi = Math.max(d.attemptHi, end);
        d.dirty = true;
        this.filesDirty = true;
      }),
    );
    return submitted.then(() => written);
  }

  /**
   * Starts writing `data` (disk range at `offset`) to `out` at `at` (`what`, in errors), then its
   * digests, beside later calls; a failure fails the delta (as guard() would).
   */
  private run(
    d: DiskState,
    offset: number,
    data: Buffer,
    chunkDigests: Buffer,
    out: DirectWrites,
    at: number,
    what: string,
  ): Promise<void> {
    const write = async () => {
      await io(what, () => out.write(data, at));
      const sums = this.record.kind === 'staged' ? 'staged delta digests' : 'delta digests';
      await io(sums, () => writeSums(d.sums, offset / CHUNK_SIZE, chunkDigests));
    };
    const p = write().catch((e: unknown) => {
      const he = asHavenError(e);
      this.ioFailure ??= he;
      if (this.state === 'open') {
        this.state = 'failed';
        this.failure = he;
      }
      throw he;
    });
    this.running.push({
      disk: d.index,
      start: offset,
      end: offset + data.length,
      settled: p.then(
        () => {},
        () => {},
      ),
    });
    return p;
  }

  /** Waits for every running data write; throws the first failure. */
  private async drainIo(): Promise<void> {
    const all = this.running;
    this.running = [];
    await Promise.all(all.map((w) => w.settled));
    if (this.ioFailure !== null) throw this.ioFailure;
  }

  writeZero(disk: string, offset: number, length: number): Promise<void> {
    return this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'writeZero');
        const d = this.disk(disk);
        this.checkExtent(d, offset, length);
        await this.drainIo();
        const end = offset + length;
        if (this.record.kind === 'staged') {
          this.appendIndex(encodeEntry({ kind: 'zero', disk: d.index, offset, length, dataPos: 0 }));
          if (this.indexBufBytes >= INDEX_FLUSH_BYTES) await this.flushIndex();
          await io('delta digests', () =>
            writeZeroSums(d.sums, this.ctx.descriptor.digest, d.size, offset / CHUNK_SIZE, chunkCount(end)),
          );
        } else {
          if (offset < d.floor) await this.lowerFloor(d, offset);
          // Above everything ever written, the fresh image is a hole and its digests read "not
          // staged", which a first run answers and commits as zero chunks: nothing to do there.
          if (offset < d.dataHigh) {
            const top = Math.min(end, d.dataHigh);
            addRange(d.punches, offset, top - offset);
            d.punchEnd = Math.max(d.punchEnd, top);
            if (d.punches.length >= PUNCH_BATCH) await this.flushPunches(d);
            await io('delta digests', () => clearSums(d.sums, offset / CHUNK_SIZE, chunkCount(top)));
          }
        }
        d.zeroBytes += length;
        d.attemptHi = Math.max(d.attemptHi, end);
        d.dirty = true;
        this.filesDirty = true;
      }),
    );
  }

  checkpoint(watermarks: Record<string, number>): Promise<void> {
    return this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'checkpoint');
        for (const [name, w] of Object.entries(watermarks)) {
          const d = this.disk(name);
          if (!Number.isSafeInteger(w) || w < 0 || w > d.size) {
            throw badRequest('STORE_BAD_WATERMARK', `watermark ${w} is outside disk ${name}`, {
              disk: name,
              watermark: w,
            });
          }
        }
        await this.persist(watermarks);
      }),
    );
  }

  /** Makes everything staged durable and records it with these watermarks merged in. */
  private async persist(watermarks: Record<string, number>): Promise<void> {
    await this.syncAll();
    const r = this.record;
    Object.assign(r.watermarks, watermarks);
    for (const d of this.disks) {
      // Writes after this checkpoint ascend from where this attempt got to (or start
      // anywhere on a disk it has not touched yet: the first one lowers the floor).
      const w = r.watermarks[d.name] ?? 0;
      d.floor = d.attemptHi > 0 ? Math.max(w, d.attemptHi) : d.size;
    }
    this.snapshot();
    await writeDeltaRecord(this.ctx, r);
  }

  /** Copies the in-memory staged state into the record (written by the caller). */
  private snapshot(): void {
    const r = this.record;
    r.dataLength = this.dataLength;
    r.indexLength = this.indexLength;
    for (const d of this.disks) {
      r.counts[d.name] = { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes };
      r.floors[d.name] = d.floor;
      r.dataHigh[d.name] = d.dataHigh;
    }
  }

  /** A write below the floor: make the lower floor durable before the write happens. */
  private async lowerFloor(d: DiskState, offset: number): Promise<void> {
    d.floor = offset;
    this.record.floors[d.name] = offset;
    const w = this.record.watermarks[d.name];
    if (w !== undefined && w > offset) this.record.watermarks[d.name] = offset;
    await writeDeltaRecord(this.ctx, this.record);
  }

  seal(summary: DeltaSummary): Promise<void> {
    return this.serial(async () => {
      this.assertState('open', 'seal');
      const mismatches: Record<string, unknown>[] = [];
      for (const name of Object.keys(summary?.disks ?? {})) {
        if (!this.disks.some((d) => d.name === name))
          mismatches.push({ disk: name, problem: 'unknown disk' });
      }
      for (const d of this.disks) {
        const s = summary?.disks?.[d.name] ?? { dataBytes: 0, zeroBytes: 0 };
        if (s.dataBytes !== d.dataBytes || s.zeroBytes !== d.zeroBytes) {
          mismatches.push({
            disk: d.name,
            sent: s,
            staged: { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes },
          });
        }
      }
      if (mismatches.length) {
        throw storeError(
          'STORE_SUMMARY_MISMATCH',
          'integrity',
          'the delta summary does not match what was staged',
          {
            hint: 'Frames were lost or duplicated between sender and store; the delta stays partial and resumes from its last checkpoint.',
            details: { deltaId: this.deltaId, mismatches },
          },
        );
      }
      await this.guard(async () => {
        await this.syncAll();
        const r = this.record;
        for (const d of this.disks) {
          d.floor = d.size;
          r.watermarks[d.name] = d.size;
        }
        this.snapshot();
        r.state = 'sealed';
        r.sealedAt = new Date().toISOString();
        await writeDeltaRecord(this.ctx, r);
      });
      this.state = 'sealed';
      this.log.verbose('delta sealed', { deltaId: this.deltaId });
      crashPoint('after-seal');
    });
  }

  commit(): Promise<Generation> {
    return this.serial(async () => {
      this.assertState('sealed', 'commit');
      await this.closeFiles();
      const gen = await this.host.commit(this.record.server, this.log);
      this.state = 'committed';
      await this.lock.release();
      return gen;
    });
  }

  close(): Promise<void> {
    return this.serial(async () => {
      if (this.state === 'closed' || this.state === 'committed') return;
      if (this.state === 'open') {
        // Keep everything received so far (the last watermarks stay): a sender that resumes
        // learns it from `resumed.staged` and sends less. After a failed write the files may
        // disagree with each other, so a failed delta falls back to its last checkpoint.
        try {
          await this.persist({});
        } catch (e) {
          this.log.warn('could not keep what arrived since the last checkpoint', {
            code: asHavenError(e).code,
          });
        }
      }
      await this.closeFiles();
      this.state = 'closed';
      await this.lock.release();
    });
  }

  discard(): Promise<void> {
    return this.serial(async () => {
      if (this.state === 'sealed' || this.state === 'committed') {
        throw badRequest('STORE_DELTA_STATE', `a ${this.state} delta cannot be discarded`, {
          deltaId: this.deltaId,
        });
      }
      if (this.state === 'closed')
        throw badRequest('STORE_DELTA_STATE', 'the delta is closed', { deltaId: this.deltaId });
      await this.closeFiles();
      this.state = 'closed';
      try {
        await deleteDelta(this.ctx, this.record, this.log);
        this.log.info('partial delta discarded', { deltaId: this.deltaId });
      } finally {
        await this.lock.release();
      }
    });
  }

  // ---- buffers and durability ----

  private appendIndex(entry: Buffer): void {
    this.indexBuf.push(entry);
    this.indexBufBytes += entry.length;
  }

  private async flushIndex(): Promise<void> {
    if (!this.indexBufBytes) return;
    const buf = Buffer.concat(this.indexBuf, this.indexBufBytes);
    await io('staged delta index', () => writeAllAt(this.index!, buf, this.indexLength));
    this.indexLength += buf.length;
    this.indexBuf = [];
    this.indexBufBytes = 0;
  }

  private async flushPunches(d: DiskState): Promise<void> {
    if (!d.punches.length) return;
    // A hole punched under a write still running would be filled by it afterwards.
    await this.drainIo();
    await punchHoles(d.image!, d.imagePath, d.punches, this.log);
    d.punches = [];
    d.punchEnd = 0;
  }

  /**
   * Starts a datasync of `fh` beside the writes once WRITE_BEHIND_BYTES arrived since the last
   * one. It only hastens writeback: durability still comes from syncAll(). Its failure is kept
   * and thrown there, since Linux reports a writeback error to one fsync only.
   */
  private writeBehind(fh: FileHandle, what: string, bytes: number): void {
    this.sinceFlush += bytes;
    if (this.flushing || this.sinceFlush < WRITE_BEHIND_BYTES) return;
    this.sinceFlush = 0;
    this.flushing = io(what, () => fh.datasync())
      .catch((e: unknown) => {
        this.flushError ??= e;
      })
      .finally(() => {
        this.flushing = null;
      });
  }

  private async settleWriteBehind(): Promise<void> {
    if (this.flushing) await this.flushing;
    if (this.flushError !== null) throw this.flushError;
  }

  private async syncAll(): Promise<void> {
    await this.drainIo();
    await this.settleWriteBehind();
    if (this.record.kind === 'staged') await this.flushIndex();
    for (const d of this.disks) await this.flushPunches(d);
    if (this.filesDirty) {
      if (this.data) await io('staged delta data', () => this.data!.sync());
      if (this.index) await io('staged delta index', () => this.index!.sync());
      this.filesDirty = false;
    }
    for (const d of this.disks) {
      if (!d.dirty) continue;
      if (d.image) await io(d.imagePath, () => d.image!.sync());
      await io('delta digests', () => d.sums.sync());
      d.dirty = false;
    }
  }

  private async closeFiles(): Promise<void> {
    await this.drainIo().catch(() => {});
    if (this.flushing) await this.flushing;
    await Promise.all([this.dataOut, ...this.disks.map((d) => d.imageOut)].map((o) => o?.close()));
    const all = [this.data, this.index, ...this.disks.flatMap((d) => [d.sums, d.image, d.baseSums])];
    await Promise.all(all.map((h) => h?.close().catch(() => {})));
  }

  /** Where the delta's files are, for tests and diagnostics. */
  get dataDir(): string {
    return this.record.dataDir;
  }
}
