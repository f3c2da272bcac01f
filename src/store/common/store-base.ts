/**
 * What every store kind does the same way (the Store contract, types.ts), over its images
 * (images.ts) and its metadata files: readers' consistent view during a rotation, recovery,
 * opening deltas (checks, server lock, roll-forward, base), digests, and the manifest
 * bookkeeping of recovery/. A store kind adds what depends on how images are stored: reading one
 * (openImage) and checking them (verify). fs/fs-store.ts is the filesystem store.
 */

import type { Logger } from '../../core/log.ts';
import { checkName, isSafeName } from '../../core/names.ts';
import { activeAtDrError, generationNotFound, serverNotFound, storeError } from '../errors.ts';
import type {
  DeltaMeta,
  DeltaWriter,
  Generation,
  GenerationDisk,
  ImageReader,
  JournalDeltaMeta,
  JournalInfo,
  JournalPoint,
  SegmentRecord,
  SegmentWriter,
  ServerHold,
  ServerManifest,
  Store,
  StoreDescriptor,
  StoreKind,
  TestRecord,
  VerifyOptions,
  VerifyReport,
} from '../types.ts';
import { checkBootPriority, findGenerationDisk, isChunkRange } from './checks.ts';
import { rollForward } from './commit/roll-forward.ts';
import type { StoreContext } from './context.ts';
import { validateDeltaMeta } from './delta-meta.ts';
import { imageReader } from './image-reader.ts';
import { dropActivationManifest, recordJournalActivation } from './journal/activation.ts';
import {
  journalInfo,
  journalPoints,
  listJournals,
  materialisePoint,
  openSegment,
} from './journal/journal.ts';
import { verifyJournals } from './journal/verify.ts';
import { listServerDirs, manifestExists, readManifest, withManifestLock, writeManifest } from './metadata.ts';
import { openStable, readerView, type ServerView } from './reader-view.ts';
import { type ManifestFile, manifestView } from './records.ts';
import { recoverStore } from './recover.ts';
import { registerDelta } from './register.ts';
import { hasResendMarks } from './resend.ts';
import { lockServer } from './server-lock.ts';
import { checkSourceDefinition, loadDefinitionChecks } from './source-definition.ts';
import { chunkCount, MAX_DIGEST_REQUEST_CHUNKS, openGenerationSums } from './sums.ts';
import { serverSpaceUsed } from './usage.ts';
import { verifyStore } from './verify.ts';
import { openDeltaWriter } from './writer/open.ts';

export abstract class StoreBase implements Store {
  abstract readonly kind: StoreKind;
  readonly descriptor: StoreDescriptor;

  protected constructor(
    protected readonly ctx: StoreContext,
    readonly location: string,
    /** How long a reader waits for a running rotation's short renaming steps. */
    private readonly busyWaitMs: number,
  ) {
    this.descriptor = ctx.descriptor;
  }

  /**
   * Reads one image of a generation as it is now: opened under a reader view that still names it
   * the same way once it is open (reader-view.ts openStable), so a rotation renaming images
   * meanwhile cannot hand over another generation's image.
   */
  async openImage(server: string, generationId: string, disk: string): Promise<ImageReader> {
    const { disk: d } = await this.findDisk(server, generationId, disk);
    const opened = await openStable(
      (s) => this.view(s),
      server,
      generationId,
      (seq) => this.ctx.images.openRead(server, disk, seq),
      async (image) => image?.close(),
    );
    if (!opened) throw generationNotFound(server, generationId);
    const image = opened.value;
    if (!image) {
      throw storeError(
        'STORE_IMAGE_MISSING',
        'integrity',
        `the image of disk ${disk} of ${server} is missing`,
        {
          hint: `Run \`haven verify --store PATH ${server}\` to see what is missing, and use another generation (\`haven images ${server} --store PATH\` lists them).`,
          details: { server, generationId, disk },
        },
      );
    }
    return imageReader(image, d.size);
  }

  /**
   * The generations of every server with a manifest, and (unless one generation is asked for)
   * every point of every journal. A server with a journal and no generation (only protected
   * continuously; its manifest, if any, only records an activation) has its journal checked only.
   */
  async verify(server?: string, options: VerifyOptions = {}): Promise<VerifyReport> {
    const named = server === undefined ? undefined : checkName('server', server);
    const journals = (await this.listJournals()).filter((s) => named === undefined || s === named);
    const journalOnly = new Set<string>();
    for (const s of journals) {
      if (((await this.manifest(s).catch(() => null))?.generations.length ?? 0) === 0) journalOnly.add(s);
    }
    const servers = (named === undefined ? await this.listServers() : [named]).filter(
      (s) => !journalOnly.has(s),
    );
    const report = await verifyStore(this.ctx, servers, (s) => this.view(s), options);
    if (options.generationId !== undefined) return report;
    report.checkedServers += journalOnly.size;
    await verifyJournals(this.ctx, journals, options, report);
    return report;
  }

