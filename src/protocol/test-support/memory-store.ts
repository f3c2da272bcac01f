/**
 * Test support only: a small in-memory Store, so the protocol's state machines can be exercised
 * in milliseconds. It keeps whole images in memory and meets the same contract as the real stores
 * (test/conformance/memory-store.test.ts runs the conformance suite against it): names and
 * refusals, rotation, resume from checkpoints, expected digests, seal before commit, one writer per
 * server, verify, definitions and the manifest bookkeeping. What it cannot do is be opened by a
 * second process, so the suite's crash injection does not apply to it. A checkpoint is what it
 * keeps: `close()` without seal drops what arrived since.
 *
 * Definitions are written into `definitionsDir` when one is given (the contract reads them as
 * files), else kept in memory.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkDigests, type DigestAlgorithm } from '../../core/digest.ts';
import { DomainXml } from '../../core/domain-xml.ts';
import { InterruptedError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import {
  checkBootPriority,
  emptyVerifyReport,
  findGenerationDisk,
  isChunkRange,
  isWithin,
} from '../../store/common/checks.ts';
import { buildDrDefinition } from '../../store/common/definition.ts';
import { validateDeltaMeta } from '../../store/common/delta-meta.ts';
import { sameDisks } from '../../store/common/deltas.ts';
import { findNameCollision, imageName } from '../../store/common/names.ts';
import { chunkCount } from '../../store/common/sums.ts';
import { checkChunkDigests, checkChunkRange, checkExtent } from '../../store/common/writer/disk.ts';
import {
  activeAtDrError,
  badRequest,
  generationNotFound,
  serverNotFound,
  storeError,
} from '../../store/errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaSummary,
  type DeltaWriter,
  type DiskSpec,
  type Generation,
  type ImageReader,
  type ResumeState,
  type ServerManifest,
  type Store,
  type StoreDescriptor,
  type TestRecord,
  type VerifyOptions,
  type VerifyReport,
} from '../../store/types.ts';

type Counts = Record<string, { dataBytes: number; zeroBytes: number }>;

interface Partial {
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

interface ServerState {
  manifest: ServerManifest;
  /** generation id → disk → image. */
  images: Map<string, Map<string, Buffer>>;
  /** generation id → disk → chunk digests, as committed (verify compares images with them). */
  digests: Map<string, Map<string, Buffer>>;
  partial: Partial | null;
  locked: boolean;
}

export interface MemoryStoreOptions {
  digest?: DigestAlgorithm;
  /** Makes every writeData wait this long before it reads the data (like a slow disk). */
  writeDelayMs?: number;
  /** Where definitions are written (files, as recovery/ reads them); default: kept in memory. */
  definitionsDir?: string;
}

function zeroCounts(disks: DiskSpec[]): Counts {
  return Object.fromEntries(disks.map((d) => [d.name, { dataBytes: 0, zeroBytes: 0 }]));
}

export class MemoryStore implements Store {
  readonly kind = 'fs' as const;
  readonly location = 'memory';
  readonly descriptor: StoreDescriptor;
  readonly servers = new Map<string, ServerState>();
  /** Calls made to writers, for assertions. */
  readonly calls: string[] = [];
  readonly writeDelayMs: number;
  private readonly definitionsDir: string | undefined;
  private readonly definitions = new Map<string, string>();

  constructor(o: MemoryStoreOptions = {}) {
    this.writeDelayMs = o.writeDelayMs ?? 0;
    this.definitionsDir = o.definitionsDir;
    this.descriptor = {
      format: 'haven-store',
      version: 1,
      kind: 'fs',
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      chunkSize: CHUNK_SIZE,
      digest: o.digest ?? 'blake3',
    };
  }

  async recover(): Promise<string[]> {
    return [];
  }

  async listServers(): Promise<string[]> {
    return [...this.servers].filter(([, s]) => s.manifest.generations.length > 0).map(([name]) => name);
  }

  async manifest(server: string): Promise<ServerManifest | null> {
    checkName('server', server);
    const s = this.servers.get(server);
    return s && s.manifest.generations.length > 0 ? structuredClone(s.manifest) : null;
  }

  /** The image of a generation (newest when id is omitted). */
  image(server: string, disk: string, generationId?: string): Buffer {
    const s = this.committed(server);
    const id = generationId ?? s.manifest.generations[0]?.id ?? '';
    const img = s.images.get(id)?.get(disk);
    if (!img) throw generationNotFound(server, id);
    return img;
  }

