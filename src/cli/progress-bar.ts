/**
 * Progress of long work on stderr: a bar with bytes, rate and ETA on a terminal, periodic lines
 * elsewhere (progress-lines.ts), nothing with --json or -q (CliContext.progressMode).
 */
import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, formatRate } from '../core/units.ts';
import type { ProgressSnapshot } from '../engine/index.ts';
import { ProgressLines } from './progress-lines.ts';

export type ProgressMode = 'bar' | 'lines' | 'off';

export interface ProgressBar {
  update(s: ProgressSnapshot): void;
  stop(): void;
}

const quiet: ProgressBar = { update() {}, stop() {} };

/**
 * The bar's format. Our values go in under names of our own (`done_text`, `total_text`):
 * cli-progress fills `{value}`, `{total}`, `{percentage}`, `{eta}` itself from the raw numbers,
 * and its `{total}` wins over a payload field of that name (it printed `13.0 MiB/209715200`).
 */
export const BAR_FORMAT = '{phase} |{bar}| {percentage}% {done_text}/{total_text} {rate} ETA {eta_text}';

/** What the bar's own tokens are filled with, from a snapshot. */
export function barPayload(s: ProgressSnapshot): Record<string, string> {
  return {
    phase: s.disk ? `${s.phase} ${s.disk}` : s.phase,
    done_text: formatBytes(s.bytesDone),
    total_text: formatBytes(s.bytesTotal),
    rate: formatRate(s.rate),
    eta_text: s.etaMs === undefined ? '?' : formatDuration(s.etaMs),
  };
}

function terminalBar(stream: NodeJS.WritableStream, label: string): ProgressBar {
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: `${label} ${BAR_FORMAT}`,
      hideCursor: true,
      clearOnComplete: true,
      barsize: 24,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(s) {
      const total = Math.max(1, s.bytesTotal);
      if (!started) {
        bar.start(total, Math.min(s.bytesDone, total), barPayload(s));
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(Math.min(s.bytesDone, total), barPayload(s));
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

export function progressBar(stream: NodeJS.WritableStream, mode: ProgressMode, label: string): ProgressBar {
  if (mode === 'off') return quiet;
  if (mode === 'bar') return terminalBar(stream, label);
  const lines = new ProgressLines((l) => stream.write(l));
  return {
    update: (s) => lines.update(label, label, s),
    stop: () => lines.done(label),
  };
}

/**
 * Progress of work that only reads (verify): the rate so far, and what is left at that rate (no
 * estimate before the first byte).
 */
export function readingSnapshot(done: number, total: number, elapsedMs: number): ProgressSnapshot {
  const rate = (done / Math.max(1, elapsedMs)) * 1000;
  const etaMs = done > 0 ? (Math.max(0, total - done) / rate) * 1000 : undefined;
  return { phase: 'reading', bytesDone: done, bytesTotal: total, bytesSent: 0, rate, etaMs, elapsedMs };
}
