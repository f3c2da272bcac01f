/**
 * Test support only: the DeltaWriter of the in-memory test store (memory-store.ts). What arrives
 * is kept per chunk; a checkpoint moves it into the server's partial delta, which is what a later
 * attempt resumes; commit builds the new generation's images and digests and rotates.
 */
import { randomUUID } from 'node:crypto';
import { chunkDigests } from '../../core/digest.ts';
import { imageName } from '../../store/common/names.ts';
import { chunkCount } from '../../store/common/sums.ts';
import { checkChunkDigests, checkChunkRange, checkExtent } from '../../store/common/writer/disk.ts';
import { badRequest, generationNotFound, storeError } from '../../store/errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaSummary,
  type DeltaWriter,
  type DiskSpec,
  type Generation,
  type ResumeState,
  type ServerManifest,
} from '../../store/types.ts';
import type { MemoryStore } from './memory-store.ts';

export type Counts = Record<string, { dataBytes: number; zeroBytes: number }>;

export interface Partial {
  deltaId: string;
  pointInTime: string;
  baseGenerationId: string | null;
  disks: DiskSpec[];
  /** Per disk: chunk index → content (checkpointed). */
  chunks: Map<string, Map<number, Buffer>>;
  watermarks: Record<string, number>;
  stagedBytes: number;
  /** Per disk, what arrived up to the last checkpoint (ResumeState.staged). */
  staged: Counts;
}

export interface ServerState {
  manifest: ServerManifest;
  /** generation id → disk → image. */
  images: Map<string, Map<string, Buffer>>;
  /** generation id → disk → chunk digests, as committed (verify compares images with them). */
  digests: Map<string, Map<string, Buffer>>;
  partial: Partial | null;
  locked: boolean;
}

export function zeroCounts(disks: DiskSpec[]): Counts {
  return Object.fromEntries(disks.map((d) => [d.name, { dataBytes: 0, zeroBytes: 0 }]));
}

type WriterState = 'open' | 'sealed' | 'done';

export class MemoryWriter implements DeltaWriter {
  readonly deltaId: string;
  readonly resumed: ResumeState | null;
  private readonly partial: Partial;
  /** Written since the last checkpoint. */
  private pending = new Map<string, Map<number, Buffer>>();
  private pendingCounts: Counts;
  private inflight: Promise<void>[] = [];
  private state: WriterState = 'open';

  constructor(
    private readonly store: MemoryStore,
    private readonly s: ServerState,
    private readonly meta: DeltaMeta,
  ) {
    const p = s.partial;
    if (p) {
      this.resumed = {
        deltaId: p.deltaId,
        pointInTime: p.pointInTime,
        watermarks: { ...p.watermarks },
        stagedBytes: p.stagedBytes,
        staged: structuredClone(p.staged),
      };
      // Positions from an older point in time mean nothing to the new sender.
      if (p.pointInTime !== meta.pointInTime) p.watermarks = {};
      p.pointInTime = meta.pointInTime;
      this.partial = p;
    } else {
      this.resumed = null;
      this.partial = {
        deltaId: randomUUID(),
        pointInTime: meta.pointInTime,
        baseGenerationId: meta.baseGenerationId,
        disks: structuredClone(meta.disks),
        chunks: new Map(meta.disks.map((d) => [d.name, new Map()])),
        watermarks: {},
        stagedBytes: 0,
        staged: zeroCounts(meta.disks),
      };
      s.partial = this.partial;
    }
    this.deltaId = this.partial.deltaId;
    this.pendingCounts = zeroCounts(meta.disks);
    for (const d of meta.disks) this.pending.set(d.name, new Map());
  }

  private assertOpen(op: string, also: WriterState[] = []): void {
    if (this.state !== 'open' && !also.includes(this.state)) {
      throw badRequest('STORE_DELTA_STATE', `${op} is not allowed: the delta is ${this.state}`, {
        deltaId: this.deltaId,
      });
    }
  }

  private disk(name: string) {
    const d = this.meta.disks.find((x) => x.name === name);
    if (!d)
      throw badRequest('STORE_UNKNOWN_DISK', `disk ${JSON.stringify(name)} is not part of this delta`, {
        disk: name,
      });
    return { name: d.name, size: d.size, chunks: chunkCount(d.size) };
  }

