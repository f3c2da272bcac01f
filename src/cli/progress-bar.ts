/**
 * The terminal progress bar for long work: bytes, rate and ETA, drawn on stderr only when it is
 * a terminal (logs and --json output stay clean).
 */
import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, formatRate } from '../core/units.ts';
import type { ProgressSnapshot } from '../engine/index.ts';

export interface ProgressBar {
  update(s: ProgressSnapshot): void;
  stop(): void;
}

const quiet: ProgressBar = { update() {}, stop() {} };

export function progressBar(stream: NodeJS.WritableStream, enabled: boolean, label: string): ProgressBar {
  if (!enabled) return quiet;
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: `${label} {phase} |{bar}| {percentage}% {done}/{total} {rate} ETA {eta_text}`,
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
      const payload = {
        phase: s.disk ? `${s.phase} ${s.disk}` : s.phase,
        done: formatBytes(s.bytesDone),
        total: formatBytes(s.bytesTotal),
        rate: formatRate(s.rate),
        eta_text: s.etaMs === undefined ? '?' : formatDuration(s.etaMs),
      };
      const total = Math.max(1, s.bytesTotal);
      if (!started) {
        bar.start(total, Math.min(s.bytesDone, total), payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(Math.min(s.bytesDone, total), payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
