/** A logger that keeps every message (any level) in `lines`, for tests that check what was logged. */
import type { Logger } from '../../src/core/log.ts';

export function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (m: string) => {
    lines.push(m);
  };
  const l = { lines, error: keep, warn: keep, info: keep, verbose: keep, debug: keep, child: () => l };
  return l;
}
