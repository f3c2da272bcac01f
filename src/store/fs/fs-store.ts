/**
 * The filesystem store: raw image files named exactly as DESIGN §4.1, with Haven's metadata
 * beside them (docs/store-format.md). This module ties the parts together: opening and creating
 * a store, the server lock around writers, the consistent view readers get while a rotation may
 * be running, recovery, and the manifest bookkeeping of recovery/.
 */
import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DefinitionRules } from '../../core/definition-context.ts';
import { DIGEST_ALGORITHMS, type DigestAlgorithm } from '../../core/digest.ts';
import { asHavenError, HavenError } from '../../core/errors.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { checkName, isSafeName } from '../../core/names.ts';
import { activeAtDrError, generationNotFound, serverNotFound, storeError } from '../errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaWriter,
  DIGEST_BYTES,
  type Generation,
  type ImageReader,
  type ServerHold,
  type ServerManifest,
  STORE_FORMAT_VERSION,
  type Store,
  type StoreDescriptor,
  type TestRecord,
  type VerifyOptions,
  type VerifyReport,
} from '../types.ts';
import { prune, rollForward, withManifestLock } from './commit.ts';
import { FsDeltaWriter, MAX_DIGEST_REQUEST_CHUNKS } from './delta-writer.ts';
import {
  createFileOnce,
  ensureDir,
  exists,
  fsyncDir,
  io,
  listDir,
  readAllAt,
  readJson,
  removeIfExists,
  removeTree,
  TMP_PATTERN,
} from './files.ts';
import { FsLayout, findNameCollision, isId } from './layout.ts';
import { acquireLock, type HeldLock, liveHolder } from './lock.ts';
import {
  type DeltaRecord,
  type Journal,
  type ManifestFile,
  manifestView,
  parseDescriptor,
  toJson,
} from './records.ts';
import {
  type FsContext,
  listDeltaRecords,
  listServerDirs,
  readJournal,
  readManifest,
  writeDeltaRecord,
  writeManifest,
} from './state.ts';
import { chunkCount, readSums } from './sums.ts';
import { type ServerView, verifyServer } from './verify.ts';

export interface FsStoreOptions {
  /** Initialise the directory as a store if it holds none yet. */
  create?: boolean;
  /** Digest algorithm of a new store (default blake3); must match an existing store's. */
  digest?: DigestAlgorithm;
  /** Where staged deltas go (a target cache drive); default the store's own `.haven` area. */
  stagingDir?: string;
  log?: Logger;
  /**
   * Write images and staged data past the page cache (O_DIRECT) where the filesystem allows it;
   * default true. Off, every write goes through the page cache (direct-io.ts says why not).
   */
  directIo?: boolean;
  /**
   * Rotate by cloning the newest generation where the filesystem has reflinks (XFS, btrfs);
   * default true. Off, generations share no blocks and each rotation replays deltas.
   */
  reflinks?: boolean;
  /** How long a reader waits for a running rotation's short renaming steps (default 30 s). */
  busyWaitMs?: number;
  /**
   * The DR host's settings for definitions (config `definitions`), asked for only when a new
   * server's definition is written; without it the rule applies with no allowances.
   */
  definitionRules?: () => Promise<DefinitionRules>;
}

const MAX_COPIES = 100;
/** Largest single ImageReader.read (memory is the caller's, but bounded here). */
const MAX_READ_BYTES = 64 * 1024 * 1024;

