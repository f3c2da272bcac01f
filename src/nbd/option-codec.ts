/**
 * Codec for the handshake phase (proto.md "Fixed newstyle negotiation", "Option types", "Option
 * reply types"): pure functions over buffers. Client-side encoders and reply parsers are what the
 * handshake uses; the matching decoders and server-side encoders let tests round-trip every
 * message and let a scripted test server speak the protocol.
 */
import {
  NBD_CLISERV_MAGIC,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_INIT_MAGIC,
  NBD_MAX_STRING,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  OPTION_REPLY_HEADER_SIZE,
} from './constants.ts';
import { NbdError, protocolError } from './errors.ts';
import { readU64, writeU64 } from './wire.ts';

export const GREETING_SIZE = 18;
/** Bytes after NBD_OPT_EXPORT_NAME: size, flags, and (without NO_ZEROES) 124 zero bytes. */
export const EXPORT_NAME_REPLY_SIZE = 10;
export const EXPORT_NAME_ZEROES = 124;
/** Largest option reply payload we accept: option replies carry a few strings at most. */
export const MAX_OPTION_REPLY = 64 * 1024;

function badString(what: string, value: string): NbdError {
  return new NbdError(
    'NBD_BAD_NAME',
    `${what} ${JSON.stringify(value.slice(0, 80))} is not a valid NBD string`,
    {
      kind: 'usage',
      connectionUsable: true,
      hint: 'NBD names are UTF-8 without NUL characters and at most 4096 bytes long.',
    },
  );
}

function wireString(what: string, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > NBD_MAX_STRING || bytes.includes(0)) throw badString(what, value);
  return bytes;
}

// ---------------------------------------------------------------- greeting and client flags

export interface Greeting {
  handshakeFlags: number;
}

/** Parses the 18-byte newstyle greeting. Oldstyle and non-NBD peers are protocol errors. */
export function parseGreeting(buf: Buffer): Greeting {
  if (buf.length < GREETING_SIZE) throw protocolError('NBD_BAD_GREETING', 'NBD greeting is truncated');
  const magic = buf.readBigUInt64BE(0);
  if (magic !== NBD_INIT_MAGIC) {
    throw protocolError('NBD_NOT_NBD_SERVER', 'peer is not an NBD server (no NBDMAGIC greeting)', {
      magic: `0x${magic.toString(16)}`,
    });
  }
  const second = buf.readBigUInt64BE(8);
  if (second === NBD_CLISERV_MAGIC) {
    throw protocolError(
      'NBD_OLDSTYLE_SERVER',
      'NBD server speaks only the oldstyle handshake, which Haven does not support',
    );
  }
  if (second !== NBD_OPTS_MAGIC) {
    throw protocolError('NBD_BAD_GREETING', 'NBD greeting has an unknown second magic', {
      magic: `0x${second.toString(16)}`,
    });
  }
  return { handshakeFlags: buf.readUInt16BE(16) };
}

export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_SIZE);
  b.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
  b.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------- option requests (client)

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

/** NBD_OPT_GO / NBD_OPT_INFO data: name length, name, count of info requests, the requests. */
function encodeInfoRequest(option: number, exportName: string, infos: readonly number[]): Buffer {
  const name = wireString('export name', exportName);
  const data = Buffer.alloc(4 + name.length + 2 + 2 * infos.length);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(infos.length, 4 + name.length);
  for (const [i, info] of infos.entries()) data.writeUInt16BE(info, 6 + name.length + 2 * i);
  return encodeOption(option, data);
}

export function encodeGo(exportName: string, infos: readonly number[]): Buffer {
  return encodeInfoRequest(NBD_OPT_GO, exportName, infos);
}

export function encodeInfo(exportName: string, infos: readonly number[]): Buffer {
  return encodeInfoRequest(NBD_OPT_INFO, exportName, infos);
}

export function encodeStructuredReply(): Buffer {
  return encodeOption(NBD_OPT_STRUCTURED_REPLY);
}

export function encodeAbort(): Buffer {
  return encodeOption(NBD_OPT_ABORT);
}

export function encodeExportName(exportName: string): Buffer {
  return encodeOption(NBD_OPT_EXPORT_NAME, wireString('export name', exportName));
}

