/**
 * The pure codec of the replication stream: frames to bytes and bytes to frames, no I/O.
 *
 * Every frame is an 8-byte header (magic "HV", type, flags = 0, body length; big-endian like
 * every integer on the wire) and a body. Control frames carry JSON; the frames that flow per
 * extent (EXTENT, MARK, STAGED, DIGESTS_REQ, DIGESTS) are fixed binary layouts so the data path
 * never builds or parses JSON (docs/stream-protocol.md §3–4).
 *
 * `FrameDecoder` takes arbitrary slices of the byte stream and yields whole frames; a frame that
 * arrived in one slice is returned as a view of that slice, without a copy.
 */
import type { z } from 'zod';
import type { HavenError } from '../core/errors.ts';
import { ProtocolError, protoError } from './errors.ts';
import {
  BODY_LIMITS,
  EXTENT_DATA_HEADER_BYTES,
  EXTENT_FIXED_BYTES,
  type ExtentFrame,
  FILE_DATA_HEADER_BYTES,
  FRAME,
  type Frame,
  type FrameBodies,
  type FrameName,
  frameName,
  HEADER_BYTES,
  MAGIC,
  MAX_EXTENT_BYTES,
} from './frames.ts';
import {
  fileCommittedSchema,
  fileEndSchema,
  fileOpenedSchema,
  fileOpenSchema,
  hostQuerySchema,
  hostReplySchema,
} from './host-file-schemas.ts';
import {
  committedSchema,
  deltaDurableSchema,
  deltaMetaSchema,
  endDeltaSchema,
  errorSchema,
  helloSchema,
  openedSchema,
  queryReplySchema,
  querySchema,
  welcomeSchema,
} from './schemas.ts';

const TWO_32 = 2 ** 32;
/** Largest high word of a u64 that still makes a safe integer. */
const MAX_SAFE_HIGH = 2 ** 21 - 1;

export function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

export function readU64(buf: Buffer, at: number, what: string): number {
  const high = buf.readUInt32BE(at);
  if (high > MAX_SAFE_HIGH) throw protoError('PROTO_BAD_FRAME', `${what} is beyond 2^53`, { what });
  return high * TWO_32 + buf.readUInt32BE(at + 4);
}

/** Writes a frame header into `buf` at `at`. */
export function writeHeader(buf: Buffer, type: FrameName, bodyLength: number, at = 0): void {
  buf.writeUInt16BE(MAGIC, at);
  buf.writeUInt8(FRAME[type], at + 2);
  buf.writeUInt8(0, at + 3);
  buf.writeUInt32BE(bodyLength, at + 4);
}

// ---------------------------------------------------------------------------------------------
// Encoding

type JsonFrameName =
  | 'HELLO'
  | 'WELCOME'
  | 'QUERY'
  | 'QUERY_REPLY'
  | 'OPEN'
  | 'OPENED'
  | 'END_DELTA'
  | 'DELTA_DURABLE'
  | 'COMMITTED'
  | 'ERROR'
  | 'HOST_QUERY'
  | 'HOST_REPLY'
  | 'FILE_OPEN'
  | 'FILE_OPENED'
  | 'FILE_END'
  | 'FILE_COMMITTED';

export function encodeJson<K extends JsonFrameName>(type: K, body: FrameBodies[K]): Buffer {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  if (json.length > BODY_LIMITS[type].max) {
    throw protoError('PROTO_FRAME_TOO_LARGE', `${type} body of ${json.length} bytes is too large`, {
      frame: type,
      bytes: json.length,
    });
  }
  const out = Buffer.allocUnsafe(HEADER_BYTES + json.length);
  writeHeader(out, type, json.length);
  json.copy(out, HEADER_BYTES);
  return out;
}

/**
 * The ERROR frame telling the peer why this side stops (fatal) or refuses one request. The
 * message is cut to what the frame allows; details go along only where the caller says they
 * help the peer (the receiver's refusals), and only what JSON can carry.
 */
export function encodeError(err: HavenError, fatal: boolean, withDetails = false): Buffer {
  return encodeJson('ERROR', {
    code: err.code,
    kind: err.kind,
    message: err.message.slice(0, 8000),
    ...(err.hint ? { hint: err.hint } : {}),
    ...(withDetails && err.details ? { details: jsonSafe(err.details) } : {}),
    fatal,
  });
}