  /** Names of every image held (`<server>_<disk>_<seq>`), like the files of a filesystem store. */
  imageNames(): string[] {
    return [...this.servers.values()].flatMap((s) =>
      s.manifest.generations.flatMap((g) => g.disks.map((d) => d.image)),
    );
  }

  /** Flips one bit of a stored image byte behind the store's back (for verify tests). */
  damage(server: string, generationId: string, disk: string, offset: number): void {
    const img = this.image(server, disk, generationId);
    img[offset] = (img[offset] ?? 0) ^ 0x40;
  }

  async openDelta(meta: DeltaMeta): Promise<DeltaWriter> {
    validateDeltaMeta(meta);
    DomainXml.parse(meta.sourceDefinition);
    const s = this.serverState(meta);
    if (s.locked) {
      throw storeError('STORE_LOCKED', 'conflict', `server ${meta.server} is being written`, {
        hint: 'Another writer holds this server; wait for it to finish.',
      });
    }
    if (s.manifest.activeAtDr) throw activeAtDrError(meta.server, s.manifest.activeAtDr);
    const newest = s.manifest.generations[0]?.id ?? null;
    if (meta.baseGenerationId !== newest) {
      throw storeError(
        'STORE_BASE_MISMATCH',
        'conflict',
        `base ${meta.baseGenerationId} is not the newest (${newest})`,
        {
          hint: 'The sender must start again from the newest generation.',
        },
      );
    }
    const p = s.partial;
    if (p && (p.baseGenerationId !== meta.baseGenerationId || !sameDisks(p.disks, meta.disks)))
      s.partial = null;
    if (!s.partial) this.checkCollisions(meta);
    s.locked = true;
    this.calls.push(`open ${meta.server}`);
    return new MemoryWriter(this, s, meta);
  }

  private serverState(meta: DeltaMeta): ServerState {
    const known = this.servers.get(meta.server);
    if (known) return known;
    const s: ServerState = {
      manifest: {
        server: meta.server,
        copies: meta.copies,
        generations: [],
        sourceDefinition: meta.sourceDefinition,
        bootPriority: 100,
      },
      images: new Map(),
      digests: new Map(),
      partial: null,
      locked: false,
    };
    this.servers.set(meta.server, s);
    return s;
  }

  /** STORE_NAME_COLLISION against every other server's generations and partial deltas. */
  private checkCollisions(meta: DeltaMeta): void {
    const others = [...this.servers].map(([server, s]) => ({
      server,
      disks: [
        ...s.manifest.generations.flatMap((g) => g.disks.map((d) => d.name)),
        ...(s.partial?.disks.map((d) => d.name) ?? []),
      ],
    }));
    const clash = findNameCollision({ server: meta.server, disks: meta.disks.map((d) => d.name) }, others);
    if (clash) {
      throw storeError(
        'STORE_NAME_COLLISION',
        'conflict',
        `images of ${meta.server} would be named like ${clash.prefix}`,
        {
          hint: 'Rename one of the servers or disks.',
          details: clash,
        },
      );
    }
  }

  private committed(server: string): ServerState {
    checkName('server', server);
    const s = this.servers.get(server);
    if (!s || s.manifest.generations.length === 0) throw serverNotFound(server);
    return s;
  }

  private find(server: string, generationId: string, disk: string) {
    const s = this.committed(server);
    const found = findGenerationDisk(s.manifest, generationId, disk);
    return { s, generation: found.generation, spec: found.disk };
  }

  async imagePath(server: string, generationId: string, disk: string): Promise<string> {
    const { generation } = this.find(server, generationId, disk);
    return `memory:/${imageName(server, disk, generation.seq)}`;
  }

  async openImage(server: string, generationId: string, disk: string): Promise<ImageReader> {
    this.find(server, generationId, disk);
    const img = this.image(server, disk, generationId);
    return {
      size: img.length,
      async read(offset: number, length: number): Promise<Buffer> {
        if (!isWithin(offset, length, img.length)) {
          throw storeError('STORE_BAD_RANGE', 'usage', `read ${offset}+${length} is outside the image`, {
            hint: 'Read inside the image.',
          });
        }
        return Buffer.from(img.subarray(offset, offset + length));
      },
      async close() {},
    };
  }

  async readDigests(server: string, generationId: string, disk: string, from: number, count: number) {
    const { s, spec } = this.find(server, generationId, disk);
    if (!isChunkRange(from, count, chunkCount(spec.size))) {
      throw storeError('STORE_BAD_RANGE', 'usage', `chunks ${from}+${count} are outside disk ${disk}`, {
        hint: 'Ask for chunks inside the disk.',
      });
    }
    const digests = s.digests.get(generationId)?.get(disk) ?? Buffer.alloc(0);
    return Buffer.from(digests.subarray(from * 32, (from + count) * 32));
  }

