/**
 * An independent model of what a store must hold, for the conformance suite: each generation's
 * bytes per disk (small disks, a few MiB), changed by a seeded generator, and the sender side of
 * a delta (full, incremental, checksum resync, resume) written against the DeltaWriter contract
 * only. Nothing here reads store files.
 */
import { chunkDigests, type DigestAlgorithm } from '../../src/core/digest.ts';
import type { DeltaSummary, DeltaWriter, DiskSpec } from '../../src/store/types.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';

/** mulberry32: small, fast, and the same sequence everywhere for a seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE((this.next() * 4294967296) >>> 0, i);
    for (; i < n; i++) b[i] = this.int(256);
    // Never an all-zero chunk by accident: data chunks must stay distinguishable from holes.
    b[0] = (b[0]! | 1) & 0xff;
    return b;
  }
}

export type Content = Map<string, Buffer>;

export interface Extent {
  disk: string;
  offset: number;
  length: number;
  kind: 'data' | 'zero';
}

export const MAX_DATA_EXTENT = 1 << 20;

export function chunksOf(size: number): number {
  return Math.ceil(size / CHUNK_SIZE);
}

function chunkRange(size: number, c: number): [number, number] {
  return [c * CHUNK_SIZE, Math.min(size, (c + 1) * CHUNK_SIZE)];
}

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function cloneContent(c: Content): Content {
  return new Map([...c].map(([k, v]) => [k, Buffer.from(v)]));
}

/** Extents covering the given chunks of each disk: runs of touched chunks, data or zero by content. */
export function extentsForChunks(
  content: Content,
  disks: DiskSpec[],
  touched: Map<string, Set<number>>,
): Extent[] {
  const out: Extent[] = [];
  for (const d of disks) {
    const set = touched.get(d.name);
    if (!set?.size) continue;
    const buf = content.get(d.name)!;
    let run: Extent | null = null;
    for (let c = 0; c < chunksOf(d.size); c++) {
      if (!set.has(c)) {
        run = null;
        continue;
      }
      const [s, e] = chunkRange(d.size, c);
      const kind = isZero(buf.subarray(s, e)) ? 'zero' : 'data';
      if (
        run &&
        run.kind === kind &&
        run.offset + run.length === s &&
        (kind === 'zero' || run.length < MAX_DATA_EXTENT)
      ) {
        run.length += e - s;
      } else {
        run = { disk: d.name, offset: s, length: e - s, kind };
        out.push(run);
      }
    }
  }
  return out;
}

/** A first run: every chunk of every disk. */
export function fullExtents(content: Content, disks: DiskSpec[]): Extent[] {
  const all = new Map(
    disks.map((d) => [d.name, new Set(Array.from({ length: chunksOf(d.size) }, (_, i) => i))]),
  );
  return extentsForChunks(content, disks, all);
}

/** Fresh content: some random data regions, the rest zero (holes). */
export function initialContent(rng: Rng, disks: DiskSpec[], fill = 0.5): Content {
  const c: Content = new Map();
  for (const d of disks) {
    const buf = Buffer.alloc(d.size);
    for (let ch = 0; ch < chunksOf(d.size); ch++) {
      if (rng.next() < fill) {
        const [s, e] = chunkRange(d.size, ch);
        rng.bytes(e - s).copy(buf, s);
      }
    }
    c.set(d.name, buf);
  }
  return c;
}

export interface Mutation {
  content: Content;
  touched: Map<string, Set<number>>;
}

/**
 * Changes `base`: random chunks rewritten, some ranges zeroed (discards), disks resized to
 * `disks` (grown space reads as zeros and counts as touched).
 */
export function mutate(
  rng: Rng,
  base: Content,
  disks: DiskSpec[],
  options: { writes?: number; zeroRanges?: number; zeroChunks?: number } = {},
): Mutation {
  const content: Content = new Map();
  const touched = new Map<string, Set<number>>();
  for (const d of disks) {
    const old = base.get(d.name);
    const buf = Buffer.alloc(d.size);
    const set = new Set<number>();
    if (old) old.copy(buf, 0, 0, Math.min(old.length, d.size));
    else for (let c = 0; c < chunksOf(d.size); c++) set.add(c);
    if (old && old.length !== d.size) {
      // The chunk at the old end changes (cut or padded) and grown chunks are new.
      for (let c = Math.floor(Math.min(old.length, d.size) / CHUNK_SIZE); c < chunksOf(d.size); c++)
        set.add(c);
    }
    const n = chunksOf(d.size);
    for (let i = 0; i < (options.writes ?? 6); i++) {
      const c = rng.int(n);
      const [s, e] = chunkRange(d.size, c);
      rng.bytes(e - s).copy(buf, s);
      set.add(c);
    }
    for (let i = 0; i < (options.zeroRanges ?? 1); i++) {
      const len = Math.max(1, Math.min(n, options.zeroChunks ?? 3));
      const c0 = rng.int(n - len + 1);
      for (let c = c0; c < c0 + len; c++) {
        const [s, e] = chunkRange(d.size, c);
        buf.fill(0, s, e);
        set.add(c);
      }
    }
    content.set(d.name, buf);
    touched.set(d.name, set);
  }
  return { content, touched };
}

