/**
 * Test support only: a small in-memory Store for the protocol's unit tests, so the state machines
 * can be exercised in milliseconds. It follows the DeltaWriter contract (resume from checkpoints,
 * expected digests, seal before commit, one writer per server) but keeps whole images in memory
 * and has no rotation subtleties. Integration tests use the real filesystem store.
 */
import { randomUUID } from 'node:crypto';
import { chunkDigests, type DigestAlgorithm } from '../../core/digest.ts';
import { HavenError } from '../../core/errors.ts';
import { checkName } from '../../core/names.ts';
import type {
  DeltaMeta,
  DeltaSummary,
  DeltaWriter,
  Generation,
  ResumeState,
  ServerManifest,
  Store,
  StoreDescriptor,
} from '../../store/types.ts';

interface Partial {
  deltaId: string;
  pointInTime: string;
  /** Per disk: chunk index → content (checkpointed). */
  chunks: Map<string, Map<number, Buffer>>;
  watermarks: Record<string, number>;
  stagedBytes: number;
}

interface ServerState {
  manifest: ServerManifest;
  /** generation id → disk → image. */
  images: Map<string, Map<string, Buffer>>;
  partial: Partial | null;
  locked: boolean;
}

export interface MemoryStoreOptions {
  digest?: DigestAlgorithm;
  chunkSize?: number;
  /** Makes every writeData wait this long before it reads the data (like a slow disk). */
  writeDelayMs?: number;
}

export class MemoryStore implements Store {
  readonly kind = 'fs' as const;
  readonly location = 'memory';
  readonly descriptor: StoreDescriptor;
  readonly servers = new Map<string, ServerState>();
  /** Calls made to writers, for assertions. */
  readonly calls: string[] = [];

  readonly writeDelayMs: number;

  constructor(o: MemoryStoreOptions = {}) {
    this.writeDelayMs = o.writeDelayMs ?? 0;
    this.descriptor = {
      format: 'haven-store',
      version: 1,
      kind: 'fs',
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      chunkSize: o.chunkSize ?? 64 * 1024,
      digest: o.digest ?? 'blake3',
    };
  }

  async recover(): Promise<string[]> {
    return [];
  }

  async listServers(): Promise<string[]> {
    return [...this.servers.keys()].filter((s) => this.servers.get(s)!.manifest.generations.length > 0);
  }

  async manifest(server: string): Promise<ServerManifest | null> {
    const s = this.servers.get(server);
    return s && s.manifest.generations.length > 0 ? structuredClone(s.manifest) : null;
  }

  /** The image of a generation (newest when id is omitted). */
  image(server: string, disk: string, generationId?: string): Buffer {
    const s = this.servers.get(server)!;
    const id = generationId ?? s.manifest.generations[0]!.id;
    return s.images.get(id)!.get(disk)!;
  }

  async openDelta(meta: DeltaMeta): Promise<DeltaWriter> {
    checkName('server', meta.server);
    for (const d of meta.disks) checkName('disk', d.name);
    let s = this.servers.get(meta.server);
    if (!s) {
      s = {
        manifest: {
          server: meta.server,
          copies: meta.copies,
          generations: [],
          sourceDefinition: meta.sourceDefinition,
          bootPriority: 100,
        },
        images: new Map(),
        partial: null,
        locked: false,
      };
      this.servers.set(meta.server, s);
    }
    if (s.locked) {
      throw new HavenError('STORE_LOCKED', `server ${meta.server} is being written`, { kind: 'conflict' });
    }
    const newest = s.manifest.generations[0]?.id ?? null;
    if (meta.baseGenerationId !== newest) {
      throw new HavenError(
        'STORE_BASE_MISMATCH',
        `base ${meta.baseGenerationId} is not the newest (${newest})`,
        {
          kind: 'conflict',
        },
      );
    }
    s.locked = true;
    this.calls.push(`open ${meta.server}`);
    return new MemoryWriter(this, s, meta);
  }

  async imagePath(): Promise<string> {
    throw new Error('not supported by the memory store');
  }
  async openImage(): Promise<never> {
    throw new Error('not supported by the memory store');
  }
  async readDigests(server: string, generationId: string, disk: string, from: number, count: number) {
    const img = this.image(server, disk, generationId);
    const C = this.descriptor.chunkSize;
    return chunkDigests(this.descriptor.digest, img.subarray(from * C, (from + count) * C), C);
  }
  async verify(): Promise<never> {
    throw new Error('not supported by the memory store');
  }
  definitionPath(server: string): string {
    return `memory:${server}.xml`;
  }
  async recordTest(): Promise<void> {}
  async setBootPriority(): Promise<void> {}
  async setActiveAtDr(): Promise<void> {}
  async close(): Promise<void> {}
}

