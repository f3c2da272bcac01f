/**
 * Applying a staged delta to `_incomplete` (DESIGN §4.2 step 3): the index in order, data
 * entries as positioned writes, zero entries as punched holes. Idempotent: applying again after
 * a crash gives the same image. Memory: one read window and a bounded list of pending holes.
 *
 * Speed: a delta of small scattered extents (a typical incremental: thousands of 64 KiB blocks)
 * used to cost two round trips to the thread pool per entry, one after the other. The staged data
 * lies in index order, so it is read sequentially in large windows, and the image writes from a
 * window run several at a time; writes whose ranges overlap (a block sent twice) still land in
 * index order.
 */
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { alignedBuffer, DIRECT_ALIGN } from '../../core/aligned-memory.ts';
import type { Logger } from '../../core/log.ts';
import { crashPoint } from '../crash.ts';
import { invalidFile, storeError } from '../errors.ts';
import { checkIndexHeader, INDEX_HEADER_BYTES, IndexDecoder, type IndexEntry } from './delta-log.ts';
import { DirectReads, DirectWrites } from './direct-io.ts';
import { io, isErrno, readAllAt, removeIfExists } from './files.ts';
import { addRange, type ByteRange, punchHoles } from './holes.ts';
import type { RangeSet } from './range-set.ts';
import type { DeltaRecord } from './records.ts';
import type { FsContext } from './state.ts';

const READ_BLOCK = 1 << 20;
/** The staged data is read in windows of this size (entries are laid out in index order). */
const DATA_WINDOW = 8 << 20;
/** Image writes in flight while applying. */
const MAX_WRITES = 16;
const PUNCH_BATCH = 256;

