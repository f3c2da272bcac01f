/**
 * The receiving end of the replication stream: reads frames from a byte stream, checks each
 * against the state table (state.ts) and the delta rules (delta-tracker.ts), verifies digests and
 * writes through the store's DeltaWriter. Answers DELTA_DURABLE only after seal() and COMMITTED
 * only after commit() returned (docs/design.md §5).
 *
 * A frame that breaks the framing or the rules ends the session with a fatal ERROR frame; the
 * delta is closed, not sealed, so the store keeps its generations and the partial delta as of its
 * last checkpoint. Failures at request boundaries (OPEN, END_DELTA, COMMIT, QUERY) are answered
 * with a non-fatal ERROR and the session continues.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { asHavenError, HavenError, type KindOf } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { activeAtDrError } from '../store/errors.ts';
import type { DeltaWriter, Generation, SegmentWriter, Store } from '../store/types.ts';
import { BufferPool } from './buffer-pool.ts';
import {
  decodeFrame,
  encodeDigestsHead,
  encodeEmpty,
  encodeError,
  encodeJson,
  encodeStaged,
  FrameDecoder,
} from './codec.ts';
import { ExtentDecompressor } from './compression.ts';
import { DeltaTracker } from './delta-tracker.ts';
import { createHasher, extentDigests } from './digests.ts';
import { ProtocolError, protoError, RemoteError } from './errors.ts';
import { FrameWriter } from './frame-io.ts';
import { type ByteSource, FrameQueue, readableSource } from './frame-queue.ts';
import {
  type CompressionAlgorithm,
  EXTENT_DATA_HEADER_BYTES,
  type ExtentFrame,
  FEATURE_HOST_FILES,
  type Feature,
  type Frame,
  type FrameBodies,
  MAX_DIGESTS_PER_REQUEST,
  MAX_EXTENT_BYTES,
  PROTOCOL_VERSIONS,
  type StoreCapacity,
} from './frames.ts';
import { HostFileSession } from './host-files.ts';
import { checkQuotaWrite, deltaBudget, type Quota } from './quota.ts';
import { type ReceiverState, receiverStep } from './state.ts';
import { SOFTWARE } from './version.ts';

export interface ReceiverOptions {
  log?: Logger;
  /** Require this token in HELLO (TLS listener with --token-file). */
  token?: string;
  /** Checkpoint (fsync + record watermarks) at a MARK once this many data bytes arrived. Default 256 MiB. */
  checkpointEveryBytes?: number;
  /** …or once this long passed since the last checkpoint. Default 15 s. */
  checkpointEveryMs?: number;
  /** HELLO must arrive within this time. Default 30 s. */
  helloTimeoutMs?: number;
  /**
   * While a delta is open, give up on a sender that sent nothing for this long (default 10 min):
   * the delta is checkpointed and closed, which frees the server's store lock for the resume. A
   * sender behind a dead network path otherwise holds it until TCP notices, which can take hours.
   */
  idleTimeoutMs?: number;
  /** Largest data extent accepted (at most 4 MiB). */
  maxExtentBytes?: number;
  /** Reply queue budget in bytes. Default 8 MiB. */
  maxQueuedBytes?: number;
  /**
   * Refuse the session with this error before reading anything (the transport did not
   * authenticate the peer, e.g. a client certificate its CA did not sign).
   */
  refuse?: HavenError;
  /**
   * A sender's dry run (`haven receive --dry-run`): QUERY answers from the store as it is, without
   * first committing a sealed delta, and OPEN is refused, so the session changes nothing.
   */
  readOnly?: boolean;
  /**
   * Called after a generation is committed and before COMMITTED is sent. A crash-test hook:
   * `haven receive` sets it only from HAVEN_TEST_FAULT (docs/stream-protocol.md, "Test hooks").
   */
  afterCommit?: () => void;
  /**
   * The store's space now, for WELCOME, QUERY_REPLY and COMMITTED (§4.1): what the primary side
   * records per run and graphs. Null, or a failure, sends none.
   */
  capacity?: () => Promise<StoreCapacity | null>;
  /** Limits on what the store may hold, per store and per server (quota.ts). */
  quota?: Quota;
  /**
   * Where the sender's bytes come from, when not from `stream`'s readable side (a socket that
   * reads into one reused buffer: transport/stdio.ts). `stream` still carries the answers.
   */
  input?: ByteSource;
}