/** LIST/SET_META_CONTEXT data: export name, number of queries, each query (proto.md). */
function encodeMetaContext(option: number, exportName: string, queries: readonly string[]): Buffer {
  const name = wireString('export name', exportName);
  const qs = queries.map((q) => wireString('meta context', q));
  const data = Buffer.alloc(8 + name.length + qs.reduce((n, q) => n + 4 + q.length, 0));
  let o = data.writeUInt32BE(name.length, 0);
  o += name.copy(data, o);
  o = data.writeUInt32BE(qs.length, o);
  for (const q of qs) {
    o = data.writeUInt32BE(q.length, o);
    o += q.copy(data, o);
  }
  return encodeOption(option, data);
}

export function encodeSetMetaContext(exportName: string, queries: readonly string[]): Buffer {
  return encodeMetaContext(NBD_OPT_SET_META_CONTEXT, exportName, queries);
}

export function encodeListMetaContext(exportName: string, queries: readonly string[]): Buffer {
  return encodeMetaContext(NBD_OPT_LIST_META_CONTEXT, exportName, queries);
}

// ---------------------------------------------------------------- option requests (server view)

export type DecodedOption =
  | { option: typeof NBD_OPT_GO | typeof NBD_OPT_INFO; exportName: string; infos: number[] }
  | {
      option: typeof NBD_OPT_SET_META_CONTEXT | typeof NBD_OPT_LIST_META_CONTEXT;
      exportName: string;
      queries: string[];
    }
  | { option: typeof NBD_OPT_EXPORT_NAME; exportName: string }
  | { option: number; data: Buffer };

/** Length of the complete option request at the start of buf, or undefined if more bytes are needed. */
export function optionRequestLength(buf: Buffer): number | undefined {
  if (buf.length < 16) return undefined;
  const total = 16 + buf.readUInt32BE(12);
  return buf.length >= total ? total : undefined;
}

/** Decodes one complete option request (what a server reads). Throws NBD_BAD_OPTION when malformed. */
export function decodeOption(buf: Buffer): DecodedOption {
  const bad = (why: string) => protocolError('NBD_BAD_OPTION', `malformed option request: ${why}`);
  if (buf.length < 16 || buf.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) throw bad('bad magic');
  const option = buf.readUInt32BE(8);
  const len = buf.readUInt32BE(12);
  if (buf.length !== 16 + len) throw bad('length mismatch');
  const data = buf.subarray(16);
  const str = (start: number, n: number) => {
    if (start + n > data.length) throw bad('string overruns option');
    return data.toString('utf8', start, start + n);
  };
  switch (option) {
    case NBD_OPT_GO:
    case NBD_OPT_INFO: {
      if (data.length < 6) throw bad('too short');
      const n = data.readUInt32BE(0);
      const exportName = str(4, n);
      if (6 + n > data.length) throw bad('too short');
      const count = data.readUInt16BE(4 + n);
      if (data.length !== 6 + n + 2 * count) throw bad('info count mismatch');
      const infos: number[] = [];
      for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + n + 2 * i));
      return { option, exportName, infos };
    }
    case NBD_OPT_SET_META_CONTEXT:
    case NBD_OPT_LIST_META_CONTEXT: {
      if (data.length < 8) throw bad('too short');
      const n = data.readUInt32BE(0);
      const exportName = str(4, n);
      if (8 + n > data.length) throw bad('too short');
      const count = data.readUInt32BE(4 + n);
      const queries: string[] = [];
      let o = 8 + n;
      for (let i = 0; i < count; i++) {
        if (o + 4 > data.length) throw bad('query overruns option');
        const ql = data.readUInt32BE(o);
        queries.push(str(o + 4, ql));
        o += 4 + ql;
      }
      if (o !== data.length) throw bad('trailing bytes');
      return { option, exportName, queries };
    }
    case NBD_OPT_EXPORT_NAME:
      return { option, exportName: data.toString('utf8') };
    default:
      return { option, data: Buffer.from(data) };
  }
}

// ---------------------------------------------------------------- option replies

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

