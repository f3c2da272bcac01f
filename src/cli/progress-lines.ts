/**
 * Progress for output that is not a terminal (a pipe, a log file, cron's mail, a systemd
 * journal): instead of a bar, one plain line now and then on stderr, so a long run shows it is
 * alive without flooding the log:
 *
 *   2026-12-05 21:15:03 web01 → dr: sending vda 45% 1.20 GiB of 2.00 GiB, 35.2 MiB/s, ETA 20.0s
 *
 * A line when a copy starts or changes phase (or disk), each time it passes another 5 %, and at
 * least every 30 s while it runs; a burst of steps (zeros read at memory speed) gives at most one
 * line a second. docs/jobs.md ("Progress").
 */
import { formatLocalTime } from '../core/time-format.ts';
import { formatBytes, formatDuration, formatRate } from '../core/units.ts';
import type { ProgressSnapshot } from '../engine/index.ts';

export const LINE_EVERY_PERCENT = 5;
export const LINE_EVERY_MS = 30_000;
const MIN_GAP_MS = 1000;

/** Percent done, whole, 0–100 (0 while the total is unknown). */
export function percentDone(s: Pick<ProgressSnapshot, 'bytesDone' | 'bytesTotal'>): number {
  if (s.bytesTotal <= 0) return 0;
  return Math.min(100, Math.floor((100 * s.bytesDone) / s.bytesTotal));
}

/** `sending vda 45% 1.20 GiB of 2.00 GiB, 35.2 MiB/s, ETA 20.0s`. */
export function describeProgress(s: ProgressSnapshot): string {
  const phase = s.disk ? `${s.phase} ${s.disk}` : s.phase;
  const eta = s.etaMs === undefined ? '?' : formatDuration(s.etaMs);
  return `${phase} ${percentDone(s)}% ${formatBytes(s.bytesDone)} of ${formatBytes(s.bytesTotal)}, ${formatRate(s.rate)}, ETA ${eta}`;
}

interface Shown {
  at: number;
  step: number;
  phase: string;
}

export class ProgressLines {
  private readonly shown = new Map<string, Shown>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly now: () => number = () => Date.now(),
    private readonly everyMs = LINE_EVERY_MS,
  ) {}

  /** Takes a snapshot of the copy `key` (shown as `label`), writing a line when one is due. */
  update(key: string, label: string, s: ProgressSnapshot): void {
    const t = this.now();
    const phase = `${s.phase}\u0000${s.disk ?? ''}`;
    const step = Math.floor(percentDone(s) / LINE_EVERY_PERCENT);
    const last = this.shown.get(key);
    const due =
      !last ||
      last.phase !== phase ||
      t - last.at >= this.everyMs ||
      (step > last.step && t - last.at >= MIN_GAP_MS);
    if (!due) return;
    this.shown.set(key, { at: t, step, phase });
    this.write(`${formatLocalTime(new Date(t))} ${label}: ${describeProgress(s)}\n`);
  }

  /** The copy ended: forget it (a later copy under the same key starts afresh). */
  done(key: string): void {
    this.shown.delete(key);
  }
}
