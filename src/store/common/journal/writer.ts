/**
 * Receiving one journal segment (journal-types.ts SegmentWriter): the data goes to the segment's
 * files as it arrives (writes applied in call order), seal() makes them durable with their index,
 * append() records the segment in pit.json, brings the head digests up to it and folds what left
 * the window into the base (journal.ts). The server's writer lock is held from open to append or
 * close, as for a delta.
 */
import { type FileHandle, open } from 'node:fs/promises';
import type { Logger } from '../../../core/log.ts';
import { storeError } from '../../errors.ts';
import {
  CHUNK_SIZE,
  type DeltaSummary,
  type JournalDeltaMeta,
  type ResumeState,
  type SegmentRecord,
  type SegmentWriter,
} from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { ensureDir, io, removeTree, writeAllAt, writeFileDurable } from '../files.ts';
import type { HeldLock } from '../lock.ts';
import { readSums } from '../sums.ts';
import type { PitFile, PitLayout } from './file.ts';
import type { IndexEntry } from './segment.ts';

interface DiskFiles {
  entries: IndexEntry[];
  fh: FileHandle | null;
  size: number;
  dataBytes: number;
  zeroBytes: number;
}

export interface SegmentHost {
  /** Records the sealed segment and returns it (journal.ts). */
  append(pit: PitFile, record: SegmentRecord): Promise<void>;
  /** After the segment is appended and the server's lock released (a generation cut, cut.ts). */
  appended?(record: SegmentRecord): Promise<void>;
}

export class JournalSegmentWriter implements SegmentWriter {
  readonly resumed: ResumeState | null = null;
  private readonly files = new Map<string, DiskFiles>();
  private queue: Promise<void> = Promise.resolve();
  private consistent = false;
  private sealed = false;
  private done = false;

  constructor(
    readonly _ctx: StoreContext,
    private readonly p: PitLayout,
    private readonly pit: PitFile,
    private readonly meta: JournalDeltaMeta,
    readonly deltaId: string,
    private readonly lock: HeldLock,
    private readonly host: SegmentHost,
    private readonly log: Logger,
  ) {
    for (const d of meta.disks)
      this.files.set(d.name, { entries: [], fh: null, size: d.size, dataBytes: 0, zeroBytes: 0 });
  }

  async expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    this.disk(disk);
    const path = this.p.headSums(disk);
    return io(path, async () => {
      const fh = await open(path, 'r');
      try {
        return await readSums(fh, fromChunk, count);
      } finally {
        await fh.close();
      }
    });
  }

  writeData(disk: string, offset: number, data: Buffer, chunkDigests: Buffer): Promise<void> {
    const f = this.disk(disk);
    this.inRange(f, disk, offset, data.length);
    const next = this.queue.then(async () => {
      if (!f.fh) {
        await ensureDir(this.p.segmentDir(this.deltaId));
        const path = this.p.data(this.deltaId, disk);
        f.fh = await io(path, () => open(path, 'wx', 0o600));
      }
      await writeAllAt(f.fh, data, f.dataBytes);
      const last = f.entries.at(-1);
      if (
        last?.at !== undefined &&
        last.o + last.l === offset &&
        last.at + last.l === f.dataBytes &&
        offset % CHUNK_SIZE === 0
      ) {
        last.l += data.length;
        last.d = `${last.d ?? ''}${chunkDigests.toString('hex')}`;
      } else {
        f.entries.push({ o: offset, l: data.length, at: f.dataBytes, d: chunkDigests.toString('hex') });
      }
      f.dataBytes += data.length;
    });
    this.queue = next.catch(() => {});
    return next;
  }

  async writeZero(disk: string, offset: number, length: number): Promise<void> {
    const f = this.disk(disk);
    this.inRange(f, disk, offset, length);
    await this.queue;
    f.entries.push({ o: offset, l: length });
    f.zeroBytes += length;
  }

  async checkpoint(_watermarks: Record<string, number>): Promise<void> {
    await this.queue;
    for (const f of this.files.values()) await f.fh?.sync();
  }

  setConsistent(consistent: boolean): void {
    this.consistent = consistent;
  }

  async seal(summary: DeltaSummary): Promise<void> {
    await this.queue;
    for (const [name, f] of this.files) {
      const s = summary.disks[name] ?? { dataBytes: 0, zeroBytes: 0 };
      if (s.dataBytes !== f.dataBytes || s.zeroBytes !== f.zeroBytes) {
        throw storeError(
          'STORE_SUMMARY_MISMATCH',
          'integrity',
          `segment of ${name}: the sender sent ${s.dataBytes}+${s.zeroBytes} bytes, ${f.dataBytes}+${f.zeroBytes} arrived`,
          {
            hint: 'The connection lost data; the sender sends the segment again.',
          },
        );
      }
    }
    await ensureDir(this.p.segmentDir(this.deltaId));
    for (const [name, f] of this.files) {
      if (f.fh) {
        await f.fh.sync();
        await f.fh.close();
        f.fh = null;
      }
      await writeFileDurable(this.p.index(this.deltaId, name), JSON.stringify(f.entries));
    }
    this.sealed = true;
  }

  async append(): Promise<SegmentRecord> {
    if (!this.sealed) {
      throw storeError('STORE_DELTA_STATE', 'internal', 'a journal segment is appended only after seal()', {
        hint: 'This is a bug in Haven; please report it with the log file of this run.',
      });
    }
    const last = this.pit.segments.at(-1) ?? this.pit.base;
    const record: SegmentRecord = {
      id: this.deltaId,
      seq: (last?.seq ?? 0) + 1,
      pointInTime: this.meta.pointInTime,
      takenAt: this.meta.takenAt,
      committedAt: new Date().toISOString(),
      consistent: this.consistent,
      generationId: this.meta.journal.generationId,
      disks: this.meta.disks.map((d) => ({ name: d.name, size: d.size })),
      dataBytes: [...this.files.values()].reduce((n, f) => n + f.dataBytes, 0),
      zeroBytes: [...this.files.values()].reduce((n, f) => n + f.zeroBytes, 0),
      ...(this.meta.journal.sourceOff && this.consistent ? { sourceOff: true } : {}),
    };
    try {
      await this.host.append(this.pit, record);
    } finally {
      this.done = true;
      await this.lock.release();
    }
    await this.host.appended?.(record);
    return record;
  }

  async close(): Promise<void> {
    await this.discard();
  }

  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.queue;
    for (const f of this.files.values()) await f.fh?.close().catch(() => {});
    await removeTree(this.p.segmentDir(this.deltaId));
    await this.lock.release();
    this.log.verbose('journal segment discarded', { deltaId: this.deltaId });
  }

  private disk(name: string): DiskFiles {
    const f = this.files.get(name);
    if (!f) {
      throw storeError('STORE_BAD_META', 'usage', `disk ${name} is not part of this segment`, {
        hint: 'The sender described the server inconsistently; check its configuration.',
      });
    }
    return f;
  }

  private inRange(f: DiskFiles, disk: string, offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > f.size) {
      throw storeError(
        'STORE_BAD_RANGE',
        'usage',
        `${disk}: ${offset}+${length} is outside the disk (${f.size} bytes)`,
        {
          hint: 'The sender described the server inconsistently; check its configuration.',
        },
      );
    }
  }
}