/** Parses the 20-byte option reply header; rejects bad magic and oversized payloads. */
export function parseOptionReplyHeader(buf: Buffer, off = 0): OptionReplyHeader {
  const magic = buf.readBigUInt64BE(off);
  if (magic !== NBD_REP_MAGIC) {
    throw protocolError('NBD_BAD_MAGIC', 'option reply has a bad magic', {
      magic: `0x${magic.toString(16)}`,
    });
  }
  const header = {
    option: buf.readUInt32BE(off + 8),
    type: buf.readUInt32BE(off + 12),
    length: buf.readUInt32BE(off + 16),
  };
  if (header.length > MAX_OPTION_REPLY) {
    throw protocolError(
      'NBD_BAD_REPLY',
      `option reply of ${header.length} bytes is larger than any valid reply`,
      {
        ...header,
      },
    );
  }
  return header;
}

export function encodeOptionReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_SIZE + payload.length);
  b.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(payload.length, 16);
  payload.copy(b, OPTION_REPLY_HEADER_SIZE);
  return b;
}

export type InfoReply =
  | { info: 'export'; size: number; transmissionFlags: number }
  | { info: 'block-size'; minimum: number; preferred: number; maximum: number }
  | { info: 'name'; name: string }
  | { info: 'description'; description: string }
  | { info: 'unknown'; type: number };

/** Parses an NBD_REP_INFO payload (proto.md "NBD_REP_INFO"); lengths are fixed per type. */
export function parseInfoReply(payload: Buffer): InfoReply {
  if (payload.length < 2) throw protocolError('NBD_BAD_REPLY', 'NBD_REP_INFO shorter than its type field');
  const type = payload.readUInt16BE(0);
  switch (type) {
    case NBD_INFO_EXPORT: {
      if (payload.length !== 12)
        throw protocolError('NBD_BAD_REPLY', `NBD_INFO_EXPORT has length ${payload.length}, not 12`);
      const size = readU64(payload, 2);
      if (size < 0) throw protocolError('NBD_BAD_REPLY', 'export size does not fit in 2^53 bytes');
      return { info: 'export', size, transmissionFlags: payload.readUInt16BE(10) };
    }
    case NBD_INFO_BLOCK_SIZE: {
      if (payload.length !== 14)
        throw protocolError('NBD_BAD_REPLY', `NBD_INFO_BLOCK_SIZE has length ${payload.length}, not 14`);
      return {
        info: 'block-size',
        minimum: payload.readUInt32BE(2),
        preferred: payload.readUInt32BE(6),
        maximum: payload.readUInt32BE(10),
      };
    }
    case NBD_INFO_NAME:
      return { info: 'name', name: payload.toString('utf8', 2) };
    case NBD_INFO_DESCRIPTION:
      return { info: 'description', description: payload.toString('utf8', 2) };
    default:
      return { info: 'unknown', type };
  }
}

export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NBD_INFO_EXPORT, 0);
  writeU64(b, size, 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum >>> 0, 2);
  b.writeUInt32BE(preferred >>> 0, 6);
  b.writeUInt32BE(maximum >>> 0, 10);
  return b;
}

export function encodeInfoString(
  type: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION,
  text: string,
): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

export interface MetaContextReply {
  id: number;
  name: string;
}

export function parseMetaContextReply(payload: Buffer): MetaContextReply {
  if (payload.length < 5) throw protocolError('NBD_BAD_REPLY', 'NBD_REP_META_CONTEXT without a context name');
  if (payload.length - 4 > NBD_MAX_STRING)
    throw protocolError('NBD_BAD_REPLY', 'meta context name longer than 4096 bytes');
  return { id: payload.readUInt32BE(0), name: payload.toString('utf8', 4) };
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + s.length);
  b.writeUInt32BE(id >>> 0, 0);
  s.copy(b, 4);
  return b;
}

export interface ExportNameReply {
  size: number;
  transmissionFlags: number;
}

/** The reply to NBD_OPT_EXPORT_NAME: size and flags (the 124 zero bytes are skipped by the caller). */
export function parseExportNameReply(buf: Buffer): ExportNameReply {
  const size = readU64(buf, 0);
  if (size < 0) throw protocolError('NBD_BAD_REPLY', 'export size does not fit in 2^53 bytes');
  return { size, transmissionFlags: buf.readUInt16BE(8) };
}

export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(EXPORT_NAME_REPLY_SIZE + (noZeroes ? 0 : EXPORT_NAME_ZEROES));
  writeU64(b, size, 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}