/** Streams the entries of a delta index up to `length` bytes. */
export async function* readIndexEntries(
  fh: FileHandle,
  length: number,
  path: string,
): AsyncGenerator<IndexEntry> {
  const header = Buffer.alloc(INDEX_HEADER_BYTES);
  await readAllAt(fh, header, INDEX_HEADER_BYTES, 0);
  checkIndexHeader(header, path);
  const decoder = new IndexDecoder(path);
  const buf = Buffer.allocUnsafe(READ_BLOCK);
  for (let pos = INDEX_HEADER_BYTES; pos < length; ) {
    const n = Math.min(READ_BLOCK, length - pos);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead === 0) throw invalidFile(path, `index shorter than its recorded ${length} bytes`);
    yield* decoder.push(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  decoder.finish();
}

/** True when a staged delta's data and index are where its record says (a cache drive may be gone). */
export async function deltaDataPresent(r: DeltaRecord): Promise<boolean> {
  // A first run's delta has no replayable data: its images became the generation.
  if (r.kind === 'direct') return false;
  try {
    const [data, index] = await Promise.all([stat(join(r.dataDir, 'data')), stat(join(r.dataDir, 'index'))]);
    return data.size >= r.dataLength && index.size >= r.indexLength;
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ENOTDIR')) return false;
    throw e;
  }
}

interface Target {
  path: string;
  fh: FileHandle;
  out: DirectWrites;
  size: number;
  punches: ByteRange[];
  punchEnd: number;
}

/**
 * Applies delta `r` to the server's `_incomplete` images. Disks the delta lists are created
 * (sparse) if missing and set to the delta's size; `_incomplete` images of `knownDisks` the delta
 * does not list are removed, so after each delta the slot holds exactly that generation's disks.
 */
export async function applyDelta(
  ctx: FsContext,
  r: DeltaRecord,
  knownDisks: Iterable<string>,
  options: {
    crashMidway: boolean;
    log: Logger;
    /** Per disk name: ranges a later delta writes; this delta's bytes there are left out. */
    overwritten?: Map<string, RangeSet>;
    /** Per disk name: filled with every range this delta's entries cover. */
    record?: Map<string, RangeSet>;
  },
): Promise<void> {
  const server = r.server;
  const listed = new Set(r.meta.disks.map((d) => d.name));
  for (const name of knownDisks) {
    if (!listed.has(name)) await removeIfExists(ctx.layout.image(server, name, 'incomplete'));
  }
  const targets: Target[] = [];
  let data: FileHandle | null = null;
  let dataIn: DirectReads | null = null;
  let index: FileHandle | null = null;
  try {
    for (const d of r.meta.disks) {
      const path = ctx.layout.image(server, d.name, 'incomplete');
      const fh = await io(path, () =>
        open(path, 'r+').catch((e) => {
          if (isErrno(e, 'ENOENT')) return open(path, 'w+');
          throw e;
        }),
      );
      try {
        await io(path, () => fh.truncate(d.size));
        const out = await io(path, () => DirectWrites.open(path, fh, ctx.directIo, options.log));
        targets.push({ path, fh, out, size: d.size, punches: [], punchEnd: 0 });
      } catch (e) {
        await fh.close().catch(() => {});
        throw e;
      }
    }
    const dataPath = join(r.dataDir, 'data');
    const indexPath = join(r.dataDir, 'index');
    const dataFh = await io(dataPath, () => open(dataPath, 'r'));
    data = dataFh;
    dataIn = await io(dataPath, () => DirectReads.open(dataPath, dataFh, ctx.directIo));
    index = await io(indexPath, () => open(indexPath, 'r'));
    const writer = new ApplyWriter(dataIn, dataPath, r.dataLength);
    let first = true;
    try {
      for await (const e of readIndexEntries(index, r.indexLength, indexPath)) {
        const t = targets[e.disk];
        if (
          !t ||
          e.offset + e.length > t.size ||
          (e.kind === 'data' && e.dataPos + e.length > r.dataLength)
        ) {
          throw invalidFile(indexPath, `entry out of range (disk ${e.disk}, ${e.offset}+${e.length})`);
        }
        const name = r.meta.disks[e.disk]!.name;
        options.record?.get(name)?.add(e.offset, e.length);
        const later = options.overwritten?.get(name);
        const pieces = later ? later.gaps(e.offset, e.length) : [{ offset: e.offset, length: e.length }];
        for (const p of pieces) {
          if (e.kind === 'data') {
            if (t.punches.length && t.punchEnd > p.offset) {
              // Holes punched before this write, not after it: the index order decides.
              await writer.settle();
              await flush(t, options.log);
            }
            await writer.write(t, p.offset, e.dataPos + (p.offset - e.offset), p.length);
          } else {
            addRange(t.punches, p.offset, p.length);
            t.punchEnd = Math.max(t.punchEnd, p.offset + p.length);
            if (t.punches.length >= PUNCH_BATCH) {
              await writer.settle();
              await flush(t, options.log);
            }
          }
        }
        if (first && options.crashMidway) {
          await writer.settle();
          crashPoint('mid-apply');
        }
        first = false;
      }
      await writer.settle();
    } finally {
      await writer.abandon();
    }
    for (const t of targets) {
      await flush(t, options.log);
      await io(t.path, () => t.fh.sync());
    }
  } finally {
    await Promise.all([dataIn, ...targets.map((t) => t.out)].map((o) => o?.close()));
    await Promise.all([data, index, ...targets.map((t) => t.fh)].map((h) => h?.close().catch(() => {})));
  }
}

async function flush(t: Target, log: Logger): Promise<void> {
  if (!t.punches.length) return;
  await punchHoles(t.fh, t.path, t.punches, log);
  t.punches = [];
  t.punchEnd = 0;
}

/**
 * Image writes from a window over the staged data, several in flight. The window is aligned
 * memory and staged data lies at aligned positions, so reads and writes go past the page cache
 * without a copy (direct-io.ts).
 */
class ApplyWriter {
  /**
   * Two windows: the next is read while writes from the current one still run (reads and writes
   * of one window alternated before, each waiting for the other).
   */
  private readonly windows = [
    alignedBuffer(DATA_WINDOW + DIRECT_ALIGN),
    alignedBuffer(DATA_WINDOW + DIRECT_ALIGN),
  ];
  private cur = 0;
  /** Data-file range the current window holds. */
  private winStart = 0;
  private winEnd = 0;
  private inflight: Array<{ t: Target; start: number; end: number; win: number; p: Promise<void> }> = [];
  private failure: unknown = null;

  constructor(
    private readonly data: DirectReads,
    private readonly dataPath: string,
    private readonly dataLength: number,
  ) {}

  /** Writes data-file bytes [dataPos, +length) at `offset` of `t` (maybe later; see settle()). */
  async write(t: Target, offset: number, dataPos: number, length: number): Promise<void> {
    if (length > DATA_WINDOW) {
      await this.settle();
      for (let done = 0; done < length; ) {
        const n = Math.min(DATA_WINDOW, length - done);
        await this.fill(dataPos + done, n);
        await io(t.path, () => t.out.write(this.windows[this.cur]!.subarray(0, n), offset + done));
        done += n;
      }
      return;
    }
    if (dataPos < this.winStart || dataPos + length > this.winEnd) {
      const next = 1 - this.cur;
      await this.settleWindow(next);
      this.cur = next;
      await this.fill(dataPos, length);
    }
    const end = offset + length;
    if (this.inflight.some((w) => w.t === t && w.start < end && offset < w.end)) await this.settle();
    const view = this.windows[this.cur]!.subarray(dataPos - this.winStart, dataPos - this.winStart + length);
    const p = io(t.path, () => t.out.write(view, offset));
    p.catch((e: unknown) => {
      this.failure ??= e;
    });
    this.inflight.push({ t, start: offset, end, win: this.cur, p });
    if (this.inflight.length >= MAX_WRITES) await this.inflight.shift()!.p;
  }

  /** Waits for every write in flight; throws the first failure. */
  async settle(): Promise<void> {
    const all = this.inflight;
    this.inflight = [];
    await Promise.allSettled(all.map((w) => w.p));
    if (this.failure !== null) throw this.failure;
  }

  /** Waits for the writes from window `win` (before it is read again); throws the first failure. */
  private async settleWindow(win: number): Promise<void> {
    const mine = this.inflight.filter((w) => w.win === win);
    this.inflight = this.inflight.filter((w) => w.win !== win);
    await Promise.allSettled(mine.map((w) => w.p));
    if (this.failure !== null) throw this.failure;
  }

  /** Lets writes in flight finish before the files close (after a failure elsewhere). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.inflight.map((w) => w.p));
    this.inflight = [];
  }

  /** Reads the window from `pos`: at least `need` bytes, as much as fits. */
  private async fill(pos: number, need: number): Promise<void> {
    const want = Math.min(DATA_WINDOW, this.dataLength - pos);
    let got = 0;
    while (got < want) {
      const bytesRead = await io(this.dataPath, () =>
        this.data.read(this.windows[this.cur]!.subarray(got), want - got, pos + got),
      );
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < need) {
      // Guarded against by the range check; a short read means the file changed under us.
      throw storeError(
        'STORE_DELTA_MISSING',
        'integrity',
        `${this.dataPath} is shorter than its index says`,
        {
          hint: 'The staged delta is damaged; remove it and run the job again.',
        },
      );
    }
    this.winStart = pos;
    this.winEnd = pos + got;
  }
}
