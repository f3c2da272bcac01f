/**
 * The rules a delta's frames must follow, kept by both ends (docs/stream-protocol.md §5): disk
 * index and ranges, chunk alignment, ascending order (disks in OPEN order, offsets ascending,
 * nothing below a resumed watermark), digest request bounds, the resume watermarks that MARK
 * frames advance, and what this connection sent (checked against END_DELTA). Pure: no I/O.
 *
 * The receiver uses it to reject frames before they reach the store; the sender uses the same
 * rules to refuse bad calls before they go on the wire.
 */
import type { DigestAlgorithm } from '../core/digest.ts';
import type { DiskSpec, ResumeState } from '../store/types.ts';
import { AttemptDigest } from './digests.ts';
import { protoError } from './errors.ts';
import type { AttemptTotals, EndDelta, ExtentFrame } from './frames.ts';

export interface TrackedDisk extends DiskSpec {
  index: number;
  chunks: number;
}

interface Counters {
  frames: number;
  dataBytes: number;
  zeroBytes: number;
}

export class DeltaTracker {
  readonly disks: TrackedDisk[];
  private readonly byName = new Map<string, TrackedDisk>();
  /** Resumed watermarks (same point in time): nothing may be sent below them again. */
  private readonly floors: number[];
  /** Sender positions below which everything was sent, per disk (what MARK advanced). */
  readonly watermarks: number[];
  private cursorDisk = 0;
  private cursorPos = 0;
  private readonly counters: Counters[];
  private readonly attemptDigest: AttemptDigest;
  /** Data bytes accepted since the last checkpoint (the receiver's checkpoint cadence). */
  bytesSinceCheckpoint = 0;

  constructor(
    disks: readonly DiskSpec[],
    readonly chunkSize: number,
    readonly digest: DigestAlgorithm,
    /** Pass the resume state only when it belongs to the same point in time. */
    resume: ResumeState | null,
    readonly maxExtentBytes: number,
  ) {
    this.disks = disks.map((d, index) => ({ ...d, index, chunks: Math.ceil(d.size / chunkSize) }));
    for (const d of this.disks) this.byName.set(d.name, d);
    this.floors = this.disks.map((d) => Math.min(resume?.watermarks[d.name] ?? 0, d.size));
    this.watermarks = [...this.floors];
    this.counters = this.disks.map(() => ({ frames: 0, dataBytes: 0, zeroBytes: 0 }));
    this.attemptDigest = new AttemptDigest(digest);
  }

  disk(index: number): TrackedDisk {
    const d = this.disks[index];
    if (!d) {
      throw protoError('PROTO_BAD_DISK', `disk index ${index} out of range (${this.disks.length} disks)`, {
        disk: index,
      });
    }
    return d;
  }

  diskByName(name: string): TrackedDisk {
    const d = this.byName.get(name);
    if (!d) throw protoError('PROTO_BAD_DISK', `unknown disk ${JSON.stringify(name)}`, { disk: name });
    return d;
  }

  /** Throws unless the extent may come next. Does not change anything. */
  checkExtent(e: Pick<ExtentFrame, 'disk' | 'kind' | 'offset' | 'length'>): TrackedDisk {
    const d = this.disk(e.disk);
    const where = { disk: d.name, offset: e.offset, length: e.length };
    const end = e.offset + e.length;
    if (e.length <= 0 || e.offset < 0 || !Number.isSafeInteger(e.offset) || !Number.isSafeInteger(e.length)) {
      throw protoError('PROTO_BAD_RANGE', `empty or invalid extent on ${d.name}`, where);
    }
    if (e.offset % this.chunkSize !== 0) {
      throw protoError(
        'PROTO_BAD_RANGE',
        `extent offset ${e.offset} on ${d.name} is not chunk-aligned`,
        where,
      );
    }
    if (end > d.size) {
      throw protoError(
        'PROTO_BAD_RANGE',
        `extent [${e.offset}, ${end}) beyond the end of ${d.name} (${d.size})`,
        where,
      );
    }
    if (end % this.chunkSize !== 0 && end !== d.size) {
      throw protoError('PROTO_BAD_RANGE', `extent end ${end} on ${d.name} is not chunk-aligned`, where);
    }
    if (e.kind === 'data' && e.length > this.maxExtentBytes) {
      throw protoError(
        'PROTO_BAD_RANGE',
        `data extent of ${e.length} bytes (at most ${this.maxExtentBytes})`,
        where,
      );
    }
    this.checkOrder(e.disk, e.offset, where);
    if (e.offset < this.floors[e.disk]!) {
      throw protoError(
        'PROTO_OUT_OF_ORDER',
        `extent at ${e.offset} on ${d.name} lies below the resumed watermark ${this.floors[e.disk]}`,
        where,
      );
    }
    return d;
  }

  private checkOrder(disk: number, offset: number, where: Record<string, unknown>): void {
    if (disk < this.cursorDisk || (disk === this.cursorDisk && offset < this.cursorPos)) {
      throw protoError(
        'PROTO_OUT_OF_ORDER',
        `position ${offset} on disk ${disk} comes after position ${this.cursorPos} on disk ${this.cursorDisk}`,
        where,
      );
    }
  }

