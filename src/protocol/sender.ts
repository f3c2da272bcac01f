/**
 * The sending end of the replication stream, driven by the engine: handshake, then per server
 * OPEN → extents, marks, digest requests → END_DELTA → COMMIT. Frames are built here (digests,
 * compression) and written with bounded queueing: `sendData` resolves once the frame is queued
 * and the queue is below its budget, so awaiting it is the engine's backpressure.
 *
 * Answers from the receiver are matched to the one outstanding request (control frames are
 * strictly request/answer) or, for DIGESTS, to the FIFO of digest requests. Anything out of the
 * state table (state.ts) ends the session with a fatal ERROR to the receiver.
 */
import type { Duplex } from 'node:stream';
import type { DigestAlgorithm } from '../core/digest.ts';
import { createHasher, DIGEST_ALGORITHMS, type Hasher, rootDigest } from '../core/digest.ts';
import { HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import type { HostFileMeta, HostGeneration, HostManifest } from '../store/host/types.ts';
import type {
  DeltaMeta,
  DeltaSummary,
  Generation,
  JournalDeltaMeta,
  JournalInfo,
  ResumeState,
  SegmentRecord,
  StoreDescriptor,
} from '../store/types.ts';
import {
  decodeFrame,
  encodeAbort,
  encodeDigestsRequest,
  encodeEmpty,
  encodeError,
  encodeExtentHead,
  encodeFileDataHead,
  encodeJson,
  encodeMark,
  FrameDecoder,
} from './codec.ts';
import { ExtentCompressor } from './compression.ts';
import { DeltaTracker } from './delta-tracker.ts';
import { extentDigests } from './digests.ts';
import { ProtocolError, protoError, RemoteError } from './errors.ts';
import { FrameWriter } from './frame-io.ts';
import {
  type CompressionAlgorithm,
  FEATURES,
  type Feature,
  type Frame,
  type FrameBodies,
  MAX_EXTENT_BYTES,
  PROTOCOL_NAME,
  PROTOCOL_VERSIONS,
  type StoreCapacity,
} from './frames.ts';
import { type SenderOp, type SenderState, senderOnFrame, senderOnOp } from './state.ts';
import { SOFTWARE } from './version.ts';

export interface SenderOptions {
  /** Payload compression; default zstd level 1. */
  compression?: { algorithm: CompressionAlgorithm; level: number };
  /** Offer only this digest algorithm (default: all; the receiver picks its store's). */
  digest?: DigestAlgorithm;
  /** Shared secret for receivers that require one. */
  token?: string;
  log?: Logger;
  /** Bytes that may wait in the stream before sendData() waits. Default 16 MiB. */
  maxQueuedBytes?: number;
  /** WELCOME must arrive within this time. Default 120 s (ssh logins can be slow). */
  handshakeTimeoutMs?: number;
  /** Largest data extent per frame (at most 4 MiB; the receiver may lower it). */
  maxExtentBytes?: number;
}

export interface OpenResult {
  deltaId: string;
  newest: Generation | null;
  resume: ResumeState | null;
  /** The target wants a checksum resync: its base holds damaged chunks (QUERY_REPLY `resync`). */
  resync?: boolean;
}

/** What a target says of one server (QUERY): its restore points and the store's space. */
export interface TargetView {
  newest: Generation | null;
  /** Every generation, newest first; null from a receiver that lists only the newest. */
  generations: Generation[] | null;
  capacity: StoreCapacity | null;
  /** The newest generation holds damaged chunks only the source can repair (checksum resync). */
  resync: boolean;
}

export interface EndDeltaOptions {
  /** Per disk, rootDigest over all chunk digests of the source disk (full copy or resync). */
  imageDigests?: Record<string, Buffer>;
  /** A journal segment: whether it ends consistent (a point). */
  consistent?: boolean;
}

export interface SenderStats {
  dataFrames: number;
  zeroFrames: number;
  /** Uncompressed data bytes sent. */
  dataBytes: number;
  zeroBytes: number;
  /** Data bytes as they went on the wire (compressed or raw). */
  payloadBytes: number;
}

interface Pending {
  op: SenderOp | 'hello';
  resolve: (v: unknown) => void;
  reject: (e: HavenError) => void;
}

interface DigestWaiter {
  id: number;
  count: number;
  resolve: (b: Buffer) => void;
  reject: (e: HavenError) => void;
}

export class StreamSender {
  private state: SenderState = 'handshake';
  private readonly log: Logger;
  private readonly decoder = new FrameDecoder();
  private readonly out: FrameWriter;
  private pending: Pending | null = null;
  private digestWaiters: DigestWaiter[] = [];
  private nextDigestId = 1;
  private failure: HavenError | null = null;
  private stagedCallbacks: Array<(w: Record<string, number>) => void> = [];
  private tracker: DeltaTracker | null = null;
  private meta: DeltaMeta | null = null;
  private deltaId: string | null = null;
  /** What the partial delta held when this attempt began (from OPENED), for the default summary. */
  private staged: Record<string, { dataBytes: number; zeroBytes: number }> = {};
  /** A sendData/sendZero is running: the next call must wait for it (frames go out in order). */
  private sending = false;
  private compressor: ExtentCompressor | null = null;
  /** The host file being sent: its running digest and how many bytes went out. */
  private fileHasher: Hasher | null = null;
  private fileOffset = 0;
  private welcome!: FrameBodies['WELCOME'];
  private lastCapacity: StoreCapacity | null = null;
  readonly stats: SenderStats = { dataFrames: 0, zeroFrames: 0, dataBytes: 0, zeroBytes: 0, payloadBytes: 0 };

  private constructor(
    private readonly stream: Duplex,
    private readonly o: SenderOptions,
  ) {
    this.log = o.log ?? silentLogger;
    this.out = new FrameWriter(stream, o.maxQueuedBytes ?? 16 * 1024 * 1024, (e) => this.onStreamError(e));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
    stream.on('error', (e) => this.onStreamError(e));
    stream.on('close', () => this.onEnd());
  }

  /**
   * The handshake over a transport connection, which then belongs to the sender: close() also
   * closes the transport (waits for the child process, closes the socket), and a failed handshake
   * closes it at once.
   */
  static async over(
    conn: { readonly stream: Duplex; close(): Promise<void> },
    o: SenderOptions = {},
  ): Promise<StreamSender> {
    try {
      const sender = await StreamSender.connect(conn.stream, o);
      const close = sender.close.bind(sender);
      sender.close = async () => {
        await close();
        await conn.close();
      };
      return sender;
    } catch (e) {
      await conn.close();
      throw e;
    }
  }

  /** Performs the handshake; resolves once WELCOME arrived. */
  static async connect(stream: Duplex, o: SenderOptions = {}): Promise<StreamSender> {
    const s = new StreamSender(stream, o);
    const compression = o.compression ?? { algorithm: 'zstd', level: 1 };
    const welcome = new Promise<unknown>((resolve, reject) => {
      s.pending = { op: 'hello', resolve, reject };
    });
    const timeoutMs = o.handshakeTimeoutMs ?? 120_000;
    const timer = setTimeout(
      () => s.fail(protoError('PROTO_TIMEOUT', `no WELCOME within ${timeoutMs} ms`), false),
      timeoutMs,
    );
    try {
      s.out.write([
        encodeJson('HELLO', {
          protocol: PROTOCOL_NAME,
          versions: [...PROTOCOL_VERSIONS],
          software: SOFTWARE,
          compression: compression.algorithm === 'zstd' ? ['zstd', 'none'] : ['none'],
          compressionLevel: compression.level,
          digests: o.digest ? [o.digest] : [...DIGEST_ALGORITHMS],
          ...(o.token !== undefined ? { token: o.token } : {}),
          features: [...FEATURES],
        }),
      ]);
      await welcome;
    } catch (e) {
      stream.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    s.compressor =
      compression.algorithm === 'zstd' && s.welcome.compression.includes('zstd')
        ? new ExtentCompressor(compression.level, s.maxExtentBytes)
        : null;
    s.log.debug('stream connected', {
      version: s.welcome.version,
      peer: s.welcome.software,
      store: s.welcome.store.id,
      digest: s.welcome.digest,
      compression: s.compressor ? `zstd:${compression.level}` : 'none',
    });
    return s;
  }

  /** The receiver's store (from WELCOME). */
  get store(): StoreDescriptor {
    return this.welcome.store;
  }

  get digestAlgorithm(): DigestAlgorithm {
    return this.welcome.digest;
  }

  get chunkSize(): number {
    return this.welcome.store.chunkSize;
  }

  /** Largest data extent per frame for this session. */
  get maxExtentBytes(): number {
    const want = Math.min(
      this.o.maxExtentBytes ?? MAX_EXTENT_BYTES,
      this.welcome.maxExtentBytes,
      MAX_EXTENT_BYTES,
    );
    return Math.max(this.chunkSize, want - (want % this.chunkSize));
  }

  /** Bytes written to the stream so far (all frames). */
  get bytesOnWire(): number {
    return this.out.bytesOut;
  }

  /** Bytes read from the stream so far. */
  get bytesReceived(): number {
    return this.decoder.bytesIn;
  }

  /** Whether the receiver agreed to `feature` in WELCOME (older receivers agree to none). */
  supports(feature: Feature): boolean {
    return this.welcome.features?.includes(feature) ?? false;
  }

  /** The newest generation of a server on the target, without opening a delta. */
  async query(server: string): Promise<Generation | null> {
    return (await this.inspect(server)).newest;
  }

  /** Everything the target says of a server: its generations and the store's space (§4.1). */
  async inspect(server: string): Promise<TargetView> {
    this.op('query');
    const p = this.request('query');
    this.out.write([encodeJson('QUERY', { server })]);
    const reply = (await p) as FrameBodies['QUERY_REPLY'];
    return {
      newest: reply.newest,
      generations: reply.generations ?? null,
      capacity: reply.capacity ?? null,
      resync: reply.resync === true,
    };
  }

  /**
   * The store's space as the receiver last reported it (WELCOME, then each QUERY_REPLY and
   * COMMITTED); null when it never did (an older receiver).
   */
  get capacity(): StoreCapacity | null {
    return this.lastCapacity;
  }

  /** The newest generation and the journal of a server (feature `journal`). */
  async queryJournal(server: string): Promise<{ newest: Generation | null; journal: JournalInfo | null }> {
    this.op('query');
    const p = this.request('query');
    this.out.write([encodeJson('QUERY', { server, journal: true })]);
    const reply = (await p) as FrameBodies['QUERY_REPLY'];
    return { newest: reply.newest, journal: reply.journal ?? null };
  }

  /** Opens a delta, or a journal segment when `meta.journal` is set (feature `journal`). */
  async open(meta: DeltaMeta | JournalDeltaMeta): Promise<OpenResult> {
    this.op('open');
    const p = this.request('open');
    this.meta = meta;
    this.out.write([encodeJson('OPEN', meta)]);
    const opened = (await p) as FrameBodies['OPENED'];
    return opened;
  }

  /**
   * Digests of chunks [fromChunk, fromChunk+count) as the target will hold them once the delta,
   * as staged so far, is committed. Requests are pipelined; large ranges are split.
   */
  async expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    this.op('expectedDigests');
    const t = this.tracker!;
    const d = t.diskByName(disk);
    const max = this.welcome.maxDigestsPerRequest;
    if (count === 0) return Promise.resolve(Buffer.alloc(0));
    t.checkDigestsRequest(d.index, fromChunk, count, Number.MAX_SAFE_INTEGER);
    const parts: Promise<Buffer>[] = [];
    for (let c = fromChunk; c < fromChunk + count; c += max) {
      const n = Math.min(max, fromChunk + count - c);
      const id = this.nextDigestId;
      this.nextDigestId = (this.nextDigestId + 1) >>> 0 || 1;
      parts.push(
        new Promise<Buffer>((resolve, reject) => this.digestWaiters.push({ id, count: n, resolve, reject })),
      );
      this.out.write([encodeDigestsRequest({ id, disk: d.index, fromChunk: c, count: n })]);
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then((b) => Buffer.concat(b));
  }

  /**
   * Sends data at `offset` (chunk-aligned; the end too, unless it is the disk's end). Larger
   * buffers are split into frames of at most maxExtentBytes. `data` is written without a copy:
   * do not modify it until `onReleased` ran. `chunkDigests`, if given, must be the digests of
   * `data`'s chunks. `onReleased` runs exactly once, whether the call succeeds or not, as soon as
   * the stream holds no reference to `data` any more (every frame written, or none will be): the
   * caller may then reuse the buffer.
   */
  async sendData(
    disk: string,
    offset: number,
    data: Buffer,
    chunkDigests?: Buffer,
    onReleased?: () => void,
  ): Promise<void> {
    // One reference for this call, one per frame until the stream's write callback.
    let refs = 1;
    const drop = () => {
      if (--refs === 0) onReleased?.();
    };
    const hold = () => {
      refs++;
      return drop;
    };
    try {
      this.op('sendData');
      this.sending = true;
      try {
        await this.sendDataFrames(disk, offset, data, chunkDigests, hold);
      } finally {
        this.sending = false;
      }
    } finally {
      drop();
    }
  }

  private async sendDataFrames(
    disk: string,
    offset: number,
    data: Buffer,
    chunkDigests: Buffer | undefined,
    hold: () => () => void,
  ): Promise<void> {
    const t = this.tracker!;
    const d = t.diskByName(disk);
    const C = t.chunkSize;
    if (chunkDigests && chunkDigests.length !== Math.ceil(data.length / C) * 32) {
      throw new HavenError(
        'PROTO_SENDER_MISUSE',
        `chunkDigests has ${chunkDigests.length} bytes for ${data.length}`,
        {
          kind: 'internal',
        },
      );
    }
    // The whole range first, so that a bad call sends nothing at all.
    t.checkExtent({ disk: d.index, kind: 'zero', offset, length: data.length });
    const max = this.maxExtentBytes;
    for (let at = 0; at < data.length; at += max) {
      const piece = data.length <= max ? data : data.subarray(at, Math.min(at + max, data.length));
      const e = { disk: d.index, kind: 'data' as const, offset: offset + at, length: piece.length };
      t.checkExtent(e);
      const root = chunkDigests
        ? rootDigest(t.digest, chunkDigests.subarray((at / C) * 32, Math.ceil((at + piece.length) / C) * 32))
        : extentDigests(t.digest, piece, C).root;
      const packed = this.compressor?.compress(piece) ?? null;
      const payload = packed ?? piece;
      t.accept(e, root);
      this.stats.dataFrames++;
      this.stats.dataBytes += piece.length;
      this.stats.payloadBytes += payload.length;
      this.out.write(
        [
          encodeExtentHead({ ...e, encoding: packed ? 'zstd' : 'raw', digest: root }, payload.length),
          payload,
        ],
        hold(),
      );
      await this.out.ready();
      this.throwIfFailed();
    }
  }

  /** Sends a zero range (a hole); any length inside the disk, one frame. */
  async sendZero(disk: string, offset: number, length: number): Promise<void> {
    this.op('sendZero');
    const t = this.tracker!;
    const e = { disk: t.diskByName(disk).index, kind: 'zero' as const, offset, length };
    t.checkExtent(e);
    t.accept(e);
    this.stats.zeroFrames++;
    this.stats.zeroBytes += length;
    this.out.write([encodeExtentHead({ ...e, encoding: 'raw' }, 0)]);
    this.sending = true;
    try {
      await this.out.ready();
    } finally {
      this.sending = false;
    }
    this.throwIfFailed();
  }

  /**
   * Everything below `offset` on `disk` (and every earlier disk) has been sent. The receiver
   * checkpoints at marks on its cadence and answers with STAGED (see onStaged).
   */
  mark(disk: string, offset: number): void {
    this.op('mark');
    const t = this.tracker!;
    const index = t.diskByName(disk).index;
    t.mark(index, offset);
    this.out.write([encodeMark({ disk: index, offset })]);
  }

  /** Called with the durable watermarks (per disk name) each time the receiver checkpointed. */
  onStaged(cb: (watermarks: Record<string, number>) => void): void {
    this.stagedCallbacks.push(cb);
  }

  /**
   * Ends the delta; resolves once the receiver reports it durable (sealed). `summary` defaults to
   * what the store expects: what the partial delta held when this attempt began (OPENED's
   * resume.staged) plus everything sent since.
   */
  async endDelta(summary?: DeltaSummary, options: EndDeltaOptions = {}): Promise<void> {
    this.op('endDelta');
    const attempt = this.tracker!.totals();
    summary ??= {
      disks: Object.fromEntries(
        Object.entries(attempt.disks).map(([name, a]) => [
          name,
          {
            dataBytes: (this.staged[name]?.dataBytes ?? 0) + a.dataBytes,
            zeroBytes: (this.staged[name]?.zeroBytes ?? 0) + a.zeroBytes,
          },
        ]),
      ),
    };
    const p = this.request('endDelta');
    const imageDigests = options.imageDigests
      ? Object.fromEntries(Object.entries(options.imageDigests).map(([k, v]) => [k, v.toString('hex')]))
      : undefined;
    this.out.write([
      encodeJson('END_DELTA', {
        summary,
        attempt,
        ...(imageDigests ? { imageDigests } : {}),
        ...(options.consistent !== undefined ? { consistent: options.consistent } : {}),
      }),
    ]);
    await p;
  }

  /** Commits the sealed delta; resolves with the new generation once it is committed. */
  async commit(): Promise<Generation> {
    const c = await this.commitAny();
    if (!c.generation) throw protoError('PROTO_BAD_FRAME', 'COMMITTED names no generation');
    return c.generation;
  }

  /** Appends the sealed journal segment; resolves with its record once it is in the journal. */
  async commitSegment(): Promise<SegmentRecord> {
    const c = await this.commitAny();
    if (!c.segment) throw protoError('PROTO_BAD_FRAME', 'COMMITTED names no journal segment');
    return c.segment;
  }

  private async commitAny(): Promise<FrameBodies['COMMITTED']> {
    this.op('commit');
    const p = this.request('commit');
    this.out.write([encodeEmpty('COMMIT')]);
    return (await p) as FrameBodies['COMMITTED'];
  }

  /**
   * Gives up on the open delta without ending the session. `discard: false` keeps what was
   * staged for a later resume; true throws the partial delta away.
   */
  async abort(discard = false): Promise<void> {
    this.op('abort');
    const p = this.request('abort');
    this.out.write([encodeAbort({ discard })]);
    await p;
  }

  /** A host's manifest in the target's store (§4.7), or null when it holds nothing of the host. */
  async hostQuery(host: string): Promise<HostManifest | null> {
    this.op('hostQuery');
    const p = this.request('hostQuery');
    this.out.write([encodeJson('HOST_QUERY', { host })]);
    return ((await p) as FrameBodies['HOST_REPLY']).manifest;
  }

  /** Starts sending a host file (§4.7); its bytes follow with sendFileData, in order. */
  async openFile(meta: HostFileMeta): Promise<string> {
    this.op('openFile');
    const p = this.request('openFile');
    this.fileHasher = createHasher(this.digestAlgorithm);
    this.fileOffset = 0;
    this.out.write([encodeJson('FILE_OPEN', meta)]);
    return ((await p) as FrameBodies['FILE_OPENED']).fileId;
  }

  /**
   * Sends the file's next bytes, in frames of at most maxExtentBytes, without copying them; do
   * not modify `data` until the promise settled. Resolves when the stream has room again.
   */
  async sendFileData(data: Buffer): Promise<void> {
    this.op('sendFileData');
    this.sending = true;
    try {
      const max = this.maxExtentBytes;
      for (let at = 0; at < data.length; at += max) {
        const piece = data.subarray(at, Math.min(at + max, data.length));
        this.fileHasher!.update(piece);
        this.out.write([encodeFileDataHead(this.fileOffset, piece.length), piece]);
        this.fileOffset += piece.length;
        await this.out.ready();
        this.throwIfFailed();
      }
    } finally {
      this.sending = false;
    }
  }

  /** Ends the file with its size and digest; resolves with the generation once it is committed. */
  async endFile(): Promise<HostGeneration> {
    this.op('endFile');
    const p = this.request('endFile');
    const digest = this.fileHasher!.digest().toString('hex');
    this.out.write([encodeJson('FILE_END', { size: this.fileOffset, digest })]);
    return ((await p) as FrameBodies['FILE_COMMITTED']).generation;
  }

  /** Bytes of the open host file sent so far. */
  get fileBytesSent(): number {
    return this.fileOffset;
  }

  /**
   * Ends the session: BYE and its answer when the session is healthy (an open delta is closed
   * unsealed, resumable), then the end of the stream. Never throws.
   */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') {
      await this.out.end();
      return;
    }
    if (
      !this.failure &&
      (this.state === 'ready' || this.state === 'delta' || this.state === 'sealed' || this.state === 'file')
    ) {
      const p = this.request('close');
      this.state = senderOnOp(this.state, 'close');
      this.out.write([encodeEmpty('BYE')]);
      const timer = setTimeout(
        () => this.fail(protoError('PROTO_TIMEOUT', 'no BYE from the receiver'), false),
        30_000,
      );
      await p.catch(() => {});
      clearTimeout(timer);
    } else {
      this.fail(protoError('PROTO_CONNECTION_LOST', 'session closed by the sender'), false);
    }
    await this.out.end();
  }

  /**
   * Ends the session at once (a link that stopped moving): every waiting call rejects with
   * PROTO_CONNECTION_LOST and the stream is destroyed. close() still releases the transport.
   */
  cut(reason: string): void {
    this.fail(protoError('PROTO_CONNECTION_LOST', reason), false);
    this.stream.destroy();
  }

  // -------------------------------------------------------------------------------------------

  private op(op: SenderOp): void {
    this.throwIfFailed();
    if (this.sending && op !== 'expectedDigests') {
      throw new HavenError('PROTO_SENDER_MISUSE', `StreamSender.${op}() while a send is still running`, {
        kind: 'internal',
        hint: 'Await each sendData/sendZero before the next call; frames must go out in order.',
        details: { op },
      });
    }
    this.state = senderOnOp(this.state, op);
  }

  private request(op: SenderOp): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending = { op, resolve, reject };
    });
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      for (const raw of this.decoder.push(chunk)) {
        if ((this.state as SenderState) === 'closed') return;
        this.onFrame(decodeFrame(raw));
      }
    } catch (e) {
      const err = e instanceof HavenError ? e : protoError('PROTO_BAD_FRAME', (e as Error).message);
      this.fail(err, err instanceof ProtocolError);
    }
  }

  private onFrame(frame: Frame): void {
    if (frame.type === 'ERROR') {
      const err = new RemoteError(frame.body, frame.body.fatal, 'receiver');
      const next = senderOnFrame(this.state, 'ERROR', frame.body.fatal);
      if (next === 'closed') {
        this.fail(err, false);
        return;
      }
      this.state = next;
      this.resetDelta();
      this.settle(null, err);
      return;
    }
    const next = senderOnFrame(this.state, frame.type);
    switch (frame.type) {
      case 'WELCOME':
        this.checkWelcome(frame.body);
        this.welcome = frame.body;
        this.lastCapacity = frame.body.capacity ?? null;
        this.state = next;
        this.settle(frame.body);
        return;
      case 'QUERY_REPLY':
        this.lastCapacity = frame.body.capacity ?? this.lastCapacity;
        this.state = next;
        this.settle(frame.body);
        return;
      case 'OPENED': {
        const meta = this.meta!;
        const r = frame.body.resume;
        this.tracker = new DeltaTracker(
          meta.disks,
          this.chunkSize,
          this.digestAlgorithm,
          r && r.pointInTime === meta.pointInTime ? r : null,
          this.maxExtentBytes,
        );
        this.deltaId = frame.body.deltaId;
        this.staged = r?.staged ?? {};
        this.state = next;
        this.settle(frame.body);
        return;
      }
      case 'DIGESTS': {
        const w = this.digestWaiters.shift();
        if (!w || w.id !== frame.body.id || w.count * 32 !== frame.body.digests.length) {
          throw protoError('PROTO_BAD_FRAME', `DIGESTS answer ${frame.body.id} matches no request`, {
            id: frame.body.id,
          });
        }
        this.state = next;
        w.resolve(frame.body.digests);
        return;
      }
      case 'STAGED': {
        const t = this.tracker;
        if (!t || frame.body.watermarks.length !== t.disks.length) {
          throw protoError('PROTO_BAD_FRAME', 'STAGED does not list one watermark per disk');
        }
        const w = t.watermarksByName(frame.body.watermarks);
        this.state = next;
        for (const cb of this.stagedCallbacks) {
          try {
            cb(w);
          } catch (e) {
            this.log.warn(`onStaged callback failed: ${(e as Error).message}`);
          }
        }
        return;
      }
      case 'DELTA_DURABLE':
        if (frame.body.deltaId !== this.deltaId) {
          throw protoError(
            'PROTO_BAD_FRAME',
            `DELTA_DURABLE for delta ${frame.body.deltaId}, not ${this.deltaId}`,
          );
        }
        this.state = next;
        this.settle(null);
        return;
      case 'COMMITTED':
        this.lastCapacity = frame.body.capacity ?? this.lastCapacity;
        this.state = next;
        this.resetDelta();
        this.settle(frame.body);
        return;
      case 'ABORTED':
        this.state = next;
        this.resetDelta();
        this.settle(null);
        return;
      case 'BYE':
        this.state = next;
        this.settle(null);
        return;
      case 'HOST_REPLY':
      case 'FILE_OPENED':
      case 'FILE_COMMITTED':
        this.state = next;
        this.settle(frame.body);
        return;
      default:
        throw protoError('PROTO_UNEXPECTED_FRAME', `${frame.type} frame in sender state ${this.state}`);
    }
  }

  private checkWelcome(w: FrameBodies['WELCOME']): void {
    if (!PROTOCOL_VERSIONS.includes(w.version)) {
      throw protoError('PROTO_VERSION', `receiver chose protocol version ${w.version}`);
    }
    if (this.o.digest && w.digest !== this.o.digest) {
      throw protoError('PROTO_CAPABILITY', `receiver chose ${w.digest} digests, ${this.o.digest} required`);
    }
    if (w.store.digest !== w.digest || w.store.chunkSize % 4096 !== 0) {
      throw protoError('PROTO_BAD_FRAME', 'WELCOME store descriptor disagrees with the session');
    }
  }

  private resetDelta(): void {
    this.tracker = null;
    this.meta = null;
    this.deltaId = null;
    const w = this.digestWaiters;
    this.digestWaiters = [];
    for (const x of w)
      x.reject(protoError('PROTO_CONNECTION_LOST', 'delta ended before the digests arrived'));
  }

  /** Resolves (or rejects) the outstanding request. */
  private settle(value: unknown, err?: HavenError): void {
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    if (err) p.reject(err);
    else p.resolve(value);
  }

  private onStreamError(e: Error): void {
    const err =
      e instanceof HavenError
        ? e
        : new ProtocolError(
            'PROTO_CONNECTION_LOST',
            `connection to the receiver failed: ${e.message}`,
            {},
            e,
          );
    this.fail(err, false);
  }

  private onEnd(): void {
    if (this.state === 'closed') return;
    try {
      this.decoder.end();
      this.fail(
        protoError('PROTO_CONNECTION_LOST', `the receiver closed the connection (state ${this.state})`),
        false,
      );
    } catch (e) {
      this.fail(e as HavenError, false);
    }
  }

  /**
   * Ends the session with `err`: every waiting call rejects with it, later calls throw it. When
   * this end found the fault (`tell`), the receiver gets a fatal ERROR frame first.
   */
  private fail(err: HavenError, tell: boolean): void {
    if (this.failure) return;
    this.failure = err;
    const wasClosing = this.state === 'closing';
    this.state = 'closed';
    if (wasClosing) this.log.debug(`session ended while closing: ${err.message}`);
    else this.log.debug(`session failed: ${err.message}`, { code: err.code });
    if (tell && !this.stream.destroyed && !this.stream.writableEnded) {
      this.out.write([encodeError(err, true)]);
    }
    this.out.fail(err);
    this.settle(null, err);
    const w = this.digestWaiters;
    this.digestWaiters = [];
    for (const x of w) x.reject(err);
    void this.out.end();
  }
}