function jsonSafe(v: Record<string, unknown>): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(v)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

export function encodeEmpty(type: 'COMMIT' | 'ABORTED' | 'BYE'): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES);
  writeHeader(out, type, 0);
  return out;
}

export function encodeAbort(body: FrameBodies['ABORT']): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 1);
  writeHeader(out, 'ABORT', 1);
  out.writeUInt8(body.discard ? 1 : 0, HEADER_BYTES);
  return out;
}

export function encodeDigestsRequest(r: FrameBodies['DIGESTS_REQ']): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 16);
  writeHeader(out, 'DIGESTS_REQ', 16);
  out.writeUInt32BE(r.id, 8);
  out.writeUInt16BE(r.disk, 12);
  out.writeUInt16BE(0, 14);
  out.writeUInt32BE(r.fromChunk, 16);
  out.writeUInt32BE(r.count, 20);
  return out;
}

/** Header and id/count of a DIGESTS answer; the digests follow as a second buffer. */
export function encodeDigestsHead(id: number, digestBytes: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 8);
  writeHeader(out, 'DIGESTS', 8 + digestBytes);
  out.writeUInt32BE(id, 8);
  out.writeUInt32BE(digestBytes / 32, 12);
  return out;
}

export function encodeMark(m: FrameBodies['MARK']): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 12);
  writeHeader(out, 'MARK', 12);
  out.writeUInt16BE(m.disk, 8);
  out.writeUInt16BE(0, 10);
  writeU64(out, m.offset, 12);
  return out;
}

export function encodeStaged(s: FrameBodies['STAGED']): Buffer {
  const n = s.watermarks.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + 4 + 8 * n);
  writeHeader(out, 'STAGED', 4 + 8 * n);
  out.writeUInt16BE(n, 8);
  out.writeUInt16BE(0, 10);
  for (let i = 0; i < n; i++) writeU64(out, s.watermarks[i]!, 12 + 8 * i);
  return out;
}

/**
 * Frame header plus the fixed part of an EXTENT body (and the digest, for data). The payload is
 * written after it as its own buffer, so the data is never copied into a frame.
 */
export function encodeExtentHead(e: Omit<ExtentFrame, 'payload'>, payloadLength: number): Buffer {
  const data = e.kind === 'data';
  const fixed = data ? EXTENT_DATA_HEADER_BYTES : EXTENT_FIXED_BYTES;
  const out = Buffer.allocUnsafe(HEADER_BYTES + fixed);
  writeHeader(out, 'EXTENT', fixed + (data ? payloadLength : 0));
  writeExtentFields(out, HEADER_BYTES, e);
  if (data) {
    if (e.digest?.length !== 32) throw new TypeError('data extent needs a 32-byte digest');
    e.digest.copy(out, HEADER_BYTES + EXTENT_FIXED_BYTES);
  }
  return out;
}

/** Frame header plus the offset of a FILE_DATA body; the payload follows as its own buffer. */
export function encodeFileDataHead(offset: number, payloadLength: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + FILE_DATA_HEADER_BYTES);
  writeHeader(out, 'FILE_DATA', FILE_DATA_HEADER_BYTES + payloadLength);
  writeU64(out, offset, HEADER_BYTES);
  return out;
}

/** The 20 bytes that identify an extent (disk, kind, encoding, offset, length). */
export function writeExtentFields(out: Buffer, at: number, e: Omit<ExtentFrame, 'payload' | 'digest'>): void {
  out.writeUInt16BE(e.disk, at);
  out.writeUInt8(e.kind === 'data' ? 0 : 1, at + 2);
  out.writeUInt8(e.encoding === 'zstd' ? 1 : 0, at + 3);
  writeU64(out, e.offset, at + 4);
  writeU64(out, e.length, at + 12);
}