class MemoryWriter implements DeltaWriter {
  readonly deltaId: string;
  readonly resumed: ResumeState | null;
  private readonly partial: Partial;
  /** Written since the last checkpoint. */
  private pending = new Map<string, Map<number, Buffer>>();
  private pendingBytes = 0;
  private sealed = false;
  private done = false;

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
      };
      p.pointInTime = meta.pointInTime;
      this.partial = p;
    } else {
      this.resumed = null;
      this.partial = {
        deltaId: randomUUID(),
        pointInTime: meta.pointInTime,
        chunks: new Map(meta.disks.map((d) => [d.name, new Map()])),
        watermarks: Object.fromEntries(meta.disks.map((d) => [d.name, 0])),
        stagedBytes: 0,
      };
      s.partial = this.partial;
    }
    this.deltaId = this.partial.deltaId;
    for (const d of meta.disks) this.pending.set(d.name, new Map());
  }

  private size(disk: string): number {
    return this.meta.disks.find((d) => d.name === disk)!.size;
  }

  private chunkAt(disk: string, index: number): Buffer {
    const C = this.store.descriptor.chunkSize;
    const len = Math.min(C, this.size(disk) - index * C);
    const staged = this.pending.get(disk)!.get(index) ?? this.partial.chunks.get(disk)!.get(index);
    if (staged) return staged;
    const base = this.meta.baseGenerationId
      ? this.s.images.get(this.meta.baseGenerationId)?.get(disk)
      : undefined;
    const out = Buffer.alloc(len);
    if (base) base.copy(out, 0, index * C, Math.min(base.length, index * C + len));
    return out;
  }

  async expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    const out: Buffer[] = [];
    for (let i = fromChunk; i < fromChunk + count; i++) {
      out.push(
        chunkDigests(this.store.descriptor.digest, this.chunkAt(disk, i), this.store.descriptor.chunkSize),
      );
    }
    return Buffer.concat(out);
  }

  async writeData(disk: string, offset: number, data: Buffer, digests: Buffer): Promise<void> {
    const C = this.store.descriptor.chunkSize;
    const n = Math.ceil(data.length / C);
    if (digests.length !== n * 32) throw new Error('digest count mismatch');
    if (this.store.writeDelayMs) await new Promise((r) => setTimeout(r, this.store.writeDelayMs));
    for (let i = 0; i < n; i++) {
      this.pending
        .get(disk)!
        .set(offset / C + i, Buffer.from(data.subarray(i * C, Math.min((i + 1) * C, data.length))));
    }
    this.pendingBytes += data.length;
  }

  async writeZero(disk: string, offset: number, length: number): Promise<void> {
    const C = this.store.descriptor.chunkSize;
    const end = offset + length;
    for (let o = offset; o < end; o += C) {
      this.pending.get(disk)!.set(o / C, Buffer.alloc(Math.min(C, end - o)));
    }
    this.pendingBytes += length;
  }

  async checkpoint(watermarks: Record<string, number>): Promise<void> {
    this.store.calls.push(`checkpoint ${JSON.stringify(watermarks)}`);
    this.flush();
    this.partial.watermarks = { ...watermarks };
  }

  private flush(): void {
    for (const [disk, m] of this.pending) {
      const dst = this.partial.chunks.get(disk)!;
      for (const [i, b] of m) dst.set(i, b);
      m.clear();
    }
    this.partial.stagedBytes += this.pendingBytes;
    this.pendingBytes = 0;
  }

  async seal(summary: DeltaSummary): Promise<void> {
    const names = this.meta.disks.map((d) => d.name).sort();
    if (JSON.stringify(Object.keys(summary.disks).sort()) !== JSON.stringify(names)) {
      throw new HavenError('STORE_SUMMARY_MISMATCH', 'summary lists other disks', { kind: 'integrity' });
    }
    this.flush();
    this.sealed = true;
    this.store.calls.push('seal');
  }

  async commit(): Promise<Generation> {
    if (!this.sealed) throw new HavenError('STORE_NOT_SEALED', 'commit before seal', { kind: 'internal' });
    const C = this.store.descriptor.chunkSize;
    const id = randomUUID();
    const images = new Map<string, Buffer>();
    for (const d of this.meta.disks) {
      const img = Buffer.alloc(d.size);
      for (let i = 0; i * C < d.size; i++) this.chunkAt(d.name, i).copy(img, i * C);
      images.set(d.name, img);
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
      disks: this.meta.disks.map((d) => ({ ...d, image: `${this.meta.server}_${d.name}_1` })),
      deltaBytes: this.partial.stagedBytes,
      tests: [],
    };
    m.copies = this.meta.copies;
    m.sourceDefinition = this.meta.sourceDefinition;
    m.generations = [gen, ...m.generations].slice(0, m.copies).map((g, i) => ({ ...g, seq: i + 1 }));
    this.s.images.set(id, images);
    for (const k of [...this.s.images.keys()]) {
      if (!m.generations.some((g) => g.id === k)) this.s.images.delete(k);
    }
    this.s.partial = null;
    this.release();
    this.store.calls.push('commit');
    return m.generations[0]!;
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.store.calls.push('close');
    this.pending.clear();
    this.release();
  }

  async discard(): Promise<void> {
    this.store.calls.push('discard');
    this.s.partial = null;
    this.release();
  }

  private release(): void {
    this.done = true;
    this.s.locked = false;
  }
}
