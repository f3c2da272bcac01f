/**
 * Payload compression of EXTENT frames (zstd through zstd-napi's one-shot context API).
 *
 * The sender compresses into a scratch buffer sized for the largest extent and sends the
 * compressed bytes only when they are smaller; the receiver decompresses into a buffer of exactly
 * the frame's declared length, so a payload that expands beyond it (a "zstd bomb") fails instead
 * of allocating, and one that falls short is caught by the length check.
 */
import { createRequire } from 'node:module';
import type binding from 'zstd-napi/binding.js';
import { protoError } from './errors.ts';
import { MAX_EXTENT_BYTES } from './frames.ts';

type Zstd = typeof binding;
let loaded: Zstd | undefined;

/**
 * The native binding, loaded on first use: most sessions negotiate no compression, and every
 * replication starts a receiver whose start-up is on the critical path.
 */
function zstd(): Zstd {
  loaded ??= createRequire(import.meta.url)('zstd-napi/binding.js') as Zstd;
  return loaded;
}

export class ExtentCompressor {
  private readonly cctx = new (zstd().CCtx)();
  private readonly scratch: Buffer;

  constructor(
    readonly level: number,
    maxExtentBytes = MAX_EXTENT_BYTES,
  ) {
    this.scratch = Buffer.allocUnsafe(zstd().compressBound(maxExtentBytes));
  }

  /** The compressed bytes in a buffer of their own, or null when compression does not shrink `data`. */
  compress(data: Buffer): Buffer | null {
    const n = this.cctx.compress(this.scratch, data, this.level);
    if (n >= data.length) return null;
    const out = Buffer.allocUnsafe(n);
    this.scratch.copy(out, 0, 0, n);
    return out;
  }
}

export class ExtentDecompressor {
  private readonly dctx = new (zstd().DCtx)();

  /**
   * Decompresses a payload that must expand to exactly `length` bytes, into `into` when given
   * (at least `length` bytes long; the result is a view of it).
   */
  decompress(payload: Buffer, length: number, where: Record<string, unknown>, into?: Buffer): Buffer {
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let n: number;
    try {
      n = this.dctx.decompress(out, payload);
    } catch (e) {
      throw protoError(
        'PROTO_BAD_COMPRESSION',
        `zstd payload does not decode: ${(e as Error).message}`,
        where,
      );
    }
    if (n !== length) {
      throw protoError(
        'PROTO_BAD_COMPRESSION',
        `zstd payload decodes to ${n} bytes, frame says ${length}`,
        where,
      );
    }
    return out;
  }
}
