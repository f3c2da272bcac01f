/**
 * Transmission-phase requests (proto.md "Request message"): a 28-byte header, followed by the
 * data for NBD_CMD_WRITE. Cookies ("handles" in older spec text) are 64-bit on the wire; Haven
 * issues them below 2^32, so a reply naming a larger cookie is simply unknown.
 */
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_REQUEST_MAGIC,
  REQUEST_HEADER_SIZE,
} from './constants.ts';
import { protocolError } from './errors.ts';
import { readU64, writeU64 } from './wire.ts';

export interface RequestHeader {
  flags: number;
  command: number;
  cookie: number;
  offset: number;
  length: number;
}

/** Writes a request header into `into` at `at` (default: a fresh 28-byte buffer). */
export function encodeRequest(r: RequestHeader, into?: Buffer, at = 0): Buffer {
  const b = into ?? Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, at);
  b.writeUInt16BE(r.flags, at + 4);
  b.writeUInt16BE(r.command, at + 6);
  writeU64(b, r.cookie, at + 8);
  writeU64(b, r.offset, at + 16);
  b.writeUInt32BE(r.length >>> 0, at + 24);
  return b;
}

/** Decodes a request header (the server's view; used by tests and scripted servers). */
export function decodeRequest(buf: Buffer, at = 0): RequestHeader {
  if (buf.length - at < REQUEST_HEADER_SIZE)
    throw protocolError('NBD_BAD_REQUEST', 'request header is truncated');
  if (buf.readUInt32BE(at) !== NBD_REQUEST_MAGIC)
    throw protocolError('NBD_BAD_MAGIC', 'request has a bad magic');
  return {
    flags: buf.readUInt16BE(at + 4),
    command: buf.readUInt16BE(at + 6),
    cookie: readU64(buf, at + 8),
    offset: readU64(buf, at + 16),
    length: buf.readUInt32BE(at + 24),
  };
}

export function encodeRead(cookie: number, offset: number, length: number, o: { df?: boolean } = {}): Buffer {
  return encodeRequest({ flags: o.df ? NBD_CMD_FLAG_DF : 0, command: NBD_CMD_READ, cookie, offset, length });
}

/** The header only: the caller sends the data right after it (no copy of the payload). */
export function encodeWriteHeader(cookie: number, offset: number, length: number, o: { fua?: boolean } = {}) {
  return encodeFuaRequest(NBD_CMD_WRITE, cookie, offset, length, o);
}

export function encodeWriteZeroes(
  cookie: number,
  offset: number,
  length: number,
  o: { fua?: boolean; noHole?: boolean; fastZero?: boolean } = {},
): Buffer {
  const flags =
    (o.fua ? NBD_CMD_FLAG_FUA : 0) |
    (o.noHole ? NBD_CMD_FLAG_NO_HOLE : 0) |
    (o.fastZero ? NBD_CMD_FLAG_FAST_ZERO : 0);
  return encodeRequest({ flags, command: NBD_CMD_WRITE_ZEROES, cookie, offset, length });
}

/** FLUSH: offset and length are reserved and MUST be zero. */
export function encodeFlush(cookie: number): Buffer {
  return encodeRequest({ flags: 0, command: NBD_CMD_FLUSH, cookie, offset: 0, length: 0 });
}

export function encodeTrim(cookie: number, offset: number, length: number, o: { fua?: boolean } = {}) {
  return encodeFuaRequest(NBD_CMD_TRIM, cookie, offset, length, o);
}

/** WRITE and TRIM know one flag, FUA (proto.md, "Request message" and "Command flags"). */
function encodeFuaRequest(
  command: number,
  cookie: number,
  offset: number,
  length: number,
  o: { fua?: boolean },
): Buffer {
  return encodeRequest({ flags: o.fua ? NBD_CMD_FLAG_FUA : 0, command, cookie, offset, length });
}

export function encodeBlockStatus(
  cookie: number,
  offset: number,
  length: number,
  o: { reqOne?: boolean } = {},
): Buffer {
  return encodeRequest({
    flags: o.reqOne ? NBD_CMD_FLAG_REQ_ONE : 0,
    command: NBD_CMD_BLOCK_STATUS,
    cookie,
    offset,
    length,
  });
}

/** DISC: offset and length MUST be zero, and there is no reply. */
export function encodeDisconnect(cookie: number): Buffer {
  return encodeRequest({ flags: 0, command: NBD_CMD_DISC, cookie, offset: 0, length: 0 });
}
