/**
 * The index of a staged delta: a log of what arrived, in order. Applying the log in order is
 * idempotent block writes (docs/design.md §4.2 step 3), so a crash mid-apply is repaired by applying it
 * again; a later entry overrides an earlier one for the same chunk (a resumed delta may resend).
 *
 * File: a 16-byte header (magic `HVNDLTA1`, u32 version, u32 zero), then entries. Entry: a 32-byte
 * header (u8 kind 1=data 2=zero, u8 0, u16 disk index, u32 digest count, then offset, length and
 * data-file position as 48-bit little-endian integers each padded to 8 bytes), followed by one
 * 32-byte chunk digest per chunk for data entries. Pure codec: no I/O here.
 */
import { DIGEST_BYTES } from '../../core/digest.ts';
import { invalidFile } from '../errors.ts';

export const INDEX_MAGIC = Buffer.from('HVNDLTA1', 'ascii');
export const INDEX_VERSION = 1;
export const INDEX_HEADER_BYTES = 16;
export const ENTRY_HEADER_BYTES = 32;

export const KIND_DATA = 1;
export const KIND_ZERO = 2;

export interface IndexEntry {
  kind: 'data' | 'zero';
  disk: number;
  offset: number;
  length: number;
  /** Position of the bytes in the data file (data entries; 0 for zero entries). */
  dataPos: number;
  /** One digest per chunk (data entries); empty for zero entries. */
  digests: Buffer;
}

export function encodeIndexHeader(): Buffer {
  const b = Buffer.alloc(INDEX_HEADER_BYTES);
  INDEX_MAGIC.copy(b, 0);
  b.writeUInt32LE(INDEX_VERSION, 8);
  return b;
}

export function checkIndexHeader(buf: Buffer, path: string): void {
  if (buf.length < INDEX_HEADER_BYTES || !buf.subarray(0, 8).equals(INDEX_MAGIC)) {
    throw invalidFile(path, 'bad delta index header');
  }
  if (buf.readUInt32LE(8) !== INDEX_VERSION)
    throw invalidFile(path, `unsupported delta index version ${buf.readUInt32LE(8)}`);
}

export function encodeEntry(e: Omit<IndexEntry, 'digests'> & { digests?: Buffer }): Buffer {
  const digests = e.kind === 'data' ? (e.digests ?? Buffer.alloc(0)) : Buffer.alloc(0);
  const b = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + digests.length);
  b.writeUInt8(e.kind === 'data' ? KIND_DATA : KIND_ZERO, 0);
  b.writeUInt8(0, 1);
  b.writeUInt16LE(e.disk, 2);
  b.writeUInt32LE(digests.length / DIGEST_BYTES, 4);
  b.writeUIntLE(e.offset, 8, 6);
  b.writeUInt16LE(0, 14);
  b.writeUIntLE(e.length, 16, 6);
  b.writeUInt16LE(0, 22);
  b.writeUIntLE(e.dataPos, 24, 6);
  b.writeUInt16LE(0, 30);
  digests.copy(b, ENTRY_HEADER_BYTES);
  return b;
}

/**
 * Incremental decoder: feed it consecutive slices of the entry area; it returns the complete
 * entries and keeps at most one partial entry. `finish()` throws if bytes are left over.
 */
export class IndexDecoder {
  private carry: Buffer = Buffer.alloc(0);
  constructor(private readonly path: string) {}

  push(slice: Buffer): IndexEntry[] {
    const buf = this.carry.length ? Buffer.concat([this.carry, slice]) : slice;
    const out: IndexEntry[] = [];
    let at = 0;
    while (buf.length - at >= ENTRY_HEADER_BYTES) {
      const kindByte = buf.readUInt8(at);
      if ((kindByte !== KIND_DATA && kindByte !== KIND_ZERO) || buf.readUInt8(at + 1) !== 0) {
        throw invalidFile(this.path, `bad delta index entry at byte ${at}`);
      }
      const count = buf.readUInt32LE(at + 4);
      const size = ENTRY_HEADER_BYTES + count * DIGEST_BYTES;
      if (buf.length - at < size) break;
      out.push({
        kind: kindByte === KIND_DATA ? 'data' : 'zero',
        disk: buf.readUInt16LE(at + 2),
        offset: buf.readUIntLE(at + 8, 6),
        length: buf.readUIntLE(at + 16, 6),
        dataPos: buf.readUIntLE(at + 24, 6),
        // Copied: `buf` is the caller's reusable read buffer.
        digests: Buffer.from(buf.subarray(at + ENTRY_HEADER_BYTES, at + size)),
      });
      at += size;
    }
    this.carry = Buffer.from(buf.subarray(at));
    return out;
  }

  finish(): void {
    if (this.carry.length) throw invalidFile(this.path, 'delta index ends in the middle of an entry');
  }
}