interface OpenDelta {
  writer: DeltaWriter | SegmentWriter;
  /** The same writer when the delta is a journal segment (feature `journal`). */
  segment: SegmentWriter | null;
  tracker: DeltaTracker;
  /**
   * Store writes in flight, oldest first, each with the pooled buffers it uses (returned when it
   * settles). Later frames are verified while they run; the store keeps them in order.
   */
  writes: { done: Promise<void>; buffers: Buffer[] }[];
  writeError: unknown;
  lastCheckpoint: number;
  dataBytes: number;
  /** Data bytes this delta may write before a quota is reached (Infinity: no quota). */
  budget: number;
  /** Extents or marks arrived since the last checkpoint. */
  dirty: boolean;
}

const DIGEST_BATCH = 65536;
/**
 * Data writes a delta keeps in flight. One at a time left the receiver waiting on the disk for
 * ~40% of a full copy, and for most of an incremental's thousands of 64 KiB writes.
 */
const WRITES_IN_FLIGHT = 4;
/** Extent bodies above this size are assembled in pooled buffers. */
const POOL_THRESHOLD = 64 * 1024;

export class StreamReceiver {
  private state: ReceiverState = 'handshake';
  private readonly log: Logger;
  private readonly decoder: FrameDecoder;
  private readonly out: FrameWriter;
  private readonly bodies: BufferPool;
  private readonly datas: BufferPool;
  /** Made on the first compressed payload (the native zstd binding loads only then). */
  private decompressor: ExtentDecompressor | undefined;
  private readonly checkpointEveryBytes: number;
  private readonly checkpointEveryMs: number;
  private readonly maxExtentBytes: number;
  private delta: OpenDelta | null = null;
  private lastServer: string | undefined;
  /** The sender offered zstd in HELLO; without that, zstd payloads are refused. */
  private zstdAgreed = false;
  /** Host files (§4.7): rescue media and backup archives sent into the store's host area. */
  private readonly files: HostFileSession;
  /** Features agreed in the handshake (offered by the sender, supported here). */
  private features: Feature[] = [];

  constructor(
    private readonly stream: Duplex,
    private readonly store: Store,
    private readonly o: ReceiverOptions = {},
  ) {
    this.log = o.log ?? silentLogger;
    this.checkpointEveryBytes = o.checkpointEveryBytes ?? 256 * 1024 * 1024;
    this.checkpointEveryMs = o.checkpointEveryMs ?? 15_000;
    this.maxExtentBytes = Math.min(o.maxExtentBytes ?? MAX_EXTENT_BYTES, MAX_EXTENT_BYTES);
    // Payloads (and decompressed data) land on page boundaries, so a store writing with
    // O_DIRECT takes them as they are instead of copying each into aligned memory.
    this.bodies = new BufferPool(EXTENT_DATA_HEADER_BYTES + this.maxExtentBytes, {
      alignAt: EXTENT_DATA_HEADER_BYTES,
    });
    this.datas = new BufferPool(this.maxExtentBytes, { alignAt: 0 });
    this.decoder = new FrameDecoder({
      allocBody: (type, length) =>
        (type === 'EXTENT' || type === 'FILE_DATA') && length > POOL_THRESHOLD
          ? this.bodies.take(length)
          : Buffer.allocUnsafe(length),
      copyBodies: true,
    });
    this.out = new FrameWriter(stream, o.maxQueuedBytes ?? 8 * 1024 * 1024, () => {});
    this.files = new HostFileSession(store, this.log, o.readOnly === true);
    if (this.maxExtentBytes % store.descriptor.chunkSize !== 0) {
      throw new HavenError('PROTO_BAD_OPTION', 'maxExtentBytes must be a multiple of the chunk size', {
        kind: 'usage',
      });
    }
  }

