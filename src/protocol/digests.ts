/**
 * Digests on the wire (docs/stream-protocol.md §5): an EXTENT frame carries
 * `rootDigest(chunkDigests(data))` over its uncompressed bytes, so the receiver hashes the data
 * once, checks 32 bytes per chunk, and hands the chunk digests to DeltaWriter.writeData. The
 * attempt digest at END_DELTA hashes every EXTENT record of the connection in order.
 */
import { chunkDigests, createHasher, type DigestAlgorithm, type Hasher, rootDigest } from '../core/digest.ts';
import { writeExtentFields } from './codec.ts';
import type { ExtentFrame } from './frames.ts';

export { createHasher, type Hasher } from '../core/digest.ts';

export interface ExtentDigests {
  /** One digest per chunk of the extent, concatenated. */
  chunks: Buffer;
  /** rootDigest over `chunks`: what the frame carries. */
  root: Buffer;
}

export function extentDigests(alg: DigestAlgorithm, data: Buffer, chunkSize: number): ExtentDigests {
  const chunks = chunkDigests(alg, data, chunkSize);
  return { chunks, root: rootDigest(alg, chunks) };
}

/**
 * The running digest over an attempt's EXTENT records: for each, the 20 identifying bytes with
 * the encoding byte zeroed (compression is a transport detail), then for data the root digest.
 * Sender and receiver both keep one and compare at END_DELTA.
 */
export class AttemptDigest {
  private readonly hasher: Hasher;
  private readonly record = Buffer.alloc(20);

  constructor(alg: DigestAlgorithm) {
    this.hasher = createHasher(alg);
  }

  add(e: Pick<ExtentFrame, 'disk' | 'kind' | 'offset' | 'length'>, root?: Buffer): void {
    writeExtentFields(this.record, 0, { ...e, encoding: 'raw' });
    this.hasher.update(this.record);
    if (root) this.hasher.update(root);
  }

  hex(): string {
    return this.hasher.digest().toString('hex');
  }
}