  /** Records an extent that passed checkExtent (and, for data, its digest check). */
  accept(e: Pick<ExtentFrame, 'disk' | 'kind' | 'offset' | 'length'>, root?: Buffer): void {
    this.cursorDisk = e.disk;
    this.cursorPos = e.offset + e.length;
    const c = this.counters[e.disk]!;
    c.frames++;
    if (e.kind === 'data') {
      c.dataBytes += e.length;
      this.bytesSinceCheckpoint += e.length;
    } else {
      c.zeroBytes += e.length;
    }
    this.attemptDigest.add(e, root);
  }

  /**
   * MARK: everything below `offset` on `disk`, and every earlier disk, has been sent. Returns the
   * new watermarks (per disk, OPEN order).
   */
  mark(disk: number, offset: number): number[] {
    const d = this.disk(disk);
    const where = { disk: d.name, offset };
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > d.size) {
      throw protoError('PROTO_BAD_RANGE', `MARK at ${offset} beyond the end of ${d.name} (${d.size})`, where);
    }
    if (offset % this.chunkSize !== 0 && offset !== d.size) {
      throw protoError('PROTO_BAD_RANGE', `MARK at ${offset} on ${d.name} is not chunk-aligned`, where);
    }
    this.checkOrder(disk, offset, where);
    this.cursorDisk = disk;
    this.cursorPos = offset;
    for (let i = 0; i < disk; i++) this.watermarks[i] = this.disks[i]!.size;
    this.watermarks[disk] = Math.max(this.watermarks[disk]!, offset);
    return [...this.watermarks];
  }

  watermarksByName(marks: readonly number[] = this.watermarks): Record<string, number> {
    const out: Record<string, number> = {};
    for (const d of this.disks) out[d.name] = marks[d.index]!;
    return out;
  }

  checkDigestsRequest(disk: number, fromChunk: number, count: number, maxCount: number): TrackedDisk {
    const d = this.disk(disk);
    const where = { disk: d.name, fromChunk, count };
    if (count < 1 || count > maxCount) {
      throw protoError('PROTO_BAD_RANGE', `digest request for ${count} chunks (1 to ${maxCount})`, where);
    }
    if (fromChunk + count > d.chunks) {
      throw protoError(
        'PROTO_BAD_RANGE',
        `digest request for chunks [${fromChunk}, ${fromChunk + count}) of ${d.name}, which has ${d.chunks}`,
        where,
      );
    }
    return d;
  }

  /** What this connection sent, as END_DELTA reports it. */
  totals(): AttemptTotals {
    const disks: AttemptTotals['disks'] = {};
    for (const d of this.disks) disks[d.name] = { ...this.counters[d.index]! };
    return { disks, digest: this.attemptDigest.hex() };
  }

  /**
   * Checks END_DELTA against what this end counted: same disks, same per-disk counts, same attempt
   * digest, and whole-delta totals no smaller than this attempt's.
   */
  verifyEnd(end: EndDelta): void {
    const names = this.disks.map((d) => d.name);
    const sameDisks = (rec: Record<string, unknown>) => {
      const keys = Object.keys(rec);
      return keys.length === names.length && names.every((n) => Object.hasOwn(rec, n));
    };
    if (!sameDisks(end.summary.disks) || !sameDisks(end.attempt.disks)) {
      throw protoError('PROTO_BAD_FRAME', 'END_DELTA does not list exactly the disks of OPEN', {
        disks: names,
      });
    }
    for (const name of Object.keys(end.imageDigests ?? {})) {
      if (!this.byName.has(name)) {
        throw protoError(
          'PROTO_BAD_FRAME',
          `END_DELTA image digest for unknown disk ${JSON.stringify(name)}`,
          {
            disk: name,
          },
        );
      }
    }
    const mine = this.totals();
    for (const name of names) {
      const a = end.attempt.disks[name]!;
      const m = mine.disks[name]!;
      if (a.frames !== m.frames || a.dataBytes !== m.dataBytes || a.zeroBytes !== m.zeroBytes) {
        throw protoError(
          'PROTO_DELTA_MISMATCH',
          `disk ${name}: sender sent ${fmt(a)}, receiver got ${fmt(m)}`,
          {
            disk: name,
            sent: a,
            received: m,
          },
        );
      }
      const s = end.summary.disks[name]!;
      if (s.dataBytes < m.dataBytes || s.zeroBytes < m.zeroBytes) {
        throw protoError(
          'PROTO_DELTA_MISMATCH',
          `disk ${name}: delta summary is smaller than this attempt alone`,
          {
            disk: name,
            summary: s,
            attempt: m,
          },
        );
      }
    }
    if (end.attempt.digest !== mine.digest) {
      throw protoError(
        'PROTO_DELTA_MISMATCH',
        'the digest over the extents sent differs from the one received',
        {
          sent: end.attempt.digest,
          received: mine.digest,
        },
      );
    }
  }
}

function fmt(c: Counters): string {
  return `${c.frames} frames, ${c.dataBytes} data bytes, ${c.zeroBytes} zero bytes`;
}