  private chunkAt(disk: string, index: number): Buffer {
    const size = this.disk(disk).size;
    const len = Math.min(CHUNK_SIZE, size - index * CHUNK_SIZE);
    const staged = this.pending.get(disk)?.get(index) ?? this.partial.chunks.get(disk)?.get(index);
    if (staged) return staged;
    const base = this.meta.baseGenerationId
      ? this.s.images.get(this.meta.baseGenerationId)?.get(disk)
      : undefined;
    const out = Buffer.alloc(len);
    // A disk grown since the base reads as zeros past the base's end.
    if (base && index * CHUNK_SIZE < base.length)
      base.copy(out, 0, index * CHUNK_SIZE, Math.min(base.length, index * CHUNK_SIZE + len));
    return out;
  }

  async expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    this.assertOpen('expectedDigests', ['sealed']);
    checkChunkRange(this.disk(disk), fromChunk, count);
    await this.settle();
    const out: Buffer[] = [];
    for (let i = fromChunk; i < fromChunk + count; i++) {
      out.push(chunkDigests(this.store.descriptor.digest, this.chunkAt(disk, i), CHUNK_SIZE));
    }
    return Buffer.concat(out);
  }

  async writeData(disk: string, offset: number, data: Buffer, digests: Buffer): Promise<void> {
    this.assertOpen('writeData');
    const d = this.disk(disk);
    checkExtent(d, offset, data.length);
    checkChunkDigests(d, offset, data.length, digests);
    const counts = this.pendingCounts[disk];
    if (counts) counts.dataBytes += data.length;
    const write = this.stage(disk, offset, data);
    this.inflight.push(write);
    await write;
  }

  /** Reads `data` only after the delay (a slow disk), then records it; delays keep call order. */
  private async stage(disk: string, offset: number, data: Buffer): Promise<void> {
    if (this.store.writeDelayMs) await new Promise((r) => setTimeout(r, this.store.writeDelayMs));
    const pending = this.pending.get(disk);
    for (let i = 0; i * CHUNK_SIZE < data.length; i++) {
      pending?.set(offset / CHUNK_SIZE + i, Buffer.from(data.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)));
    }
  }

  /** Waits for the data writes still running. */
  private async settle(): Promise<void> {
    const all = this.inflight;
    this.inflight = [];
    await Promise.all(all);
  }

  async writeZero(disk: string, offset: number, length: number): Promise<void> {
    this.assertOpen('writeZero');
    const d = this.disk(disk);
    checkExtent(d, offset, length);
    await this.settle();
    const end = offset + length;
    const pending = this.pending.get(disk);
    for (let o = offset; o < end; o += CHUNK_SIZE)
      pending?.set(o / CHUNK_SIZE, Buffer.alloc(Math.min(CHUNK_SIZE, end - o)));
    const counts = this.pendingCounts[disk];
    if (counts) counts.zeroBytes += length;
  }

  async checkpoint(watermarks: Record<string, number>): Promise<void> {
    this.assertOpen('checkpoint');
    for (const [name, w] of Object.entries(watermarks)) {
      const d = this.disk(name);
      if (!Number.isSafeInteger(w) || w < 0 || w > d.size) {
        throw badRequest('STORE_BAD_WATERMARK', `watermark ${w} is outside disk ${name}`, { disk: name });
      }
    }
    this.store.calls.push(`checkpoint ${JSON.stringify(watermarks)}`);
    await this.settle();
    this.flush();
    Object.assign(this.partial.watermarks, watermarks);
  }

  private flush(): void {
    for (const [disk, m] of this.pending) {
      const dst = this.partial.chunks.get(disk);
      for (const [i, b] of m) dst?.set(i, b);
      m.clear();
    }
    for (const [disk, c] of Object.entries(this.pendingCounts)) {
      const staged = this.partial.staged[disk] ?? { dataBytes: 0, zeroBytes: 0 };
      this.partial.staged[disk] = {
        dataBytes: staged.dataBytes + c.dataBytes,
        zeroBytes: staged.zeroBytes + c.zeroBytes,
      };
      this.partial.stagedBytes += c.dataBytes + c.zeroBytes;
    }
    this.pendingCounts = zeroCounts(this.meta.disks);
  }

  async seal(summary: DeltaSummary): Promise<void> {
    this.assertOpen('seal');
    await this.settle();
    const staged = (disk: string) => {
      const a = this.partial.staged[disk] ?? { dataBytes: 0, zeroBytes: 0 };
      const b = this.pendingCounts[disk] ?? { dataBytes: 0, zeroBytes: 0 };
      return { dataBytes: a.dataBytes + b.dataBytes, zeroBytes: a.zeroBytes + b.zeroBytes };
    };
    const unknown = Object.keys(summary?.disks ?? {}).filter(
      (n) => !this.meta.disks.some((d) => d.name === n),
    );
    const differ = this.meta.disks.filter((d) => {
      const sent = summary?.disks?.[d.name] ?? { dataBytes: 0, zeroBytes: 0 };
      const have = staged(d.name);
      return sent.dataBytes !== have.dataBytes || sent.zeroBytes !== have.zeroBytes;
    });
    if (unknown.length || differ.length) {
      throw storeError(
        'STORE_SUMMARY_MISMATCH',
        'integrity',
        'the delta summary does not match what was staged',
        {
          hint: 'The delta stays partial and resumes from its last checkpoint.',
          details: { unknown, differ: differ.map((d) => d.name) },
        },
      );
    }
    this.flush();
    this.state = 'sealed';
    this.store.calls.push('seal');
  }

  async commit(): Promise<Generation> {
    this.assertOpen('commit', ['sealed']);
    if (this.state !== 'sealed') {
      throw badRequest('STORE_DELTA_STATE', 'commit is not allowed: the delta is open', {
        deltaId: this.deltaId,
      });
    }
    const alg = this.store.descriptor.digest;
    const id = randomUUID();
    const images = new Map<string, Buffer>();
    const digests = new Map<string, Buffer>();
    for (const d of this.meta.disks) {
      const img = Buffer.alloc(d.size);
      for (let i = 0; i * CHUNK_SIZE < d.size; i++) this.chunkAt(d.name, i).copy(img, i * CHUNK_SIZE);
      images.set(d.name, img);
      digests.set(d.name, chunkDigests(alg, img, CHUNK_SIZE));
    }
    const m = this.s.manifest;
    const gen: Generation = {
      id,
      seq: 1,
      pointInTime: this.meta.pointInTime,
      takenAt: this.meta.takenAt,
      committedAt: new Date().toISOString(),
      mode: this.meta.mode,
      job: this.meta.job,
      disks: this.meta.disks.map((d) => ({ ...d, image: imageName(this.meta.server, d.name, 1) })),
      deltaBytes: Object.values(this.partial.staged).reduce((n, c) => n + c.dataBytes, 0),
      tests: [],
    };
    m.copies = this.meta.copies;
    m.sourceDefinition = this.meta.sourceDefinition;
    m.generations = [gen, ...m.generations].slice(0, m.copies).map((g, i) => ({
      ...g,
      seq: i + 1,
      disks: g.disks.map((d) => ({ ...d, image: imageName(this.meta.server, d.name, i + 1) })),
    }));
    this.s.images.set(id, images);
    this.s.digests.set(id, digests);
    for (const k of [...this.s.images.keys()]) {
      if (!m.generations.some((g) => g.id === k)) {
        this.s.images.delete(k);
        this.s.digests.delete(k);
      }
    }
    this.s.partial = null;
    await this.store.ensureDefinition(this.meta);
    this.release();
    this.store.calls.push('commit');
    const committed = m.generations[0];
    if (!committed) throw generationNotFound(this.meta.server, id);
    return structuredClone(committed);
  }

  async close(): Promise<void> {
    if (this.state === 'done') return;
    this.store.calls.push('close');
    await Promise.allSettled(this.inflight);
    this.pending.clear();
    this.release();
  }

  async discard(): Promise<void> {
    if (this.state !== 'open') {
      throw badRequest('STORE_DELTA_STATE', `a ${this.state} delta cannot be discarded`, {
        deltaId: this.deltaId,
      });
    }
    this.store.calls.push('discard');
    this.s.partial = null;
    this.release();
  }

  private release(): void {
    this.state = 'done';
    this.s.locked = false;
  }
}