export async function openFsStore(dir: string, options: FsStoreOptions = {}): Promise<FsStore> {
  const layout = new FsLayout(dir);
  const log = options.log ?? silentLogger;
  let descriptor = await readJson(layout.descriptor, parseDescriptor(layout.descriptor));
  if (!descriptor) {
    if (!options.create) {
      throw storeError('STORE_NOT_FOUND', 'not-found', `${layout.root} is not a Haven store`, {
        hint: 'Check the path, or create the store (haven receive --store creates it).',
        details: { path: layout.root },
      });
    }
    const digest = options.digest ?? 'blake3';
    if (!DIGEST_ALGORITHMS.includes(digest))
      throw storeError('STORE_BAD_DIGEST', 'usage', `unknown digest ${digest}`, {
        hint: `Use one of ${DIGEST_ALGORITHMS.join(', ')}.`,
      });
    const fresh: StoreDescriptor & { format: 'haven-store' } = {
      format: 'haven-store',
      version: STORE_FORMAT_VERSION,
      kind: 'fs',
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      chunkSize: CHUNK_SIZE,
      digest,
    };
    await ensureDir(layout.root);
    if (await createFileOnce(layout.descriptor, toJson(fresh)))
      log.info('store created', { path: layout.root, id: fresh.id });
    descriptor = await readJson(layout.descriptor, parseDescriptor(layout.descriptor));
  }
  if (!descriptor) {
    throw storeError('STORE_NOT_FOUND', 'not-found', `${layout.root} is not a Haven store`, {
      hint: 'Another process removed the descriptor while the store was being created; try again.',
    });
  }
  if (
    descriptor.kind !== 'fs' ||
    descriptor.version > STORE_FORMAT_VERSION ||
    descriptor.chunkSize !== CHUNK_SIZE
  ) {
    throw storeError(
      'STORE_FORMAT_UNSUPPORTED',
      'integrity',
      `${layout.root} is a ${descriptor.kind} store of format ${descriptor.version} with ${descriptor.chunkSize}-byte chunks; this Haven reads fs stores up to format ${STORE_FORMAT_VERSION} with ${CHUNK_SIZE}-byte chunks`,
      { hint: 'Use the Haven version that created this store, or a newer one.' },
    );
  }
  if (options.digest && options.digest !== descriptor.digest) {
    throw storeError(
      'STORE_DIGEST_CONFLICT',
      'usage',
      `${layout.root} uses ${descriptor.digest} digests, not ${options.digest}`,
      {
        hint: 'Leave the digest option out for an existing store; its algorithm is fixed when it is created.',
      },
    );
  }
  for (const d of [layout.havenDir, layout.serversDir, layout.locksDir, layout.definitionsDir])
    await ensureDir(d);
  const stagingDir = options.stagingDir ? resolve(options.stagingDir) : undefined;
  if (stagingDir) await ensureDir(stagingDir);
  return new FsStore(
    {
      layout,
      descriptor,
      log,
      stagingDir,
      directIo: options.directIo ?? true,
      reflinks: options.reflinks ?? true,
      ...(options.definitionRules ? { definitionRules: options.definitionRules } : {}),
    },
    options.busyWaitMs ?? 30_000,
  );
}

export function createFsStore(dir: string, options: Omit<FsStoreOptions, 'create'> = {}): Promise<FsStore> {
  return openFsStore(dir, { ...options, create: true });
}

function validateMeta(meta: DeltaMeta): void {
  checkName('server', meta.server);
  checkName('job', meta.job);
  const bad = (what: string, details?: Record<string, unknown>) =>
    storeError('STORE_BAD_META', 'usage', `invalid delta description: ${what}`, {
      hint: 'The sender described the server inconsistently; check its configuration.',
      details,
    });
  if (!Array.isArray(meta.disks) || meta.disks.length === 0 || meta.disks.length > 0xffff) {
    throw bad('a server needs 1 to 65535 disks');
  }
  for (const d of meta.disks) {
    checkName('disk', d.name);
    if (!Number.isSafeInteger(d.size) || d.size <= 0)
      throw bad(`disk ${d.name} has size ${d.size}`, { disk: d.name });
  }
  const collision = findNameCollision({ server: meta.server, disks: meta.disks.map((d) => d.name) }, []);
  if (collision) {
    throw storeError(
      'STORE_NAME_COLLISION',
      'conflict',
      `disk name ${collision.disk} appears twice in ${meta.server}`,
      {
        hint: 'Two disks of one server must have different store disk names (file base names or LV names).',
        details: collision,
      },
    );
  }
  if (!Number.isInteger(meta.copies) || meta.copies < 1 || meta.copies > MAX_COPIES) {
    throw storeError('STORE_BAD_COPIES', 'usage', `copies must be 1 to ${MAX_COPIES}, got ${meta.copies}`, {
      hint: 'Set copies in the job to a whole number from 1 to 100.',
    });
  }
  if (!['full', 'incremental', 'resync'].includes(meta.mode)) throw bad(`mode ${meta.mode}`);
  for (const [k, v] of [
    ['pointInTime', meta.pointInTime],
    ['takenAt', meta.takenAt],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || v.length > 256)
      throw bad(`${k} must be a non-empty string`);
  }
  if (meta.baseGenerationId !== null && typeof meta.baseGenerationId !== 'string')
    throw bad('baseGenerationId');
}

