/**
 * Small helpers for big-endian wire fields. NBD offsets and sizes are 64-bit; Haven keeps them as
 * JavaScript numbers, which are exact up to 2^53 (8 PiB), far beyond any disk. A value above that
 * cannot be a valid offset and is reported as -1 so callers treat it as out of range.
 */

const TWO_32 = 0x1_0000_0000;
/** Largest high word whose value still fits a safe integer: 2^53 / 2^32 = 2^21. */
const MAX_SAFE_HIGH = 0x1fffff;

export function readU64(buf: Buffer, off: number): number {
  const hi = buf.readUInt32BE(off);
  const lo = buf.readUInt32BE(off + 4);
  if (hi > MAX_SAFE_HIGH) return -1;
  return hi * TWO_32 + lo;
}

export function writeU64(buf: Buffer, value: number, off: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), off);
  buf.writeUInt32BE((value % TWO_32) >>> 0, off + 4);
}

/** Strings on the wire are UTF-8, without NUL, at most 4096 bytes (proto.md "Conventions"). */
export function isValidWireString(bytes: Buffer): boolean {
  return bytes.length <= 4096 && !bytes.includes(0);
}