export interface SendOptions {
  /** Call checkpoint() after every this many extents (0: never). */
  checkpointEvery?: number;
  /** Skip everything below these positions (a resume under the same point in time). */
  from?: Record<string, number>;
  /** Stop after sending this many extents (a connection that breaks). */
  stopAfter?: number;
  /**
   * Data writes issued before earlier ones settled, like the receiver does (default 1: each
   * awaited). All settle before a zero range, a checkpoint and the end.
   */
  inFlight?: number;
}

export interface SendResult {
  sent: DeltaSummary;
  /** Watermarks of the last checkpoint taken. */
  watermarks: Record<string, number>;
  extentsSent: number;
}

function emptySummary(disks: DiskSpec[]): DeltaSummary {
  return { disks: Object.fromEntries(disks.map((d) => [d.name, { dataBytes: 0, zeroBytes: 0 }])) };
}

/** A summary plus what a resumed partial held already (ResumeState.staged). */
export function withStaged(
  sent: DeltaSummary,
  staged: Record<string, { dataBytes: number; zeroBytes: number }> | undefined,
): DeltaSummary {
  const out: DeltaSummary = { disks: structuredClone(sent.disks) };
  for (const [k, v] of Object.entries(staged ?? {})) {
    const cur = out.disks[k] ?? { dataBytes: 0, zeroBytes: 0 };
    out.disks[k] = { dataBytes: cur.dataBytes + v.dataBytes, zeroBytes: cur.zeroBytes + v.zeroBytes };
  }
  return out;
}

/** Sends extents in order through the writer, the way the receiver would. */
export async function sendExtents(
  w: DeltaWriter,
  alg: DigestAlgorithm,
  content: Content,
  disks: DiskSpec[],
  extents: Extent[],
  options: SendOptions = {},
): Promise<SendResult> {
  const sent = emptySummary(disks);
  const watermarks: Record<string, number> = {};
  const position: Record<string, number> = {};
  let n = 0;
  const limit = options.inFlight ?? 1;
  let pending: Promise<void>[] = [];
  const settle = async (max: number) => {
    try {
      while (pending.length > max) await pending.shift();
    } catch (e) {
      // A failed write must not leave the others unobserved.
      await Promise.allSettled(pending);
      pending = [];
      throw e;
    }
  };
  for (const e of extents) {
    if (options.from && e.offset < (options.from[e.disk] ?? 0)) continue;
    if (options.stopAfter !== undefined && n >= options.stopAfter) break;
    const s = sent.disks[e.disk]!;
    if (e.kind === 'data') {
      for (let off = e.offset; off < e.offset + e.length; off += MAX_DATA_EXTENT) {
        const data = content.get(e.disk)!.subarray(off, Math.min(e.offset + e.length, off + MAX_DATA_EXTENT));
        pending.push(w.writeData(e.disk, off, Buffer.from(data), chunkDigests(alg, data, CHUNK_SIZE)));
        await settle(limit - 1);
      }
      s.dataBytes += e.length;
    } else {
      await settle(0);
      await w.writeZero(e.disk, e.offset, e.length);
      s.zeroBytes += e.length;
    }
    // Disks go in order: an earlier disk is complete once a later one starts.
    for (const d of disks) {
      if (d.name === e.disk) break;
      position[d.name] = d.size;
    }
    position[e.disk] = e.offset + e.length;
    n++;
    if (options.checkpointEvery && n % options.checkpointEvery === 0) {
      await settle(0);
      await w.checkpoint({ ...position });
      Object.assign(watermarks, position);
    }
  }
  await settle(0);
  return { sent, watermarks, extentsSent: n };
}

/** Checksum resync: asks what the target will hold and sends only chunks that differ. */
export async function resyncExtents(
  w: DeltaWriter,
  alg: DigestAlgorithm,
  content: Content,
  disks: DiskSpec[],
): Promise<Extent[]> {
  const touched = new Map<string, Set<number>>();
  for (const d of disks) {
    const set = new Set<number>();
    const buf = content.get(d.name)!;
    const n = chunksOf(d.size);
    for (let from = 0; from < n; from += 1024) {
      const count = Math.min(1024, n - from);
      const want = await w.expectedDigests(d.name, from, count);
      const have = chunkDigests(
        alg,
        buf.subarray(from * CHUNK_SIZE, Math.min(d.size, (from + count) * CHUNK_SIZE)),
        CHUNK_SIZE,
      );
      for (let i = 0; i < count; i++) {
        if (!want.subarray(i * 32, i * 32 + 32).equals(have.subarray(i * 32, i * 32 + 32))) set.add(from + i);
      }
    }
    touched.set(d.name, set);
  }
  return extentsForChunks(content, disks, touched);
}

export function summaryOf(extents: Extent[], disks: DiskSpec[]): DeltaSummary {
  const s = emptySummary(disks);
  for (const e of extents) {
    const d = s.disks[e.disk]!;
    if (e.kind === 'data') d.dataBytes += e.length;
    else d.zeroBytes += e.length;
  }
  return s;
}

/** Chunks of a content that hold data (what a sparse image must allocate at most). */
export function dataChunks(buf: Buffer): number {
  let n = 0;
  for (let c = 0; c < chunksOf(buf.length); c++) {
    if (!isZero(buf.subarray(c * CHUNK_SIZE, Math.min(buf.length, (c + 1) * CHUNK_SIZE)))) n++;
  }
  return n;
}