/**
 * The XML parser, imported when first needed rather than at start-up: a receiver is started for
 * every replication and answers its first QUERY sooner without it.
 */
const xmlParser = () => import('../../core/domain-xml.ts');
const definitionRules = () => import('../../core/definition-rules.ts');

/**
 * The source definition must parse, and be a domain Haven can make safe to boot (issue 13.1:
 * core/definition-rules.ts), before anything is staged.
 */
async function checkSourceDefinition(server: string, xml: string): Promise<void> {
  const [{ DomainXml }, { refuseUnsafe }] = await Promise.all([xmlParser(), definitionRules()]);
  refuseUnsafe(
    DomainXml.parse(xml),
    server,
    'Haven replicates QEMU/KVM virtual machines only; check the domain with `virsh dumpxml` on the primary.',
  );
}

export class FsStore implements Store {
  readonly kind = 'fs' as const;
  readonly location: string;
  readonly descriptor: StoreDescriptor;
  private readonly ctx: FsContext;

  constructor(
    ctx: FsContext,
    private readonly busyWaitMs: number,
  ) {
    this.ctx = ctx;
    this.location = ctx.layout.root;
    this.descriptor = ctx.descriptor;
  }

  private get layout(): FsLayout {
    return this.ctx.layout;
  }

  private lockedError(server: string) {
    return (h: { pid: number; host: string; startedAt: string; purpose?: string }) =>
      storeError(
        'STORE_LOCKED',
        'conflict',
        `${server} is being written by pid ${h.pid} on ${h.host} since ${h.startedAt}${h.purpose ? ` (${h.purpose})` : ''}`,
        {
          hint: 'Another run replicates this server right now; wait for it to finish. If that process is gone on another host, remove the lock file named in the details.',
          details: {
            server,
            pid: h.pid,
            host: h.host,
            since: h.startedAt,
            purpose: h.purpose,
            lock: this.layout.serverLock(server),
          },
        },
      );
  }

  private async lockServer(server: string, purpose: string): Promise<HeldLock> {
    await ensureDir(this.layout.serverDir(server));
    return acquireLock(this.layout.serverLock(server), {
      purpose,
      log: this.ctx.log,
      locked: this.lockedError(server),
    });
  }

  /** Rolls forward an interrupted commit of `server` if no live writer holds it. */
  private async rollForwardIfIdle(server: string, log: Logger): Promise<boolean> {
    let lock: HeldLock;
    try {
      lock = await this.lockServer(server, 'recover');
    } catch (e) {
      if (e instanceof HavenError && e.code === 'STORE_LOCKED') return false;
      throw e;
    }
    try {
      await rollForward(this.ctx, server, log);
      return true;
    } finally {
      await lock.release();
    }
  }

