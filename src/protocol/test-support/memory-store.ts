/**
 * Test support only: a small in-memory Store, so the protocol's state machines can be exercised
 * in milliseconds. It keeps whole images in memory and meets the same contract as the real stores
 * (test/conformance/memory-store.test.ts runs the conformance suite against it): names and
 * refusals, rotation, resume from checkpoints, expected digests, seal before commit, one writer per
 * server, verify, definitions and the manifest bookkeeping. What it cannot do is be opened by a
 * second process, so the suite's crash injection does not apply to it. A checkpoint is what it
 * keeps: `close()` without seal drops what arrived since.
 *
 * Definitions (docs/design.md §4.5) are kept only when `definitionsDir` is given: then source definitions
 * are checked as a real store checks them and the DR definition is written there as a file, as
 * recovery/ reads it. Without it (the protocol's unit tests, which send stub domain XML no real
 * store would take) a source definition only has to parse, and none is written.
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
import { checkSourceDefinition } from '../../store/common/source-definition.ts';
import { chunkCount } from '../../store/common/sums.ts';
import { activeAtDrError, generationNotFound, serverNotFound, storeError } from '../../store/errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaWriter,
  type Generation,
  type ImageReader,
  type ServerManifest,
  type Store,
  type StoreDescriptor,
  type TestRecord,
  type VerifyOptions,
  type VerifyReport,
} from '../../store/types.ts';
import { MemoryWriter, type ServerState } from './memory-writer.ts';

export interface MemoryStoreOptions {
  digest?: DigestAlgorithm;
  /** Makes every writeData wait this long before it reads the data (like a slow disk). */
  writeDelayMs?: number;
  /** Where definitions are written (files, as recovery/ reads them); default: none are kept. */
  definitionsDir?: string;
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
    if (this.definitionsDir) await checkSourceDefinition(meta.server, meta.sourceDefinition);
    else DomainXml.parse(meta.sourceDefinition);
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
      if (this.definitionsDir && !this.definitions.has(name)) {
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

  /** docs/design.md §4.5: written at the first commit, never overwritten. */
  async ensureDefinition(meta: DeltaMeta): Promise<void> {
    const dir = this.definitionsDir;
    if (!dir || this.definitions.has(meta.server)) return;
    const xml = buildDrDefinition(
      meta.sourceDefinition,
      meta.disks.map((d) => d.name),
      (disk) => `memory:/${imageName(meta.server, disk, 1)}`,
      silentLogger,
      { server: meta.server, storeRoot: dir },
    );
    await writeFile(this.definitionPath(meta.server), xml, { flag: 'wx' });
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
