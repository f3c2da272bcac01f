/**
 * The read side of a transfer: a piece of several MiB is read into one pooled buffer as NBD
 * requests of at most `requestBytes`, all in flight together (the server's maximum request
 * size bounds each; proto.md "Request message").
 */
import type { NbdClient } from '../nbd/index.ts';
import type { BufferPool } from '../protocol/index.ts';

/** Reads [offset, offset + length) into a buffer from `pool`. */
export function pooledReader(
  client: Pick<NbdClient, 'readInto'>,
  pool: BufferPool,
  requestBytes: number,
): (offset: number, length: number) => Promise<Buffer> {
  return async (offset, length) => {
    const buf = pool.take(length);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += requestBytes) {
      parts.push(client.readInto(offset + at, buf, at, Math.min(requestBytes, length - at)));
    }
    await Promise.all(parts);
    return buf;
  };
}
