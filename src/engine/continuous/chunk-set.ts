/**
 * Sets of chunks, one bit per 64 KiB chunk of a disk (DataKeeper's intent log at its Windows
 * granularity; 40 KB for a 20 GiB disk): what a lane still owes its target (its pending set),
 * what changed in a cycle, what a segment carries. Memory and the persisted size follow the
 * disk's size in chunks, not the data.
 */

export interface ChunkRun {
  /** First chunk index. */
  first: number;
  /** Chunks in the run. */
  count: number;
}

export class ChunkSet {
  private readonly bits: Uint8Array;

  constructor(
    /** Chunks of the disk (the last may be short). */
    readonly chunks: number,
    bits?: Uint8Array,
  ) {
    const bytes = Math.ceil(chunks / 8);
    if (bits && bits.length !== bytes) {
      throw new RangeError(`a set of ${chunks} chunks takes ${bytes} bytes, not ${bits.length}`);
    }
    this.bits = bits ? new Uint8Array(bits) : new Uint8Array(bytes);
  }

  /** A set for a disk of `size` bytes in chunks of `chunkSize`. */
  static forDisk(size: number, chunkSize: number): ChunkSet {
    return new ChunkSet(Math.ceil(size / chunkSize));
  }

  /** Every chunk of the disk. */
  static full(chunks: number): ChunkSet {
    const s = new ChunkSet(chunks);
    s.addChunks(0, chunks);
    return s;
  }

  has(chunk: number): boolean {
    return ((this.bits[chunk >> 3] ?? 0) & (1 << (chunk & 7))) !== 0;
  }

  /** Adds chunks [first, first + count). */
  addChunks(first: number, count: number): void {
    const end = Math.min(this.chunks, first + count);
    for (let c = Math.max(0, first); c < end; c++) {
      if ((c & 7) === 0 && c + 8 <= end) {
        this.bits[c >> 3] = 0xff;
        c += 7;
        continue;
      }
      this.bits[c >> 3] = (this.bits[c >> 3] ?? 0) | (1 << (c & 7));
    }
  }

  /** Adds every chunk the byte range [offset, offset + length) touches. */
  addBytes(offset: number, length: number, chunkSize: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / chunkSize);
    const last = Math.floor((offset + length - 1) / chunkSize);
    this.addChunks(first, last - first + 1);
  }

  addAll(other: ChunkSet): void {
    this.check(other);
    for (let i = 0; i < this.bits.length; i++) this.bits[i] = (this.bits[i] ?? 0) | (other.bits[i] ?? 0);
  }

  removeAll(other: ChunkSet): void {
    this.check(other);
    for (let i = 0; i < this.bits.length; i++) this.bits[i] = (this.bits[i] ?? 0) & ~(other.bits[i] ?? 0);
  }

  /** A new set: the chunks in both. */
  intersect(other: ChunkSet): ChunkSet {
    this.check(other);
    const out = new ChunkSet(this.chunks);
    for (let i = 0; i < this.bits.length; i++) out.bits[i] = (this.bits[i] ?? 0) & (other.bits[i] ?? 0);
    return out;
  }

  clone(): ChunkSet {
    return new ChunkSet(this.chunks, this.bits);
  }

  clear(): void {
    this.bits.fill(0);
  }

  /** Number of chunks in the set. */
  count(): number {
    let n = 0;
    for (const b of this.bits) {
      let x = b;
      while (x) {
        x &= x - 1;
        n++;
      }
    }
    return n;
  }

  isEmpty(): boolean {
    return this.bits.every((b) => b === 0);
  }

  /** Runs of consecutive chunks, ascending. */
  *runs(): Generator<ChunkRun> {
    let start = -1;
    for (let i = 0; i < this.bits.length; i++) {
      const b = this.bits[i] ?? 0;
      if (b === 0 && start < 0) continue;
      if (b === 0xff && start >= 0) continue;
      for (let j = 0; j < 8; j++) {
        const c = i * 8 + j;
        if (c >= this.chunks) break;
        const set = (b & (1 << j)) !== 0;
        if (set && start < 0) start = c;
        if (!set && start >= 0) {
          yield { first: start, count: c - start };
          start = -1;
        }
      }
    }
    if (start >= 0) yield { first: start, count: this.chunks - start };
  }

  /**
   * The first chunks of the set, in order, holding at most `maxChunks`: a lane whose pending set
   * is larger than a cycle may carry sends it in parts.
   */
  head(maxChunks: number): ChunkSet {
    const out = new ChunkSet(this.chunks);
    let left = maxChunks;
    for (const r of this.runs()) {
      if (left <= 0) break;
      const n = Math.min(left, r.count);
      out.addChunks(r.first, n);
      left -= n;
    }
    return out;
  }

  /** The bitmap as stored (little-endian bit order within each byte). */
  toBytes(): Uint8Array {
    return new Uint8Array(this.bits);
  }

  private check(other: ChunkSet): void {
    if (other.chunks !== this.chunks) {
      throw new RangeError(`chunk sets of ${this.chunks} and ${other.chunks} chunks do not combine`);
    }
  }
}

/** Chunk sets of several disks, by store disk name (a server's pending set). */
export class DiskChunks {
  readonly disks = new Map<string, ChunkSet>();

  constructor(sizes: ReadonlyMap<string, number> | Iterable<[string, number]>, chunkSize: number) {
    for (const [name, size] of sizes) this.disks.set(name, ChunkSet.forDisk(size, chunkSize));
  }

  get(disk: string): ChunkSet {
    const s = this.disks.get(disk);
    if (!s) throw new RangeError(`no chunk set for disk ${disk}`);
    return s;
  }

  addAll(other: DiskChunks): void {
    for (const [d, s] of other.disks) this.disks.get(d)?.addAll(s);
  }

  removeAll(other: DiskChunks): void {
    for (const [d, s] of other.disks) this.disks.get(d)?.removeAll(s);
  }

  clone(): DiskChunks {
    const out = new DiskChunks([], 1);
    for (const [d, s] of this.disks) out.disks.set(d, s.clone());
    return out;
  }

  count(): number {
    let n = 0;
    for (const s of this.disks.values()) n += s.count();
    return n;
  }

  isEmpty(): boolean {
    return [...this.disks.values()].every((s) => s.isEmpty());
  }

  /** The first `maxChunks` chunks, disks in order. */
  head(maxChunks: number): DiskChunks {
    const out = new DiskChunks([], 1);
    let left = maxChunks;
    for (const [d, s] of this.disks) {
      const h = s.head(Math.max(0, left));
      left -= h.count();
      out.disks.set(d, h);
    }
    return out;
  }

  /** Serialised: JSON-safe, one base64 bitmap per disk with its chunk count. */
  toJSON(): Record<string, { chunks: number; bits: string }> {
    const out: Record<string, { chunks: number; bits: string }> = {};
    for (const [d, s] of this.disks)
      out[d] = { chunks: s.chunks, bits: Buffer.from(s.toBytes()).toString('base64') };
    return out;
  }

  static fromJSON(json: Record<string, { chunks: number; bits: string }>): DiskChunks {
    const out = new DiskChunks([], 1);
    for (const [d, v] of Object.entries(json)) {
      out.disks.set(d, new ChunkSet(v.chunks, new Uint8Array(Buffer.from(v.bits, 'base64'))));
    }
    return out;
  }
}