/** Encodes any frame (the data path uses the specialised encoders above directly). */
export function encodeFrame(frame: Frame): Buffer[] {
  switch (frame.type) {
    case 'COMMIT':
    case 'ABORTED':
    case 'BYE':
      return [encodeEmpty(frame.type)];
    case 'ABORT':
      return [encodeAbort(frame.body)];
    case 'DIGESTS_REQ':
      return [encodeDigestsRequest(frame.body)];
    case 'DIGESTS':
      return [encodeDigestsHead(frame.body.id, frame.body.digests.length), frame.body.digests];
    case 'MARK':
      return [encodeMark(frame.body)];
    case 'STAGED':
      return [encodeStaged(frame.body)];
    case 'FILE_DATA':
      return [encodeFileDataHead(frame.body.offset, frame.body.payload.length), frame.body.payload];
    case 'EXTENT': {
      const payload = frame.body.payload ?? Buffer.alloc(0);
      const head = encodeExtentHead(frame.body, payload.length);
      return frame.body.kind === 'data' ? [head, payload] : [head];
    }
    default:
      return [encodeJson(frame.type, frame.body as never)];
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

export interface RawFrame {
  type: FrameName;
  body: Buffer;
}

/**
 * Incremental framing. Feed it slices of the stream in order; it returns the frames completed by
 * each slice. Header errors (bad magic, unknown type, flags, body length out of bounds) are found
 * before the body is buffered, so a hostile length never makes it allocate. After an error the
 * decoder stays failed: the stream has lost its framing.
 */
export interface DecoderOptions {
  /**
   * Provides the buffer a frame body is assembled in when it spans several slices (default: a
   * new buffer per frame). The receiver passes reusable buffers for data extents.
   */
  allocBody?: (type: FrameName, length: number) => Buffer;
  /**
   * Copy every body out of the pushed chunk, never return a view of it, so the caller may reuse
   * the chunk's memory as soon as push() returns.
   */
  copyBodies?: boolean;
}

export class FrameDecoder {
  private readonly head = Buffer.alloc(HEADER_BYTES);
  private headFill = 0;
  private type: FrameName | null = null;
  private body: Buffer | null = null;
  private bodyLength = 0;
  private bodyFill = 0;
  private failed: ProtocolError | null = null;
  /** Bytes taken in so far. */
  bytesIn = 0;

  constructor(private readonly o: DecoderOptions = {}) {}

  /** True while a frame has been started but not completed. */
  get midFrame(): boolean {
    return this.headFill > 0 || this.type !== null;
  }

  push(chunk: Buffer): RawFrame[] {
    if (this.failed) throw this.failed;
    this.bytesIn += chunk.length;
    const out: RawFrame[] = [];
    let pos = 0;
    try {
      while (pos < chunk.length) {
        if (this.type === null) {
          if (this.headFill === 0 && chunk.length - pos >= HEADER_BYTES) {
            this.startFrame(chunk, pos);
            pos += HEADER_BYTES;
          } else {
            const n = Math.min(HEADER_BYTES - this.headFill, chunk.length - pos);
            chunk.copy(this.head, this.headFill, pos, pos + n);
            this.headFill += n;
            pos += n;
            if (this.headFill < HEADER_BYTES) break;
            this.startFrame(this.head, 0);
          }
          if (this.bodyLength === 0) {
            out.push({ type: this.type!, body: Buffer.alloc(0) });
            this.reset();
            continue;
          }
        }
        const want = this.bodyLength - this.bodyFill;
        if (this.body === null && chunk.length - pos >= want && !this.o.copyBodies) {
          out.push({ type: this.type!, body: chunk.subarray(pos, pos + want) });
          pos += want;
          this.reset();
          continue;
        }
        this.body ??= this.o.allocBody?.(this.type!, this.bodyLength) ?? Buffer.allocUnsafe(this.bodyLength);
        const n = Math.min(want, chunk.length - pos);
        chunk.copy(this.body, this.bodyFill, pos, pos + n);
        this.bodyFill += n;
        pos += n;
        if (this.bodyFill === this.bodyLength) {
          out.push({ type: this.type!, body: this.body });
          this.reset();
        }
      }
    } catch (e) {
      this.failed = e instanceof ProtocolError ? e : protoError('PROTO_BAD_FRAME', String(e));
      throw this.failed;
    }
    return out;
  }

  /** The stream ended: fine between frames, PROTO_TRUNCATED inside one. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.midFrame) {
      this.failed = protoError('PROTO_TRUNCATED', 'the stream ended inside a frame', {
        frame: this.type,
        have: this.type === null ? this.headFill : this.bodyFill,
        want: this.type === null ? HEADER_BYTES : this.bodyLength,
      });
      throw this.failed;
    }
  }

  private startFrame(buf: Buffer, at: number): void {
    const magic = buf.readUInt16BE(at);
    if (magic !== MAGIC) {
      throw protoError('PROTO_BAD_MAGIC', `bad frame magic 0x${magic.toString(16).padStart(4, '0')}`, {
        offset: this.bytesIn,
      });
    }
    const code = buf.readUInt8(at + 2);
    const type = frameName(code);
    if (!type) throw protoError('PROTO_UNKNOWN_FRAME', `unknown frame type 0x${code.toString(16)}`, { code });
    const flags = buf.readUInt8(at + 3);
    if (flags !== 0)
      throw protoError('PROTO_BAD_FRAME', `${type} frame with flags ${flags}`, { frame: type, flags });
    const length = buf.readUInt32BE(at + 4);
    const limits = BODY_LIMITS[type];
    if (length > limits.max) {
      throw protoError('PROTO_FRAME_TOO_LARGE', `${type} frame of ${length} bytes (at most ${limits.max})`, {
        frame: type,
        bytes: length,
        max: limits.max,
      });
    }
    if (length < limits.min) {
      throw protoError('PROTO_BAD_FRAME', `${type} frame of ${length} bytes (at least ${limits.min})`, {
        frame: type,
        bytes: length,
      });
    }
    this.type = type;
    this.bodyLength = length;
    this.bodyFill = 0;
    this.body = null;
  }

  private reset(): void {
    this.type = null;
    this.headFill = 0;
    this.body = null;
    this.bodyLength = 0;
    this.bodyFill = 0;
  }
}

function parseJson<T>(type: FrameName, body: Buffer, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw protoError('PROTO_BAD_FRAME', `${type} body is not JSON: ${(e as Error).message}`, { frame: type });
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : '(body)';
    throw protoError('PROTO_BAD_FRAME', `${type} body is invalid at ${where}: ${issue?.message}`, {
      frame: type,
      path: where,
    });
  }
  return r.data;
}

function checkLength(type: FrameName, body: Buffer, want: number): void {
  if (body.length !== want) {
    throw protoError('PROTO_BAD_FRAME', `${type} body of ${body.length} bytes (want ${want})`, {
      frame: type,
    });
  }
}

function checkReserved(type: FrameName, value: number): void {
  if (value !== 0) throw protoError('PROTO_BAD_FRAME', `${type} reserved field is ${value}`, { frame: type });
}

export function decodeExtent(body: Buffer): ExtentFrame {
  const disk = body.readUInt16BE(0);
  const kindByte = body.readUInt8(2);
  const encByte = body.readUInt8(3);
  if (kindByte > 1) throw protoError('PROTO_BAD_FRAME', `EXTENT kind ${kindByte}`, { frame: 'EXTENT' });
  if (encByte > 1) throw protoError('PROTO_BAD_FRAME', `EXTENT encoding ${encByte}`, { frame: 'EXTENT' });
  const offset = readU64(body, 4, 'EXTENT offset');
  const length = readU64(body, 12, 'EXTENT length');
  if (length === 0) throw protoError('PROTO_BAD_RANGE', 'EXTENT of length 0', { disk, offset });
  if (kindByte === 1) {
    if (encByte !== 0) throw protoError('PROTO_BAD_FRAME', 'zero EXTENT with an encoding', { disk, offset });
    checkLength('EXTENT', body, EXTENT_FIXED_BYTES);
    return { disk, kind: 'zero', encoding: 'raw', offset, length };
  }
  if (body.length <= EXTENT_DATA_HEADER_BYTES) {
    throw protoError('PROTO_BAD_FRAME', 'data EXTENT without payload', { disk, offset });
  }
  if (length > MAX_EXTENT_BYTES) {
    throw protoError(
      'PROTO_FRAME_TOO_LARGE',
      `data EXTENT of ${length} bytes (at most ${MAX_EXTENT_BYTES})`,
      {
        disk,
        offset,
        length,
      },
    );
  }
  const payload = body.subarray(EXTENT_DATA_HEADER_BYTES);
  if (encByte === 0 && payload.length !== length) {
    throw protoError(
      'PROTO_BAD_FRAME',
      `raw EXTENT payload of ${payload.length} bytes for length ${length}`,
      {
        disk,
        offset,
      },
    );
  }
  return {
    disk,
    kind: 'data',
    encoding: encByte === 1 ? 'zstd' : 'raw',
    offset,
    length,
    digest: body.subarray(EXTENT_FIXED_BYTES, EXTENT_DATA_HEADER_BYTES),
    payload,
  };
}

/** Each JSON frame's schema: the body a peer sends is checked against it before anything reads it. */
const JSON_BODIES: { [K in JsonFrameName]: z.ZodType } = {
  HELLO: helloSchema,
  WELCOME: welcomeSchema,
  QUERY: querySchema,
  QUERY_REPLY: queryReplySchema,
  OPEN: deltaMetaSchema,
  OPENED: openedSchema,
  END_DELTA: endDeltaSchema,
  DELTA_DURABLE: deltaDurableSchema,
  COMMITTED: committedSchema,
  ERROR: errorSchema,
  HOST_QUERY: hostQuerySchema,
  HOST_REPLY: hostReplySchema,
  FILE_OPEN: fileOpenSchema,
  FILE_OPENED: fileOpenedSchema,
  FILE_END: fileEndSchema,
  FILE_COMMITTED: fileCommittedSchema,
};

function isJsonFrame(type: FrameName): type is JsonFrameName {
  return Object.hasOwn(JSON_BODIES, type);
}

/** Parses and validates a frame body. Throws ProtocolError, never anything else. */
export function decodeFrame(raw: RawFrame): Frame {
  const { type, body } = raw;
  try {
    if (isJsonFrame(type)) return { type, body: parseJson(type, body, JSON_BODIES[type]) } as Frame;
    switch (type) {
      case 'COMMIT':
      case 'ABORTED':
      case 'BYE':
        checkLength(type, body, 0);
        return { type, body: null };
      case 'ABORT': {
        checkLength(type, body, 1);
        const v = body.readUInt8(0);
        if (v > 1) throw protoError('PROTO_BAD_FRAME', `ABORT flag ${v}`, { frame: type });
        return { type, body: { discard: v === 1 } };
      }
      case 'DIGESTS_REQ': {
        checkLength(type, body, 16);
        checkReserved(type, body.readUInt16BE(6));
        return {
          type,
          body: {
            id: body.readUInt32BE(0),
            disk: body.readUInt16BE(4),
            fromChunk: body.readUInt32BE(8),
            count: body.readUInt32BE(12),
          },
        };
      }
      case 'DIGESTS': {
        const count = body.readUInt32BE(4);
        checkLength(type, body, 8 + count * 32);
        return { type, body: { id: body.readUInt32BE(0), digests: body.subarray(8) } };
      }
      case 'MARK': {
        checkLength(type, body, 12);
        checkReserved(type, body.readUInt16BE(2));
        return { type, body: { disk: body.readUInt16BE(0), offset: readU64(body, 4, 'MARK offset') } };
      }
      case 'STAGED': {
        const n = body.readUInt16BE(0);
        checkReserved(type, body.readUInt16BE(2));
        checkLength(type, body, 4 + 8 * n);
        const watermarks: number[] = [];
        for (let i = 0; i < n; i++) watermarks.push(readU64(body, 4 + 8 * i, 'STAGED watermark'));
        return { type, body: { watermarks } };
      }
      case 'EXTENT':
        return { type, body: decodeExtent(body) };
      case 'FILE_DATA':
        return {
          type,
          body: {
            offset: readU64(body, 0, 'FILE_DATA offset'),
            payload: body.subarray(FILE_DATA_HEADER_BYTES),
          },
        };
    }
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw protoError('PROTO_BAD_FRAME', `${type} body is malformed: ${(e as Error).message}`, {
      frame: type,
    });
  }
}
