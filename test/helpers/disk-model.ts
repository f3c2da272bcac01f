/**
 * An independent model of what a guest's disk holds: a sparse raw file the test writes the
 * guest's pattern blocks into, in the same order. Copies Haven makes are compared with it byte
 * for byte, so a test does not trust QEMU, the store or Haven to say what "right" is.
 */
import { copyFile, open, truncate, writeFile } from 'node:fs/promises';
import { PATTERN_BLOCK_SIZE, patternBlock, patternBlocks } from '../fixtures/guest/pattern.ts';

export class DiskModel {
  constructor(
    readonly path: string,
    readonly size: number,
  ) {}

  static async create(path: string, size: number): Promise<DiskModel> {
    await writeFile(path, '');
    await truncate(path, size);
    return new DiskModel(path, size);
  }

  /** Applies pattern (seed, count) as the guest writes it; returns the blocks written. */
  async writePattern(seed: number, count: number): Promise<number[]> {
    const blocks = patternBlocks(seed, count, Math.floor(this.size / PATTERN_BLOCK_SIZE));
    const fh = await open(this.path, 'r+');
    try {
      for (const b of blocks)
        await fh.write(patternBlock(seed, b), 0, PATTERN_BLOCK_SIZE, b * PATTERN_BLOCK_SIZE);
    } finally {
      await fh.close();
    }
    return blocks;
  }

  /** A frozen copy of the model as it is now (the expected content of one generation). */
  async snapshot(path: string): Promise<string> {
    await copyFile(this.path, path);
    return path;
  }
}

/** Byte-for-byte file comparison, streaming; returns the first differing offset or -1. */
export async function firstDifference(a: string, b: string): Promise<number> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const [sa, sb] = [(await fa.stat()).size, (await fb.stat()).size];
    if (sa !== sb) return Math.min(sa, sb);
    const bufA = Buffer.alloc(4 << 20);
    const bufB = Buffer.alloc(4 << 20);
    for (let off = 0; off < sa; off += bufA.length) {
      const n = Math.min(bufA.length, sa - off);
      await fa.read(bufA, 0, n, off);
      await fb.read(bufB, 0, n, off);
      if (bufA.compare(bufB, 0, n, 0, n) !== 0) {
        for (let i = 0; i < n; i++) if (bufA[i] !== bufB[i]) return off + i;
      }
    }
    return -1;
  } finally {
    await fa.close();
    await fb.close();
  }
}