  /** Bytes read from the stream so far. */
  get bytesIn(): number {
    return this.decoder.bytesIn;
  }

  /**
   * Serves the session until BYE or the end of the stream. Resolves on a clean end; rejects with
   * the error that ended it otherwise (a fatal ERROR it sent or received, or a lost connection
   * while a delta was open).
   */
  async run(): Promise<void> {
    const frames = new FrameQueue(this.decoder, this.o.input ?? readableSource(this.stream));
    // With a separate input, failures of the stream itself (a timeout below, the answering side
    // breaking) still end the session.
    if (this.o.input) this.stream.on('error', (e: Error) => frames.fail(e));
    const helloTimer = setTimeout(() => {
      if (this.state === 'handshake') {
        this.stream.destroy(protoError('PROTO_TIMEOUT', 'no HELLO in time', { ms: this.o.helloTimeoutMs }));
      }
    }, this.o.helloTimeoutMs ?? 30_000);
    helloTimer.unref();
    // Idle means waiting for the sender, not the store: a long seal or commit does not count.
    const idleMs = this.o.idleTimeoutMs ?? 600_000;
    let waitingSince: number | null = null;
    const idleTimer = setInterval(
      () => {
        const busy = this.delta !== null || this.files.open;
        if (waitingSince !== null && busy && Date.now() - waitingSince >= idleMs) {
          this.stream.destroy(
            protoError('PROTO_TIMEOUT', `the sender sent nothing for ${Math.round(idleMs / 1000)} s`, {
              server: this.lastServer,
            }),
          );
        }
      },
      Math.max(50, Math.min(idleMs / 4, 30_000)),
    );
    idleTimer.unref();
    try {
      if (this.o.refuse) {
        await this.fatal(this.o.refuse, frames);
        throw this.o.refuse;
      }
      for (;;) {
        let next: Awaited<ReturnType<FrameQueue['next']>>;
        try {
          // A frame may ask for an answer: none is read while the sender leaves the last ones unread.
          await this.repliesRead();
          waitingSince = Date.now();
          next = await frames.next();
          waitingSince = null;
        } catch (e) {
          // The stream broke (reset, TLS failure, child gone): nobody to tell.
          const err =
            e instanceof HavenError
              ? e
              : new ProtocolError('PROTO_CONNECTION_LOST', `connection lost: ${(e as Error).message}`, {}, e);
          await this.connectionEnded(err);
          throw err;
        }
        try {
          if (next.kind === 'bad') throw next.error;
          if (next.kind === 'end') {
            this.decoder.end();
            await this.connectionEnded(null);
            return;
          }
          const step = receiverStep(this.state, next.raw.type);
          await this.handle(decodeFrame(next.raw), step);
          if (this.state === 'closed') {
            await this.out.end();
            return;
          }
        } catch (e) {
          const err = asHavenError(e);
          if (err instanceof RemoteError || err.code === 'PROTO_CONNECTION_LOST') {
            await this.connectionEnded(err);
          } else {
            await this.fatal(err, frames);
          }
          throw err;
        }
      }
    } finally {
      clearTimeout(helloTimer);
      clearInterval(idleTimer);
    }
  }

  private async handle(frame: Frame, step: ReturnType<typeof receiverStep>): Promise<void> {
    try {
      await this.dispatch(frame);
      this.state = step.next;
    } catch (e) {
      const err = asHavenError(e);
      if (step.onFailure === undefined || err.kind === 'internal') throw err;
      this.log.warn(`${frame.type} failed: ${err.message}`, { code: err.code, server: this.lastServer });
      await this.closeDelta('checkpoint');
      this.sendError(err, false);
      this.state = step.onFailure;
    }
  }

