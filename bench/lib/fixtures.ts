/**
 * Benchmark fixtures: large files made once under /var/tmp/haven-bench (or HAVEN_BENCH_ROOT) and
 * reused across runs, plus page-cache warming so runs measure the code, not the disk.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const BENCH_ROOT = process.env.HAVEN_BENCH_ROOT ?? '/var/tmp/haven-bench';

export function benchDir(...parts: string[]): string {
  const dir = join(BENCH_ROOT, ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * A fully allocated raw file of random bytes. Made once (written under a temporary name, then
 * renamed, so an interrupted run never leaves a short file under the final name).
 */
export function ensureRandomImage(
  name: string,
  size: number,
  log: (line: string) => void = () => {},
): string {
  const path = join(benchDir(), name);
  try {
    const st = statSync(path);
    if (st.size === size && st.blocks * 512 >= size) return path;
  } catch {
    // not there yet
  }
  log(`making ${path} (${size} bytes of random data, once)`);
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  const chunk = Buffer.allocUnsafe(16 * 1024 * 1024);
  try {
    for (let off = 0; off < size; off += chunk.length) {
      const n = Math.min(chunk.length, size - off);
      randomFillSync(chunk, 0, n);
      writeSync(fd, chunk, 0, n, off);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return path;
}

/** Reads a file once so later reads come from the page cache. */
export function warmPageCache(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
  try {
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}
