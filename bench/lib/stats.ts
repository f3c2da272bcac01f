/**
 * Small statistics and formatting helpers shared by the benchmarks under bench/.
 */

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Bytes per second, as "1.23 GB/s" (SI, as throughput is usually quoted). */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1e9) return `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`;
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

/** Wall time of an async function, in seconds (monotonic clock). */
export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, value };
}
