/**
 * Incremental parser for transmission-phase replies: simple replies and structured reply chunks
 * (proto.md "Simple reply message", "Structured reply chunk message", "Structured reply types").
 *
 * It is fed arbitrary slices of the byte stream: one reply may span many slices and one slice may
 * hold many replies. It never buffers read data: payload bytes are handed to the sink as ranges of
 * the slice being parsed (the sink copies them where they belong), or, when the sink offers a
 * view into the destination (`dataTarget`), the socket layer can receive them straight into it
 * (`directView` / `feedDirect`), so the common read path makes no copy in JavaScript at all.
 *
 * The parser checks everything that can be checked from the framing and the request a cookie
 * names: magic, known cookie, chunk type valid for the command, payload lengths, ranges inside the
 * request, block status descriptor counts and sums. Any violation throws an NbdError with
 * connectionUsable=false, and the parser stays broken: further input throws the same error.
 * Per-request bookkeeping that spans chunks (coverage, contexts, completion) is the sink's job.
 */
import {
  commandName,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_READ,
  NBD_MAX_STRING,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from './constants.ts';
import { NbdError, protocolError } from './errors.ts';
import { readU64 } from './wire.ts';

/** What the parser needs to know about the request a cookie names. */
export interface ReplyRequestInfo {
  readonly cookie: number;
  readonly command: number;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
}

export interface ReplySink<R extends ReplyRequestInfo> {
  /** The pending request with this cookie, or undefined if there is none. */
  request(cookie: number): R | undefined;
  /** Read payload: src[start, end) are the export's bytes at `offset`. src is reused after the call. */
  data(req: R, offset: number, src: Buffer, start: number, end: number): void;
  /** A view of the read's destination for `length` bytes at `offset`, for zero-copy receive. */
  dataTarget?(req: R, offset: number, length: number): Buffer | undefined;
  /** `length` bytes at `offset` arrived directly in a view returned by dataTarget. */
  dataPlaced?(req: R, offset: number, length: number): void;
  /** A hole: `length` bytes at `offset` read as zeroes. */
  hole(req: R, offset: number, length: number): void;
  /** One BLOCK_STATUS chunk: descriptors are (length, flags) u32 pairs in desc[start, end). */
  blockStatus(req: R, contextId: number, desc: Buffer, start: number, end: number): void;
  /** An error reply (simple reply error, or an error chunk). */
  error(req: R, errno: number, message: string, errorOffset: number | undefined): void;
  /** The reply to this request is complete (simple reply, or the chunk flagged DONE). */
  done(req: R): void;
}

export interface ReplyParserOptions {
  /** Whether NBD_OPT_STRUCTURED_REPLY was negotiated. */
  structured: boolean;
  /** Largest BLOCK_STATUS chunk accepted (bounds memory; default 64 MiB). */
  maxBlockStatusPayload?: number;
}

enum State {
  Header,
  SimpleData,
  ChunkOffset,
  ChunkData,
  ChunkPayload,
  Broken,
}

/** An error chunk carries errno(4), message length(2), message, and maybe more fields. */
const MAX_ERROR_PAYLOAD = 6 + NBD_MAX_STRING + 64;

export class ReplyParser<R extends ReplyRequestInfo> {
  private state: State = State.Header;
  private readonly hdr = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE);
  private hdrLen = 0;
  private req: R | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  /** Bytes still to come in the current data run / payload / offset field. */
  private remaining = 0;
  /** Export offset of the next data byte. */
  private dataOffset = 0;
  private payload: Buffer = Buffer.alloc(0);
  private payloadLen = 0;
  private chunkLength = 0;
  private readonly offsetField = Buffer.alloc(8);
  private failure: NbdError | undefined;
  private readonly maxBlockStatusPayload: number;

  constructor(
    private readonly sink: ReplySink<R>,
    private readonly options: ReplyParserOptions,
  ) {
    this.maxBlockStatusPayload = options.maxBlockStatusPayload ?? 64 * 1024 * 1024;
  }

  /** True while a reply has been started but not finished (a stream ending now is truncated). */
  get midReply(): boolean {
    return this.state !== State.Header || this.hdrLen > 0;
  }

  get broken(): NbdError | undefined {
    return this.failure;
  }

  /** Parses buf[start, end). Throws an NbdError (connectionUsable=false) on a protocol violation. */
  feed(buf: Buffer, start = 0, end = buf.length): void {
    if (this.failure) throw this.failure;
    try {
      let p = start;
      while (p < end) p = this.step(buf, p, end);
    } catch (e) {
      this.failure = e as NbdError;
      this.state = State.Broken;
      throw e;
    }
  }

  /**
   * While inside read data, a view of the destination where the next bytes can be received
   * directly; undefined otherwise. After receiving n bytes into it, call feedDirect(n).
   */
  directView(): Buffer | undefined {
    if ((this.state !== State.ChunkData && this.state !== State.SimpleData) || !this.sink.dataTarget)
      return undefined;
    return this.sink.dataTarget(this.req!, this.dataOffset, this.remaining);
  }

  /** n bytes arrived in the view from directView(). */
  feedDirect(n: number): void {
    if (this.failure) throw this.failure;
    try {
      if (
        (this.state !== State.ChunkData && this.state !== State.SimpleData) ||
        n > this.remaining ||
        n <= 0
      ) {
        // A bug in the socket layer, not the server's fault; still ends the connection.
        throw new NbdError('NBD_INTERNAL', `direct receive of ${n} bytes outside read data`, {
          kind: 'internal',
          connectionUsable: false,
          hint: 'This is a bug in Haven; please report it with the log file of this run.',
        });
      }
      this.sink.dataPlaced?.(this.req!, this.dataOffset, n);
      this.dataOffset += n;
      this.remaining -= n;
      if (this.remaining === 0) this.endData();
    } catch (e) {
      this.failure = e as NbdError;
      this.state = State.Broken;
      throw e;
    }
  }

  private step(buf: Buffer, p: number, end: number): number {
    switch (this.state) {
      case State.Header:
        return this.stepHeader(buf, p, end);
      case State.SimpleData:
      case State.ChunkData: {
        const n = Math.min(this.remaining, end - p);
        this.sink.data(this.req!, this.dataOffset, buf, p, p + n);
        this.dataOffset += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endData();
        return p + n;
      }
      case State.ChunkOffset: {
        const n = Math.min(this.remaining, end - p);
        buf.copy(this.offsetField, 8 - this.remaining, p, p + n);
        this.remaining -= n;
        if (this.remaining === 0) this.startChunkData();
        return p + n;
      }
      case State.ChunkPayload: {
        const n = Math.min(this.remaining, end - p);
        if (this.payloadLen === 0 && n === this.remaining) {
          // Whole payload in this slice: parse it in place.
          this.remaining = 0;
          this.endPayload(buf, p);
          return p + n;
        }
        buf.copy(this.payload, this.payloadLen, p, p + n);
        this.payloadLen += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endPayload(this.payload, 0);
        return p + n;
      }
      default:
        throw this.failure ?? protocolError('NBD_BAD_REPLY', 'reply parser is broken');
    }
  }

  private stepHeader(buf: Buffer, p: number, end: number): number {
    // Fast path: a whole header at hand, parse it in place.
    if (this.hdrLen === 0 && end - p >= 4) {
      const magic = buf.readUInt32BE(p);
      const size = this.headerSize(magic);
      if (end - p >= size) {
        this.onHeader(buf, p, magic);
        return p + size;
      }
    }
    const want = this.hdrLen < 4 ? 4 : this.headerSize(this.hdr.readUInt32BE(0));
    const n = Math.min(want - this.hdrLen, end - p);
    buf.copy(this.hdr, this.hdrLen, p, p + n);
    this.hdrLen += n;
    if (this.hdrLen === want && want > 4) {
      this.hdrLen = 0;
      this.onHeader(this.hdr, 0, this.hdr.readUInt32BE(0));
    } else if (this.hdrLen === 4) {
      this.headerSize(this.hdr.readUInt32BE(0)); // validates the magic as soon as it is known
    }
    return p + n;
  }

  private headerSize(magic: number): number {
    if (magic === NBD_SIMPLE_REPLY_MAGIC) return SIMPLE_REPLY_HEADER_SIZE;
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) return STRUCTURED_REPLY_HEADER_SIZE;
    throw protocolError('NBD_BAD_MAGIC', `reply has a bad magic 0x${magic.toString(16).padStart(8, '0')}`, {
      magic,
    });
  }

  private lookup(src: Buffer, at: number): R {
    const hi = src.readUInt32BE(at);
    const lo = src.readUInt32BE(at + 4);
    const req = hi === 0 ? this.sink.request(lo) : undefined;
    if (!req) {
      throw protocolError(
        'NBD_UNKNOWN_COOKIE',
        `reply names cookie ${hi === 0 ? lo : `${hi}:${lo}`}, which no pending request has`,
        {
          cookie: hi === 0 ? lo : `${hi}:${lo}`,
        },
      );
    }
    return req;
  }

  private onHeader(src: Buffer, at: number, magic: number): void {
    if (magic === NBD_SIMPLE_REPLY_MAGIC) this.onSimpleHeader(src, at);
    else this.onChunkHeader(src, at);
  }

  private onSimpleHeader(src: Buffer, at: number): void {
    const errno = src.readUInt32BE(at + 4);
    const req = this.lookup(src, at + 8);
    const cmd = commandName(req.command);
    // With structured replies negotiated, READ MUST get a structured reply (proto.md), and
    // BLOCK_STATUS always needs one.
    if (req.command === NBD_CMD_READ && this.options.structured) {
      throw protocolError(
        'NBD_BAD_REPLY',
        'simple reply to READ although structured replies were negotiated',
      );
    }
    if (errno !== 0) {
      this.sink.error(req, errno, '', undefined);
      this.sink.done(req);
      return;
    }
    if (req.command === NBD_CMD_BLOCK_STATUS) {
      throw protocolError(
        'NBD_BAD_REPLY',
        `successful simple reply to ${cmd}, which needs a structured reply`,
      );
    }
    if (req.command === NBD_CMD_READ && req.length > 0) {
      this.req = req;
      this.dataOffset = req.offset;
      this.remaining = req.length;
      this.state = State.SimpleData;
      return;
    }
    this.sink.done(req);
  }

  private onChunkHeader(src: Buffer, at: number): void {
    const flags = src.readUInt16BE(at + 4);
    const type = src.readUInt16BE(at + 6);
    const req = this.lookup(src, at + 8);
    const length = src.readUInt32BE(at + 16);
    if (!this.options.structured) {
      throw protocolError(
        'NBD_BAD_REPLY',
        'structured reply chunk although structured replies were not negotiated',
      );
    }
    const cmd = commandName(req.command);
    const bad = (why: string) =>
      protocolError('NBD_BAD_REPLY', `bad reply chunk (type ${type}, length ${length}) for ${cmd}: ${why}`, {
        type,
        length,
        command: cmd,
      });
    this.req = req;
    this.chunkFlags = flags;
    this.chunkType = type;
    switch (type) {
      case NBD_REPLY_TYPE_NONE:
        if (length !== 0) throw bad('NONE chunk with a payload');
        if (!(flags & NBD_REPLY_FLAG_DONE)) throw bad('NONE chunk without the DONE flag');
        this.sink.done(req);
        return;
      case NBD_REPLY_TYPE_OFFSET_DATA:
        if (req.command !== NBD_CMD_READ) throw bad('data chunk for a request that is not a read');
        if (length < 9) throw bad('data chunk shorter than 9 bytes');
        this.remaining = 8;
        this.payloadLen = length - 8;
        this.state = State.ChunkOffset;
        return;
      case NBD_REPLY_TYPE_OFFSET_HOLE:
        if (req.command !== NBD_CMD_READ) throw bad('hole chunk for a request that is not a read');
        if (length !== 12) throw bad('hole chunk length is not 12');
        this.startPayload(length);
        return;
      case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (req.command !== NBD_CMD_BLOCK_STATUS)
          throw bad('block status chunk for a request that is not BLOCK_STATUS');
        if (length < 12 || (length - 4) % 8 !== 0) throw bad('block status length is not 4 + 8n with n >= 1');
        if (length > this.maxBlockStatusPayload)
          throw bad(`block status chunk exceeds ${this.maxBlockStatusPayload} bytes`);
        this.startPayload(length);
        return;
      default:
        if (!(type & NBD_REPLY_TYPE_ERROR_BIT)) throw bad('unknown chunk type');
        if (length < 6) throw bad('error chunk shorter than 6 bytes');
        if (length > MAX_ERROR_PAYLOAD) throw bad('error chunk longer than any valid error');
        this.startPayload(length);
        return;
    }
  }

  private startPayload(length: number): void {
    if (this.payload.length < length) this.payload = Buffer.alloc(Math.max(length, 64));
    this.payloadLen = 0;
    this.remaining = length;
    this.chunkLength = length;
    this.state = State.ChunkPayload;
  }

  private startChunkData(): void {
    const req = this.req!;
    const offset = readU64(this.offsetField, 0);
    const length = this.payloadLen;
    this.payloadLen = 0;
    this.checkInside(req, offset, length, 'data chunk');
    this.dataOffset = offset;
    this.remaining = length;
    this.state = State.ChunkData;
  }

  private checkInside(req: R, offset: number, length: number, what: string): void {
    if (offset < req.offset || offset < 0 || offset + length > req.offset + req.length) {
      throw protocolError(
        'NBD_REPLY_OVERRUN',
        `${what} [${offset}, +${length}) lies outside its ${commandName(req.command)} request [${req.offset}, +${req.length})`,
        { offset, length, requestOffset: req.offset, requestLength: req.length },
      );
    }
  }

  private endData(): void {
    const req = this.req!;
    const simple = this.state === State.SimpleData;
    this.state = State.Header;
    this.req = undefined;
    if (simple || this.chunkFlags & NBD_REPLY_FLAG_DONE) this.sink.done(req);
  }

  private endPayload(src: Buffer, at: number): void {
    const req = this.req!;
    const length = this.chunkLength;
    this.state = State.Header;
    this.req = undefined;
    const type = this.chunkType;
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      const offset = readU64(src, at);
      const size = src.readUInt32BE(at + 8);
      if (size === 0) throw protocolError('NBD_BAD_REPLY', 'hole chunk with a zero size');
      this.checkInside(req, offset, size, 'hole chunk');
      this.sink.hole(req, offset, size);
    } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      this.onBlockStatus(req, src, at, length);
    } else {
      this.onErrorChunk(req, src, at, length, type);
    }
    if (this.chunkFlags & NBD_REPLY_FLAG_DONE) this.sink.done(req);
  }

  private onBlockStatus(req: R, src: Buffer, at: number, length: number): void {
    const contextId = src.readUInt32BE(at);
    const count = (length - 4) / 8;
    const reqOne = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0;
    if (reqOne && count !== 1) {
      throw protocolError('NBD_BAD_REPLY', `block status with REQ_ONE returned ${count} descriptors`);
    }
    // proto.md: "the sum of the length fields of the first N-1 extents (if any) MUST be less than
    // the requested length", and with REQ_ONE the single extent MUST NOT exceed it.
    let sum = 0;
    for (let i = 0; i < count; i++) {
      const len = src.readUInt32BE(at + 4 + 8 * i);
      if (len === 0) throw protocolError('NBD_BAD_REPLY', 'block status descriptor with length 0');
      if (i < count - 1 || reqOne) {
        sum += len;
        if (sum > req.length || (i < count - 1 && sum >= req.length)) {
          throw protocolError(
            'NBD_REPLY_OVERRUN',
            `block status describes more than the ${req.length} bytes asked for`,
            {
              requestLength: req.length,
            },
          );
        }
      }
    }
    this.sink.blockStatus(req, contextId, src, at + 4, at + length);
  }

  private onErrorChunk(req: R, src: Buffer, at: number, length: number, type: number): void {
    const errno = src.readUInt32BE(at);
    const msgLen = src.readUInt16BE(at + 4);
    if (6 + msgLen > length) {
      throw protocolError('NBD_BAD_REPLY', 'error chunk message is longer than the chunk');
    }
    const message = src.toString('utf8', at + 6, at + 6 + msgLen);
    let errorOffset: number | undefined;
    // ERROR_OFFSET is valid for commands that address a range; for others it is an "unexpected
    // error type" that still errors the request (proto.md).
    if (type === NBD_REPLY_TYPE_ERROR_OFFSET && req.length > 0) {
      if (length !== 14 + msgLen)
        throw protocolError('NBD_BAD_REPLY', 'error-offset chunk has the wrong length');
      errorOffset = readU64(src, at + 6 + msgLen);
      this.checkInside(req, errorOffset, 1, 'error offset');
    }
    this.sink.error(req, errno, message, errorOffset);
  }
}