  async verify(server?: string, options: VerifyOptions = {}): Promise<VerifyReport> {
    const report = emptyVerifyReport();
    const servers = server === undefined ? await this.listServers() : [server];
    const wanted = (g: Generation) => !options.generationId || g.id === options.generationId;
    const checks = servers.flatMap((name) => {
      const s = this.servers.get(name);
      return (s?.manifest.generations ?? []).filter(wanted).map((g) => ({ name, s, g }));
    });
    const total =
      options.readImages === false
        ? 0
        : checks.reduce((n, c) => n + c.g.disks.reduce((m, d) => m + d.size, 0), 0);
    options.onProgress?.(0, total);
    for (const name of servers) {
      if (!this.servers.get(name)?.manifest.generations.length) {
        report.problems.push({
          server: name,
          code: 'STORE_SERVER_NOT_FOUND',
          message: `${name} has no committed generation`,
        });
        continue;
      }
      report.checkedServers++;
      if (!this.hasDefinition(name)) {
        report.problems.push({
          server: name,
          code: 'STORE_DEFINITION_MISSING',
          message: `no definition of ${name}`,
        });
      }
    }
    for (const { name, s, g } of checks) {
      report.checkedGenerations++;
      if (options.readImages === false) continue;
      for (const d of g.disks) {
        if (options.signal?.aborted) throw new InterruptedError('verify cancelled');
        const bad = this.badChunks(s, g.id, d.name);
        if (bad.length) {
          report.problems.push({
            server: name,
            generationId: g.id,
            seq: g.seq,
            disk: d.name,
            code: 'STORE_DIGEST_MISMATCH',
            message: `${d.image}: ${bad.length} chunk(s) differ from their digests`,
            badChunks: bad.slice(0, 100),
          });
        }
        report.checkedBytes += d.size;
        options.onProgress?.(report.checkedBytes, total);
      }
    }
    report.ok = report.problems.length === 0;
    return report;
  }

  private badChunks(s: ServerState | undefined, generationId: string, disk: string): number[] {
    const img = s?.images.get(generationId)?.get(disk) ?? Buffer.alloc(0);
    const want = s?.digests.get(generationId)?.get(disk) ?? Buffer.alloc(0);
    const got = chunkDigests(this.descriptor.digest, img, CHUNK_SIZE);
    const bad: number[] = [];
    for (let c = 0; c * 32 < got.length; c++) {
      if (!got.subarray(c * 32, c * 32 + 32).equals(want.subarray(c * 32, c * 32 + 32))) bad.push(c);
    }
    return bad;
  }

  definitionPath(server: string): string {
    checkName('server', server);
    return this.definitionsDir ? join(this.definitionsDir, `${server}.xml`) : `memory:${server}.xml`;
  }

  private hasDefinition(server: string): boolean {
    return this.definitions.has(server);
  }

  /** DESIGN §4.5: written at the first commit, never overwritten. */
  async ensureDefinition(meta: DeltaMeta): Promise<void> {
    if (this.definitions.has(meta.server)) return;
    const xml = buildDrDefinition(
      meta.sourceDefinition,
      meta.disks.map((d) => d.name),
      (disk) => `memory:/${imageName(meta.server, disk, 1)}`,
      silentLogger,
    );
    if (this.definitionsDir) await writeFile(this.definitionPath(meta.server), xml, { flag: 'wx' });
    this.definitions.set(meta.server, xml);
  }

  async recordTest(server: string, generationId: string, record: TestRecord): Promise<void> {
    const g = this.committed(server).manifest.generations.find((x) => x.id === generationId);
    if (!g) throw generationNotFound(server, generationId);
    g.tests.push(structuredClone(record));
  }

  async setBootPriority(server: string, priority: number): Promise<void> {
    checkBootPriority(priority);
    this.committed(server).manifest.bootPriority = priority;
  }

  async setActiveAtDr(server: string, active: ServerManifest['activeAtDr'] | null): Promise<void> {
    const m = this.committed(server).manifest;
    if (active) m.activeAtDr = structuredClone(active);
    else delete m.activeAtDr;
  }

  async close(): Promise<void> {}
}

type WriterState = 'open' | 'sealed' | 'done';

class MemoryWriter implements DeltaWriter {
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