  private async dispatch(frame: Frame): Promise<void> {
    switch (frame.type) {
      case 'HELLO':
        return this.onHello(frame.body);
      case 'QUERY':
        return this.onQuery(frame.body.server, frame.body.journal === true);
      case 'OPEN':
        return this.onOpen(frame.body);
      case 'EXTENT':
        return this.onExtent(frame.body);
      case 'MARK':
        return this.onMark(frame.body.disk, frame.body.offset);
      case 'DIGESTS_REQ':
        return this.onDigestsRequest(frame.body);
      case 'END_DELTA':
        return this.onEndDelta(frame.body);
      case 'COMMIT':
        return this.onCommit();
      case 'ABORT':
        return this.onAbort(frame.body.discard);
      case 'HOST_QUERY': {
        const manifest = await this.files.query(frame.body.host);
        this.out.write([encodeJson('HOST_REPLY', { host: frame.body.host, manifest })]);
        return;
      }
      case 'FILE_OPEN': {
        this.lastServer = frame.body.host;
        const fileId = await this.files.begin(frame.body);
        this.out.write([encodeJson('FILE_OPENED', { fileId })]);
        return;
      }
      case 'FILE_DATA':
        try {
          return await this.files.data(frame.body.offset, frame.body.payload);
        } finally {
          // Written (or failed) before the next frame is read: the pooled body can go back.
          this.bodies.release(frame.body.payload);
        }
      case 'FILE_END': {
        const generation = await this.files.end(frame.body);
        this.out.write([encodeJson('FILE_COMMITTED', { generation })]);
        return;
      }
      case 'BYE':
        await this.closeDelta('checkpoint');
        this.out.write([encodeEmpty('BYE')]);
        this.log.debug('session ended by BYE');
        return;
      case 'ERROR': {
        await this.closeDelta('close');
        const err = new RemoteError(frame.body, true, 'sender');
        this.log.error(`sender reported: ${frame.body.message}`, { code: frame.body.code });
        throw err;
      }
      default:
        throw new HavenError('INTERNAL', `no handler for ${frame.type}`, { kind: 'internal' });
    }
  }