  recover(only?: string): Promise<string[]> {
    return recoverStore(this.ctx, only);
  }

  async listServers(): Promise<string[]> {
    const out: string[] = [];
    for (const s of await listServerDirs(this.ctx)) {
      if (isSafeName(s) && (await manifestExists(this.ctx, s))) out.push(s);
    }
    return out;
  }

  async manifest(server: string): Promise<ServerManifest | null> {
    const v = await this.view(server);
    return v.manifest ? manifestView(v.manifest) : null;
  }

  async spaceUsed(server?: string): Promise<number> {
    // Every server directory, committed or not: a first run's partial takes space too.
    const servers =
      server === undefined
        ? (await listServerDirs(this.ctx)).filter(isSafeName)
        : [checkName('server', server)];
    let used = 0;
    for (const s of servers) used += await serverSpaceUsed(this.ctx, s);
    return used;
  }

  needsResync(server: string): Promise<boolean> {
    return hasResendMarks(this.ctx, checkName('server', server));
  }

  /** Loads the XML parser and the rules openDelta checks the source definition with. */
  expectDelta(_server: string): void {
    loadDefinitionChecks().catch(() => {});
  }

  async openDelta(meta: DeltaMeta, log?: Logger): Promise<DeltaWriter> {
    validateDeltaMeta(meta);
    await checkSourceDefinition(meta.server, meta.sourceDefinition);
    const ctx = this.ctx;
    const writerLog = (log ?? ctx.log).child({ server: meta.server });
    const lock = await lockServer(ctx, meta.server, `delta ${meta.pointInTime}`);
    try {
      await rollForward(ctx, meta.server, writerLog);
      const base = await this.checkBase(meta);
      return await openDeltaWriter({
        ctx,
        meta,
        base,
        lock,
        log: writerLog,
        host: {
          commit: async (server, commitLog) => {
            const generation = await rollForward(ctx, server, commitLog);
            if (!generation)
              throw storeError('STORE_DELTA_STATE', 'internal', `no sealed delta of ${server} to commit`, {
                hint: 'This is a bug in Haven; please report it with the log file of this run.',
              });
            return generation;
          },
        },
        register: (record) => registerDelta(ctx, record),
      });
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  openSegment(meta: JournalDeltaMeta, log?: Logger): Promise<SegmentWriter> {
    return openSegment(this.ctx, meta, (log ?? this.ctx.log).child({ server: meta.server }), (m, l) =>
      this.openDelta(m, l),
    );
  }

  journalInfo(server: string): Promise<JournalInfo | null> {
    return journalInfo(this.ctx, checkName('server', server));
  }

  listJournals(): Promise<string[]> {
    return listJournals(this.ctx);
  }

  journalPoints(server: string): Promise<JournalPoint[]> {
    return journalPoints(this.ctx, checkName('server', server));
  }

  materialisePoint(
    server: string,
    pointId: string,
    outputs: ReadonlyMap<string, string>,
    signal?: AbortSignal,
  ): Promise<SegmentRecord> {
    return materialisePoint(this.ctx, checkName('server', server), pointId, outputs, signal);
  }

  /** The newest generation, which `meta` must apply to; refused while the server runs at the DR site. */
  private async checkBase(meta: DeltaMeta): Promise<Generation | null> {
    const manifest = await readManifest(this.ctx, meta.server);
    if (manifest?.activeAtDr) throw activeAtDrError(meta.server, manifest.activeAtDr);
    const newest = manifest?.generations[0] ?? null;
    if ((newest?.id ?? null) === meta.baseGenerationId) return newest;
    throw storeError(
      'STORE_BASE_MISMATCH',
      'conflict',
      `${meta.server}: the delta applies to ${meta.baseGenerationId ?? 'nothing (first run)'}, but the newest generation is ${newest?.id ?? 'none'}`,
      {
        hint: "The sender's idea of the target is out of date; it must start again from the newest generation (checksum resync).",
        details: {
          server: meta.server,
          baseGenerationId: meta.baseGenerationId,
          newest: newest ? { id: newest.id, pointInTime: newest.pointInTime, seq: newest.seq } : null,
        },
      },
    );
  }

  async imagePath(server: string, generationId: string, disk: string): Promise<string> {
    const { view, generation } = await this.findDisk(server, generationId, disk);
    return this.ctx.images.path(server, disk, view.fileSeq(generation));
  }

  async readDigests(
    server: string,
    generationId: string,
    disk: string,
    fromChunk: number,
    count: number,
  ): Promise<Buffer> {
    const found = await this.findDisk(server, generationId, disk);
    const chunks = chunkCount(found.disk.size);
    if (!isChunkRange(fromChunk, count, chunks)) {
      throw storeError(
        'STORE_BAD_RANGE',
        'usage',
        `chunks ${fromChunk}+${count} are outside disk ${disk} (${chunks} chunks) or too many at once`,
        { hint: `Ask for chunks inside the disk, at most ${MAX_DIGEST_REQUEST_CHUNKS} at a time.` },
      );
    }
    const sums = await openGenerationSums(this.ctx, server, generationId, disk);
    if (!sums) {
      throw storeError(
        'STORE_DIGESTS_MISSING',
        'integrity',
        `the digests of ${disk} of ${server} are missing`,
        {
          hint: 'Run `haven verify`.',
          details: { server, generationId, disk },
        },
      );
    }
    try {
      if (await sums.checkLength(found.disk.size)) {
        throw storeError('STORE_DIGESTS_SIZE', 'integrity', `${sums.path} is shorter than its disk needs`, {
          hint: 'Run `haven verify`.',
        });
      }
      return await sums.read(fromChunk, count, found.disk.size);
    } finally {
      await sums.close();
    }
  }

  definitionPath(server: string): string {
    return this.ctx.layout.definition(server);
  }

  async holdServer(server: string, purpose: string, options: { waitMs?: number } = {}): Promise<ServerHold> {
    checkName('server', server);
    // Checked first: taking the lock would create the server's directory.
    if (!(await manifestExists(this.ctx, server))) throw serverNotFound(server);
    const lock = await lockServer(this.ctx, server, purpose, options.waitMs ?? 0);
    try {
      // A server running at the DR site boots from its generations: nothing may rotate them.
      const manifest = await readManifest(this.ctx, server);
      if (!manifest?.activeAtDr) await rollForward(this.ctx, server, this.ctx.log);
    } catch (e) {
      await lock.release();
      throw e;
    }
    let released: Promise<void> | undefined;
    return {
      server,
      release: () => {
        released ??= lock.release();
        return released;
      },
    };
  }

  async recordTest(server: string, generationId: string, record: TestRecord): Promise<void> {
    await this.updateManifest(server, (m) => {
      const g = m.generations.find((x) => x.id === generationId);
      if (!g) throw generationNotFound(server, generationId);
      g.tests.push(structuredClone(record));
    });
  }

  async setBootPriority(server: string, priority: number): Promise<void> {
    checkBootPriority(priority);
    await this.updateManifest(server, (m) => {
      m.bootPriority = priority;
    });
  }

  async setActiveAtDr(server: string, active: ServerManifest['activeAtDr'] | null): Promise<void> {
    // A server kept only as a journal gets a manifest for the record (journal/activation.ts).
    if (active && (await recordJournalActivation(this.ctx, checkName('server', server), active))) return;
    await this.updateManifest(server, (m) => {
      if (active) m.activeAtDr = structuredClone(active);
      else delete m.activeAtDr;
    });
    if (!active) await dropActivationManifest(this.ctx, server);
  }

  async close(): Promise<void> {}

  /** The server as readers see it now (reader-view.ts). */
  protected view(server: string): Promise<ServerView> {
    return readerView(this.ctx, server, this.busyWaitMs);
  }

  /** A generation's disk of the server as readers see it now; not-found errors name what is missing. */
  protected async findDisk(
    server: string,
    generationId: string,
    disk: string,
  ): Promise<{ view: ServerView; generation: Generation; disk: GenerationDisk }> {
    const view = await this.view(server);
    if (!view.manifest) throw serverNotFound(server);
    return { view, ...findGenerationDisk(view.manifest, generationId, disk) };
  }

  private async updateManifest(server: string, change: (m: ManifestFile) => void): Promise<void> {
    if (!(await manifestExists(this.ctx, server))) throw serverNotFound(server);
    await withManifestLock(this.ctx, server, async () => {
      const manifest = await readManifest(this.ctx, server);
      if (!manifest) throw serverNotFound(server);
      change(manifest);
      await writeManifest(this.ctx, manifest);
    });
  }
}
