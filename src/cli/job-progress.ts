/**
 * The progress display of `haven job run` on a terminal: one bar per server being copied (or
 * staged), with bytes, rate and ETA, and one line per finished server. Nothing is drawn when
 * stderr is not a terminal or the output is JSON.
 */
import cliProgress from 'cli-progress';
import { formatBytes, formatDuration, formatRate } from '../core/units.ts';
import type { JobUpdate } from '../jobs/index.ts';

export interface JobProgress {
  update(u: JobUpdate): void;
  stop(): void;
}

export function jobProgress(stream: NodeJS.WritableStream, enabled: boolean): JobProgress {
  if (!enabled) return { update() {}, stop() {} };
  const multi = new cliProgress.MultiBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: '{label} {phase} |{bar}| {percentage}% {done}/{total} {rate} ETA {eta_text}',
      hideCursor: true,
      clearOnComplete: false,
      barsize: 20,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    update(u) {
      if (u.type === 'progress') {
        const key = `${u.server}\u0000${u.target}`;
        const p = u.progress;
        const total = Math.max(1, p.bytesTotal);
        const payload = {
          label: `${u.server} → ${u.target}`,
          phase: p.disk ? `${p.phase} ${p.disk}` : p.phase,
          done: formatBytes(p.bytesDone),
          total: formatBytes(p.bytesTotal),
          rate: formatRate(p.rate),
          eta_text: p.etaMs === undefined ? '?' : formatDuration(p.etaMs),
        };
        const bar = bars.get(key);
        if (!bar) bars.set(key, multi.create(total, Math.min(p.bytesDone, total), payload));
        else {
          bar.setTotal(total);
          bar.update(Math.min(p.bytesDone, total), payload);
        }
      } else if (u.type === 'server.finished') {
        const key = `${u.server}\u0000${u.target}`;
        const bar = bars.get(key);
        if (bar) {
          multi.remove(bar);
          bars.delete(key);
        }
        multi.log(
          `${u.server} → ${u.target}: ${u.status}${u.error ? ` [${u.error.code}] ${u.error.message}` : ''}\n`,
        );
      }
    },
    stop() {
      multi.stop();
    },
  };
}