  /**
   * Waits while the answers queued for the sender are over their budget (maxQueuedBytes). A
   * sender that stops reading them must neither make this side buffer without bound (every frame
   * it sends may ask for an answer, so no frame is read meanwhile) nor hold its delta, and with it
   * the server's store lock, forever: after the idle timeout without progress the session ends
   * with PROTO_PEER_NOT_READING (the open delta is checkpointed and closed, as after any failure).
   */
  private async repliesRead(): Promise<void> {
    if (!this.out.full) return;
    const ms = this.o.idleTimeoutMs ?? 600_000;
    const ready = this.out.ready();
    ready.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = protoError(
          'PROTO_PEER_NOT_READING',
          `the sender read none of the answers for ${Math.round(ms / 1000)} s`,
          { server: this.lastServer },
        );
        this.log.error(`rejected: ${err.message}`, { code: err.code, server: this.lastServer });
        // Nothing more can reach a peer that does not read: the connection goes, the delta is
        // checkpointed and closed on the way out (connectionEnded).
        this.stream.destroy(err);
        reject(err);
      }, ms);
    });
    try {
      await Promise.race([ready, stalled]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** `{capacity}` to spread into an answer, or nothing when the store cannot tell. */
  private async capacity(): Promise<{ capacity?: StoreCapacity }> {
    if (!this.o.capacity) return {};
    try {
      const c = await this.o.capacity();
      return c ? { capacity: c } : {};
    } catch (e) {
      this.log.debug('the store’s capacity could not be read', { err: e });
      return {};
    }
  }

  private async onHello(h: FrameBodies['HELLO']): Promise<void> {
    if (this.o.token !== undefined && !tokenMatches(this.o.token, h.token)) {
      throw protoError('PROTO_AUTH_FAILED', h.token === undefined ? 'a token is required' : 'wrong token');
    }
    const version = Math.max(...h.versions.filter((v) => PROTOCOL_VERSIONS.includes(v)));
    if (!Number.isFinite(version)) {
      throw protoError('PROTO_VERSION', `no common protocol version (sender ${h.versions.join(',')})`, {
        sender: h.versions,
        receiver: PROTOCOL_VERSIONS,
      });
    }
    const digest = this.store.descriptor.digest;
    if (!h.digests.includes(digest)) {
      throw protoError(
        'PROTO_CAPABILITY',
        `the store uses ${digest} digests, the sender offers ${h.digests.join(', ')}`,
        {
          store: digest,
          offered: h.digests,
        },
      );
    }
    this.zstdAgreed = h.compression.includes('zstd');
    const compression: CompressionAlgorithm[] = this.zstdAgreed ? ['zstd', 'none'] : ['none'];
    const mine: Feature[] = [
      ...(this.store.openSegment && this.store.journalInfo ? (['journal'] as const) : []),
      ...(this.files.available ? [FEATURE_HOST_FILES] : []),
    ];
    this.features = mine.filter((f) => h.features?.includes(f));
    this.log.info('session started', { peer: h.software, version, compression: h.compression });
    this.out.write([
      encodeJson('WELCOME', {
        version,
        software: SOFTWARE,
        compression,
        digest,
        store: this.store.descriptor,
        maxExtentBytes: this.maxExtentBytes,
        maxDigestsPerRequest: MAX_DIGESTS_PER_REQUEST,
        ...(this.features.length ? { features: this.features } : {}),
        ...(await this.capacity()),
      }),
    ]);
  }

  private async newest(server: string): Promise<Generation | null> {
    const m = await this.store.manifest(server);
    return m?.generations[0] ?? null;
  }

  private async onQuery(server: string, journal: boolean): Promise<void> {
    checkName('server', server);
    // A delta sealed by an earlier session but not committed (the target filled up at commit,
    // the receiver died) becomes the newest generation now, so the sender plans against it.
    if (!this.o.readOnly) await this.store.recover(server);
    // Refused here, before the sender takes a point in time it could not deliver.
    const m = await this.store.manifest(server);
    if (m?.activeAtDr) throw activeAtDrError(server, m.activeAtDr);
    const generations = m?.generations ?? [];
    const journalInfo =
      journal && this.features.includes('journal')
        ? { journal: (await this.store.journalInfo?.(server)) ?? null }
        : {};
    this.out.write([
      encodeJson('QUERY_REPLY', {
        server,
        newest: generations[0] ?? null,
        generations,
        ...journalInfo,
        ...(await this.capacity()),
        ...((await this.store.needsResync?.(server)) ? { resync: true } : {}),
      }),
    ]);
    // After the answer is out: the sender now takes its point in time, and this side is idle.
    this.store.expectDelta?.(server);
  }

  private async onOpen(meta: FrameBodies['OPEN']): Promise<void> {
    this.lastServer = meta.server;
    if (this.o.readOnly) {
      throw new HavenError('RECEIVE_READ_ONLY', 'this receiver answers a dry run and takes no delta', {
        kind: 'refused',
        hint: 'Run the sender without --dry-run.',
      });
    }
    checkName('server', meta.server);
    checkName('job', meta.job);
    for (const d of meta.disks) checkName('disk', d.name);
    // Refused before the store stages anything.
    const budget = await deltaBudget(this.store, this.o.quota, meta.server, meta.disks);
    let writer: DeltaWriter | SegmentWriter;
    let segment: SegmentWriter | null = null;
    try {
      const log = this.log.child({ server: meta.server });
      const journal = meta.journal;
      if (journal) {
        if (!this.features.includes('journal') || !this.store.openSegment) {
          throw new HavenError('RECEIVE_JOURNAL_UNSUPPORTED', 'this receiver keeps no journal', {
            kind: 'refused',
            hint: 'Offer the journal feature first (HELLO features); upgrade Haven on the target.',
          });
        }
        segment = await this.store.openSegment({ ...meta, journal }, log);
        writer = segment;
      } else {
        writer = await this.store.openDelta(meta, log);
      }
    } catch (e) {
      const err = asHavenError(e);
      if (err.code === 'STORE_BASE_MISMATCH') {
        // The sender needs the newest generation to plan a checksum resync against it.
        const newest = await this.newest(meta.server).catch(() => null);
        throw new HavenError(err.code, err.message, {
          kind: err.kind as KindOf<'STORE_BASE_MISMATCH'>,
          hint: err.hint,
          cause: err,
          details: { ...err.details, newest },
        });
      }
      throw err;
    }
    try {
      const resume = writer.resumed;
      const samePoint = resume !== null && resume.pointInTime === meta.pointInTime;
      const tracker = new DeltaTracker(
        meta.disks,
        this.store.descriptor.chunkSize,
        this.store.descriptor.digest,
        samePoint ? resume : null,
        this.maxExtentBytes,
      );
      const newest = await this.newest(meta.server);
      this.delta = {
        writer,
        segment,
        tracker,
        writes: [],
        writeError: null,
        lastCheckpoint: Date.now(),
        dataBytes: 0,
        budget,
        dirty: false,
      };
      this.log[segment ? 'verbose' : 'info']('delta opened', {
        server: meta.server,
        ...(segment ? { journal: meta.journal?.base ?? 'start' } : {}),
        deltaId: writer.deltaId,
        mode: meta.mode,
        pointInTime: meta.pointInTime,
        resumed: resume ? { pointInTime: resume.pointInTime, watermarks: resume.watermarks } : null,
      });
      const resync = !segment && (await this.store.needsResync?.(meta.server)) === true;
      this.out.write([
        encodeJson('OPENED', { deltaId: writer.deltaId, newest, resume, ...(resync ? { resync } : {}) }),
      ]);
    } catch (e) {
      this.delta = null;
      await writer.close().catch(() => {});
      throw e;
    }
  }

  private requireDelta(): OpenDelta {
    if (!this.delta) throw new HavenError('INTERNAL', 'no open delta', { kind: 'internal' });
    return this.delta;
  }

  /** Waits for every store write in flight and rethrows a failure. */
  private async settleWrites(d: OpenDelta): Promise<void> {
    await this.settleUntil(d, 0);
  }

  /** Waits until at most `limit` writes are in flight (oldest first); rethrows a failure. */
  private async settleUntil(d: OpenDelta, limit: number): Promise<void> {
    while (d.writes.length > limit) {
      const w = d.writes.shift()!;
      await w.done;
      for (const b of w.buffers) {
        this.bodies.release(b);
        this.datas.release(b);
      }
    }
    if (d.writeError !== null) throw d.writeError;
  }

  private startWrite(d: OpenDelta, write: Promise<void>, buffers: Buffer[]): void {
    const done = write.catch((err: unknown) => {
      d.writeError ??= err;
    });
    d.writes.push({ done, buffers });
  }

  private async onExtent(e: ExtentFrame): Promise<void> {
    const d = this.requireDelta();
    const disk = d.tracker.checkExtent(e);
    if (e.kind === 'zero') {
      await this.settleWrites(d);
      d.tracker.accept(e);
      d.dirty = true;
      this.startWrite(d, d.writer.writeZero(disk.name, e.offset, e.length), []);
      return;
    }
    checkQuotaWrite(this.lastServer ?? disk.name, d.budget, d.dataBytes, e.length);
    const where = { disk: disk.name, offset: e.offset, length: e.length };
    let data = e.payload!;
    if (e.encoding === 'zstd') {
      if (!this.zstdAgreed) {
        throw protoError('PROTO_BAD_COMPRESSION', 'zstd payload, but HELLO did not offer zstd', where);
      }
      this.decompressor ??= new ExtentDecompressor();
      data = this.decompressor.decompress(e.payload!, e.length, where, this.datas.take(e.length));
      this.bodies.release(e.payload);
    }
    const digests = extentDigests(d.tracker.digest, data, d.tracker.chunkSize);
    if (!digests.root.equals(e.digest!)) {
      throw protoError(
        'PROTO_DIGEST_MISMATCH',
        `extent [${e.offset}, +${e.length}) of ${disk.name} fails its digest`,
        where,
      );
    }
    // The checks above ran while earlier writes were in flight; the store keeps them in order.
    await this.settleUntil(d, WRITES_IN_FLIGHT - 1);
    d.tracker.accept(e, digests.root);
    d.dataBytes += e.length;
    d.dirty = true;
    // The data is a view of a pooled buffer: it returns to the pool once this write settled.
    this.startWrite(d, d.writer.writeData(disk.name, e.offset, data, digests.chunks), [data]);
  }

  private async onMark(disk: number, offset: number): Promise<void> {
    const d = this.requireDelta();
    const marks = d.tracker.mark(disk, offset);
    d.dirty = true;
    const due =
      d.tracker.bytesSinceCheckpoint >= this.checkpointEveryBytes ||
      Date.now() - d.lastCheckpoint >= this.checkpointEveryMs;
    if (!due) return;
    await this.checkpoint(d);
    this.out.write([encodeStaged({ watermarks: marks })]);
  }

  private async checkpoint(d: OpenDelta): Promise<void> {
    await this.settleWrites(d);
    const byName = d.tracker.watermarksByName();
    await d.writer.checkpoint(byName);
    d.tracker.bytesSinceCheckpoint = 0;
    d.lastCheckpoint = Date.now();
    d.dirty = false;
    this.log.debug('checkpoint', { watermarks: byName });
  }

  private async onDigestsRequest(r: FrameBodies['DIGESTS_REQ']): Promise<void> {
    const d = this.requireDelta();
    const disk = d.tracker.checkDigestsRequest(r.disk, r.fromChunk, r.count, MAX_DIGESTS_PER_REQUEST);
    await this.settleWrites(d);
    const digests = await d.writer.expectedDigests(disk.name, r.fromChunk, r.count);
    if (digests.length !== r.count * 32) {
      throw new HavenError(
        'INTERNAL',
        `store returned ${digests.length} digest bytes for ${r.count} chunks`,
        {
          kind: 'internal',
        },
      );
    }
    // Backpressure: the main loop reads no further frame while the answers wait unread.
    this.out.write([encodeDigestsHead(r.id, digests.length), digests]);
  }

  private async onEndDelta(end: FrameBodies['END_DELTA']): Promise<void> {
    const d = this.requireDelta();
    await this.settleWrites(d);
    d.tracker.verifyEnd(end);
    for (const [name, hex] of Object.entries(end.imageDigests ?? {})) {
      await this.verifyImage(d, name, hex);
    }
    d.segment?.setConsistent(end.consistent === true);
    await d.writer.seal(end.summary);
    this.log[d.segment ? 'verbose' : 'info']('delta durable', {
      deltaId: d.writer.deltaId,
      dataBytes: d.dataBytes,
    });
    this.out.write([encodeJson('DELTA_DURABLE', { deltaId: d.writer.deltaId })]);
  }

  /** Compares the whole disk as it will be after this delta with the sender's image digest. */
  private async verifyImage(d: OpenDelta, name: string, hex: string): Promise<void> {
    const disk = d.tracker.diskByName(name);
    const h = createHasher(d.tracker.digest);
    for (let c = 0; c < disk.chunks; c += DIGEST_BATCH) {
      h.update(await d.writer.expectedDigests(name, c, Math.min(DIGEST_BATCH, disk.chunks - c)));
    }
    const got = h.digest().toString('hex');
    if (got !== hex) {
      throw protoError('PROTO_IMAGE_MISMATCH', `disk ${name} would not equal the source after this delta`, {
        disk: name,
        source: hex,
        target: got,
      });
    }
  }

  private async onCommit(): Promise<void> {
    const d = this.requireDelta();
    if (d.segment) {
      const segment = await d.segment.append();
      this.delta = null;
      this.log.verbose('journal segment appended', {
        id: segment.id,
        seq: segment.seq,
        consistent: segment.consistent,
        pointInTime: segment.pointInTime,
      });
      this.out.write([encodeJson('COMMITTED', { segment })]);
      return;
    }
    const generation = await (d.writer as DeltaWriter).commit();
    this.delta = null;
    this.log.info('generation committed', { id: generation.id, pointInTime: generation.pointInTime });
    this.o.afterCommit?.();
    this.out.write([encodeJson('COMMITTED', { generation, ...(await this.capacity()) })]);
  }

  private async onAbort(discard: boolean): Promise<void> {
    await this.closeDelta(discard ? 'discard' : 'checkpoint');
    this.out.write([encodeEmpty('ABORTED')]);
  }

  /**
   * Ends the open delta, if any, after its last write settled:
   * - 'checkpoint': an orderly stop (BYE, ABORT, a lost connection, a refused END_DELTA) after
   *   frames that all passed their checks, so what arrived is made durable for the resume first;
   * - 'close': after a fatal error, keep only what earlier checkpoints made durable;
   * - 'discard': throw the partial delta away (a failed discard still closes the writer).
   */
  private async closeDelta(how: 'checkpoint' | 'close' | 'discard'): Promise<void> {
    // A host file has no resume: whatever ends it unfinished throws it away.
    await this.files.discard();
    const d = this.delta;
    if (!d) return;
    this.delta = null;
    await this.settleWrites(d).catch(() => {});
    if (how === 'discard') {
      try {
        await d.writer.discard();
        this.log.info('delta discarded', { deltaId: d.writer.deltaId });
        return;
      } catch (e) {
        await d.writer.close().catch(() => {});
        throw e;
      }
    }
    if (how === 'checkpoint' && this.state === 'delta' && d.dirty && d.writeError === null) {
      try {
        await this.checkpoint(d);
      } catch (e) {
        this.log.warn(`final checkpoint of ${d.writer.deltaId} failed: ${(e as Error).message}`);
      }
    }
    try {
      await d.writer.close();
      this.log.info('delta closed unsealed', {
        deltaId: d.writer.deltaId,
        watermarks: d.tracker.watermarksByName(),
      });
    } catch (e) {
      this.log.warn(`closing delta ${d.writer.deltaId} failed: ${(e as Error).message}`);
    }
  }

  private sendError(err: HavenError, fatal: boolean): void {
    this.out.write([encodeError(err, fatal, true)]);
  }

  /** The stream ended or broke: close the delta; only an end outside a delta is clean. */
  private async connectionEnded(err: HavenError | null): Promise<void> {
    const wasOpen = this.delta !== null || this.files.open;
    const state = this.state;
    await this.closeDelta(err instanceof RemoteError ? 'close' : 'checkpoint');
    this.state = 'closed';
    if (err) return;
    if (wasOpen || state === 'delta' || state === 'sealed' || state === 'file') {
      throw protoError('PROTO_CONNECTION_LOST', `the sender went away while a delta was open (${state})`, {
        server: this.lastServer,
      });
    }
    this.log.debug('stream ended', { state });
  }

  /**
   * A fatal protocol error: tell the sender, close the delta unsealed, then read and drop what the
   * sender already had in flight until it hangs up, so the ERROR frame is not lost to a reset.
   */
  private async fatal(err: HavenError, frames: FrameQueue): Promise<void> {
    this.log.error(`rejected: ${err.message}`, {
      code: err.code,
      server: this.lastServer,
      details: err.details,
    });
    await this.closeDelta('close');
    this.state = 'closed';
    if (this.stream.destroyed) return;
    this.sendError(err, true);
    await this.out.end();
    const timer = setTimeout(() => this.stream.destroy(), 10_000);
    timer.unref();
    try {
      await frames.drain();
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Constant-time comparison (of digests, so the length does not leak either). */
function tokenMatches(expected: string, got: string | undefined): boolean {
  if (got === undefined) return false;
  const a = createHash('sha256').update(expected, 'utf8').digest();
  const b = createHash('sha256').update(got, 'utf8').digest();
  return timingSafeEqual(a, b);
}
