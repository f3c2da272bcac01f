/**
 * Server-side encoders for transmission replies: the inverse of ReplyParser. Haven is only an
 * NBD client; these exist so tests can round-trip every reply form and so a scripted server can
 * send exactly the bytes a misbehaving server would.
 */
import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from './constants.ts';
import { writeU64 } from './wire.ts';

export function encodeSimpleReply(cookie: number, errno: number, data?: Buffer): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_HEADER_SIZE + (data?.length ?? 0));
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(errno >>> 0, 4);
  writeU64(b, cookie, 8);
  data?.copy(b, SIMPLE_REPLY_HEADER_SIZE);
  return b;
}

export function encodeChunk(
  cookie: number,
  type: number,
  flags: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const b = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE + payload.length);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  writeU64(b, cookie, 8);
  b.writeUInt32BE(payload.length, 16);
  payload.copy(b, STRUCTURED_REPLY_HEADER_SIZE);
  return b;
}

const doneFlag = (done: boolean) => (done ? NBD_REPLY_FLAG_DONE : 0);

export function encodeNoneChunk(cookie: number): Buffer {
  return encodeChunk(cookie, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE);
}

export function encodeDataChunk(cookie: number, offset: number, data: Buffer, done = false): Buffer {
  const p = Buffer.alloc(8 + data.length);
  writeU64(p, offset, 0);
  data.copy(p, 8);
  return encodeChunk(cookie, NBD_REPLY_TYPE_OFFSET_DATA, doneFlag(done), p);
}

export function encodeHoleChunk(cookie: number, offset: number, length: number, done = false): Buffer {
  const p = Buffer.alloc(12);
  writeU64(p, offset, 0);
  p.writeUInt32BE(length >>> 0, 8);
  return encodeChunk(cookie, NBD_REPLY_TYPE_OFFSET_HOLE, doneFlag(done), p);
}

export function encodeBlockStatusChunk(
  cookie: number,
  contextId: number,
  extents: readonly { length: number; flags: number }[],
  done = false,
): Buffer {
  const p = Buffer.alloc(4 + 8 * extents.length);
  p.writeUInt32BE(contextId >>> 0, 0);
  extents.forEach((e, i) => {
    p.writeUInt32BE(e.length >>> 0, 4 + 8 * i);
    p.writeUInt32BE(e.flags >>> 0, 8 + 8 * i);
  });
  return encodeChunk(cookie, NBD_REPLY_TYPE_BLOCK_STATUS, doneFlag(done), p);
}

export function encodeErrorChunk(cookie: number, errno: number, message = '', done = true): Buffer {
  const m = Buffer.from(message, 'utf8');
  const p = Buffer.alloc(6 + m.length);
  p.writeUInt32BE(errno >>> 0, 0);
  p.writeUInt16BE(m.length, 4);
  m.copy(p, 6);
  return encodeChunk(cookie, NBD_REPLY_TYPE_ERROR, doneFlag(done), p);
}

export function encodeErrorOffsetChunk(
  cookie: number,
  errno: number,
  offset: number,
  message = '',
  done = false,
): Buffer {
  const m = Buffer.from(message, 'utf8');
  const p = Buffer.alloc(14 + m.length);
  p.writeUInt32BE(errno >>> 0, 0);
  p.writeUInt16BE(m.length, 4);
  m.copy(p, 6);
  writeU64(p, offset, 6 + m.length);
  return encodeChunk(cookie, NBD_REPLY_TYPE_ERROR_OFFSET, doneFlag(done), p);
}