  /**
   * What a reader may rely on: the manifest, minus generations a running rotation is retiring,
   * and the sequence number in each generation's file names right now. Interrupted rotations
   * are rolled forward first; during a live rotation's renaming steps (milliseconds) it waits.
   */
  private async view(server: string): Promise<ServerView> {
    checkName('server', server);
    const deadline = Date.now() + this.busyWaitMs;
    const plain = (m: ManifestFile | null): ServerView => ({
      manifest: m,
      journal: null,
      fileSeq: (g) => g.seq,
    });
    for (;;) {
      const j1 = await readJournal(this.ctx, server);
      if (!j1) {
        const m = await readManifest(this.ctx, server);
        if (!(await exists(this.layout.journal(server)))) return plain(m);
        continue;
      }
      if (!(await liveHolder(this.layout.serverLock(server)))) {
        try {
          if (await this.rollForwardIfIdle(server, this.ctx.log)) continue;
        } catch (e) {
          // Could not finish it (no space, a cache drive missing): serve the survivors while the
          // rotation waits in its stable phase, as a live one would.
          if (j1.phase !== 'renamed') throw e;
          this.ctx.log.warn('an interrupted commit cannot be completed yet', {
            server,
            error: asHavenError(e).code,
          });
          const m = await readManifest(this.ctx, server);
          return this.rotatingView(m, j1);
        }
        continue;
      }
      if (j1.phase === 'renamed') {
        const m = await readManifest(this.ctx, server);
        const j2 = await readJournal(this.ctx, server);
        if (j2 && j2.deltaId === j1.deltaId && j2.phase === 'renamed') return this.rotatingView(m, j1);
        continue;
      }
      if (Date.now() > deadline) {
        throw storeError('STORE_BUSY', 'conflict', `${server} is in the middle of a rotation`, {
          hint: "A replication is renaming this server's images right now; try again in a moment.",
          details: { server, phase: j1.phase },
        });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private rotatingView(m: ManifestFile | null, j: Journal): ServerView {
    if (!m) return { manifest: null, journal: j, fileSeq: (g) => g.seq };
    const retired = new Set([...j.dropped.map((g) => g.id), ...(j.recycled ? [j.recycled.id] : [])]);
    const moved = new Map(j.survivors.map((s) => [s.id, s.toSeq]));
    const fileSeq = (g: Generation) => moved.get(g.id) ?? g.seq;
    const generations = m.generations
      .filter((g) => !retired.has(g.id))
      .map((g) => ({
        ...g,
        disks: g.disks.map((d) => ({ ...d, image: `${m.server}_${d.name}_${fileSeq(g)}` })),
      }));
    return { manifest: { ...m, generations }, journal: j, fileSeq };
  }

  async recover(only?: string): Promise<string[]> {
    const messages: string[] = [];
    const errors: HavenError[] = [];
    const log = this.ctx.log;
    if (only !== undefined) checkName('server', only);
    const servers = only === undefined ? await listServerDirs(this.ctx) : [only];
    for (const server of servers) {
      if (only !== undefined && !(await exists(this.layout.serverDir(server)))) continue;
      if (!isSafeName(server)) {
        messages.push(`skipped ${JSON.stringify(server)}: not a valid server name`);
        continue;
      }
      let lock: HeldLock;
      try {
        lock = await this.lockServer(server, 'recover');
      } catch (e) {
        if (e instanceof HavenError && e.code === 'STORE_LOCKED') {
          messages.push(`${server}: a writer is active (${e.message}); skipped`);
          continue;
        }
        throw e;
      }
      try {
        const hadJournal = await exists(this.layout.journal(server));
        const sealed = (await listDeltaRecords(this.ctx, server)).some((r) => r.state === 'sealed');
        const gen = await rollForward(this.ctx, server, log);
        if (gen && (hadJournal || sealed))
          messages.push(`${server}: completed an interrupted commit (generation ${gen.id})`);
        messages.push(...(await prune(this.ctx, server, log)));
        for (const f of await listDir(this.layout.serverDir(server))) {
          if (TMP_PATTERN.test(f)) {
            await removeIfExists(join(this.layout.serverDir(server), f));
            messages.push(`${server}: removed temporary file ${f}`);
          }
        }
      } catch (e) {
        const he = asHavenError(e);
        log.error('recovery failed', { server, code: he.code, err: he });
        errors.push(he);
      } finally {
        await lock.release();
      }
    }
    if (only !== undefined) {
      for (const m of messages) log.info(m);
      if (errors.length) throw errors[0]!;
      return messages;
    }
    for (const f of await listDir(this.layout.definitionsDir)) {
      if (TMP_PATTERN.test(f)) {
        await removeIfExists(join(this.layout.definitionsDir, f));
        messages.push(`removed temporary file definitions/${f}`);
      }
    }
    messages.push(...(await this.pruneStaging()));
    for (const m of messages) log.info(m);
    if (errors.length) throw errors[0]!;
    return messages;
  }

  /** Staged data on a cache drive that no delta record of this store refers to any more. */
  private async pruneStaging(): Promise<string[]> {
    if (!this.ctx.stagingDir) return [];
    const out: string[] = [];
    const root = join(this.ctx.stagingDir, 'haven-staging', this.descriptor.id);
    for (const server of await listDir(root)) {
      if (!isSafeName(server)) continue;
      const holder = await liveHolder(this.layout.serverLock(server));
      if (holder) continue;
      const known = new Set((await listDeltaRecords(this.ctx, server)).map((r) => r.id));
      for (const id of await listDir(join(root, server))) {
        if (isId(id) && !known.has(id)) {
          await removeTree(join(root, server, id));
          out.push(`${server}: removed staged data ${id} that no delta refers to`);
        }
      }
    }
    return out;
  }

  async listServers(): Promise<string[]> {
    const out: string[] = [];
    for (const s of await listServerDirs(this.ctx)) {
      if (isSafeName(s) && (await exists(this.layout.manifest(s)))) out.push(s);
    }
    return out;
  }

  async manifest(server: string): Promise<ServerManifest | null> {
    const v = await this.view(server);
    return v.manifest ? manifestView(v.manifest) : null;
  }

  /** Loads the XML parser openDelta checks the source definition with (checkSourceDefinition). */
  expectDelta(_server: string): void {
    Promise.all([xmlParser(), definitionRules()]).catch(() => {});
  }

  async openDelta(meta: DeltaMeta, log?: Logger): Promise<DeltaWriter> {
    validateMeta(meta);
    await checkSourceDefinition(meta.server, meta.sourceDefinition);
    const wlog = (log ?? this.ctx.log).child({ server: meta.server });
    const lock = await this.lockServer(meta.server, `delta ${meta.pointInTime}`);
    try {
      await rollForward(this.ctx, meta.server, wlog);
      const m = await readManifest(this.ctx, meta.server);
      if (m?.activeAtDr) throw activeAtDrError(meta.server, m.activeAtDr);
      const newest = m?.generations[0] ?? null;
      if ((newest?.id ?? null) !== meta.baseGenerationId) {
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
      return await FsDeltaWriter.open({
        ctx: this.ctx,
        meta,
        base: newest,
        lock,
        log: wlog,
        host: {
          commit: async (server, clog) => {
            const gen = await rollForward(this.ctx, server, clog);
            if (!gen)
              throw storeError('STORE_DELTA_STATE', 'internal', `no sealed delta of ${server} to commit`, {
                hint: 'This is a bug in Haven; please report it with the log file of this run.',
              });
            return gen;
          },
        },
        register: (record) => this.registerDelta(record),
      });
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /** Checks image names against every other server and writes a new delta's first record. */
  private async registerDelta(record: DeltaRecord): Promise<void> {
    const lock = await acquireLock(this.layout.storeLock, {
      purpose: 'name check',
      log: this.ctx.log,
      waitMs: 30_000,
      locked: (h) =>
        storeError('STORE_BUSY', 'conflict', `the store's name registry stayed locked by pid ${h.pid}`, {
          hint: 'Another Haven process is opening a delta; try again.',
        }),
    });
    try {
      const others: { server: string; disks: string[] }[] = [];
      for (const s of await listServerDirs(this.ctx)) {
        if (!isSafeName(s) || s === record.server) continue;
        const m = await readManifest(this.ctx, s);
        const disks = new Set(m?.generations.flatMap((g) => g.disks.map((d) => d.name)) ?? []);
        for (const r of await listDeltaRecords(this.ctx, s)) for (const d of r.meta.disks) disks.add(d.name);
        others.push({ server: s, disks: [...disks] });
      }
      const c = findNameCollision(
        { server: record.server, disks: record.meta.disks.map((d) => d.name) },
        others,
      );
      if (c) {
        throw storeError(
          'STORE_NAME_COLLISION',
          'conflict',
          `images of ${record.server} disk ${c.disk} would be named like those of ${c.otherServer} disk ${c.otherDisk} (${c.prefix}_N.raw)`,
          {
            hint: 'Rename one of the servers or disks, or replicate one of them to another store.',
            details: c,
          },
        );
      }
      await ensureDir(this.layout.deltaDir(record.server, record.id));
      await writeDeltaRecord(this.ctx, record);
      await fsyncDir(this.layout.deltasDir(record.server));
    } finally {
      await lock.release();
    }
  }

  private async find(server: string, generationId: string, disk?: string) {
    const v = await this.view(server);
    if (!v.manifest) throw serverNotFound(server);
    const g = v.manifest.generations.find((x) => x.id === generationId);
    if (!g) throw generationNotFound(server, generationId);
    const d = disk === undefined ? undefined : g.disks.find((x) => x.name === disk);
    if (disk !== undefined && !d) {
      throw storeError(
        'STORE_DISK_NOT_FOUND',
        'not-found',
        `generation ${generationId} of ${server} has no disk ${disk}`,
        {
          hint: "List the generation's disks with `haven images <server> --store PATH --json`.",
          details: { server, generationId, disk },
        },
      );
    }
    return { v, g, d };
  }

  async imagePath(server: string, generationId: string, disk: string): Promise<string> {
    const { v, g } = await this.find(server, generationId, disk);
    return this.layout.image(server, disk, v.fileSeq(g));
  }

  async openImage(server: string, generationId: string, disk: string): Promise<ImageReader> {
    const { v, g, d } = await this.find(server, generationId, disk);
    const path = this.layout.image(server, disk, v.fileSeq(g));
    const fh = await io(path, () => open(path, 'r'));
    const size = d!.size;
    const st = await fh.stat();
    if (st.size !== size) {
      await fh.close();
      throw storeError(
        'STORE_SIZE_MISMATCH',
        'integrity',
        `${path} is ${st.size} bytes, the manifest says ${size}`,
        {
          hint: 'Run `haven verify`; the image was changed outside Haven.',
        },
      );
    }
    return {
      size,
      async read(offset: number, length: number): Promise<Buffer> {
        if (
          !Number.isSafeInteger(offset) ||
          !Number.isSafeInteger(length) ||
          offset < 0 ||
          length < 0 ||
          offset + length > size ||
          length > MAX_READ_BYTES
        ) {
          throw storeError(
            'STORE_BAD_RANGE',
            'usage',
            `read ${offset}+${length} is outside the image (${size} bytes) or over ${MAX_READ_BYTES} bytes`,
            { hint: 'Read inside the image, in pieces of at most 64 MiB.' },
          );
        }
        const buf = Buffer.allocUnsafe(length);
        await io(path, () => readAllAt(fh, buf, length, offset));
        return buf;
      },
      close: () => fh.close(),
    };
  }

  async readDigests(
    server: string,
    generationId: string,
    disk: string,
    fromChunk: number,
    count: number,
  ): Promise<Buffer> {
    const { d } = await this.find(server, generationId, disk);
    const chunks = chunkCount(d!.size);
    if (
      !Number.isSafeInteger(fromChunk) ||
      !Number.isSafeInteger(count) ||
      fromChunk < 0 ||
      count < 0 ||
      count > MAX_DIGEST_REQUEST_CHUNKS ||
      fromChunk + count > chunks
    ) {
      throw storeError(
        'STORE_BAD_RANGE',
        'usage',
        `chunks ${fromChunk}+${count} are outside disk ${disk} (${chunks} chunks) or too many at once`,
        { hint: `Ask for chunks inside the disk, at most ${MAX_DIGEST_REQUEST_CHUNKS} at a time.` },
      );
    }
    const path = this.layout.sums(server, generationId, disk);
    return io(path, async () => {
      const fh = await open(path, 'r');
      try {
        if ((await fh.stat()).size < (fromChunk + count) * DIGEST_BYTES) {
          throw storeError('STORE_DIGESTS_SIZE', 'integrity', `${path} is shorter than its disk needs`, {
            hint: 'Run `haven verify`.',
          });
        }
        return await readSums(fh, fromChunk, count);
      } finally {
        await fh.close();
      }
    });
  }

  async verify(server?: string, options: VerifyOptions = {}): Promise<VerifyReport> {
    const report: VerifyReport = {
      ok: true,
      checkedServers: 0,
      checkedGenerations: 0,
      checkedBytes: 0,
      problems: [],
    };
    const servers = server === undefined ? await this.listServers() : [checkName('server', server)];
    // Views first, so progress has its total from the start.
    const views = [];
    for (const s of servers) views.push({ s, v: await this.view(s) });
    const progress = { done: 0, total: 0 };
    if (options.readImages !== false) {
      for (const { v } of views) {
        for (const g of v.manifest?.generations ?? []) {
          if (!options.generationId || g.id === options.generationId) {
            progress.total += g.disks.reduce((n, d) => n + d.size, 0);
          }
        }
      }
    }
    for (const { s, v } of views) await verifyServer(this.ctx, s, v, options, report, progress);
    report.ok = report.problems.length === 0;
    return report;
  }

  definitionPath(server: string): string {
    return this.layout.definition(server);
  }

  private async updateManifest(server: string, fn: (m: ManifestFile) => void): Promise<void> {
    if (!(await exists(this.layout.manifest(server)))) throw serverNotFound(server);
    await withManifestLock(this.ctx, server, async () => {
      const m = await readManifest(this.ctx, server);
      if (!m) throw serverNotFound(server);
      fn(m);
      await writeManifest(this.ctx, m);
    });
  }

  async holdServer(server: string, purpose: string, options: { waitMs?: number } = {}): Promise<ServerHold> {
    checkName('server', server);
    // Checked first: taking the lock would create the server's directory.
    if (!(await exists(this.layout.manifest(server)))) throw serverNotFound(server);
    const lock = await acquireLock(this.layout.serverLock(server), {
      purpose,
      log: this.ctx.log,
      waitMs: options.waitMs ?? 0,
      locked: this.lockedError(server),
    });
    try {
      // A server running at the DR site boots from its generations: nothing may rotate them.
      const m = await readManifest(this.ctx, server);
      if (!m?.activeAtDr) await rollForward(this.ctx, server, this.ctx.log);
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
    if (!Number.isInteger(priority) || priority < 0 || priority > 100_000) {
      throw storeError(
        'STORE_BAD_PRIORITY',
        'usage',
        `boot priority must be a whole number from 0 to 100000, got ${priority}`,
        { hint: 'Lower numbers boot first; the default is 100.' },
      );
    }
    await this.updateManifest(server, (m) => {
      m.bootPriority = priority;
    });
  }

  async setActiveAtDr(server: string, active: ServerManifest['activeAtDr'] | null): Promise<void> {
    await this.updateManifest(server, (m) => {
      if (active) m.activeAtDr = structuredClone(active);
      else delete m.activeAtDr;
    });
  }

  async close(): Promise<void> {}
}
