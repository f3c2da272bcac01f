/**
 * The progress display of `haven job run`: on a terminal one bar per server being copied (or
 * staged), with bytes, rate and ETA, and one line per finished server; elsewhere periodic lines
 * per server (progress-lines.ts) and the same line per finished server; nothing with --json or -q.
 */
import cliProgress from 'cli-progress';
import type { JobUpdate } from '../jobs/index.ts';
import { BAR_FORMAT, barPayload, type ProgressMode } from './progress-bar.ts';
import { ProgressLines } from './progress-lines.ts';

export interface JobProgress {
  update(u: JobUpdate): void;
  stop(): void;
}

function finishedLine(u: Extract<JobUpdate, { type: 'server.finished' }>): string {
  return `${u.server} → ${u.target}: ${u.status}${u.error ? ` [${u.error.code}] ${u.error.message}` : ''}\n`;
}

function terminalBars(stream: NodeJS.WritableStream): JobProgress {
  const multi = new cliProgress.MultiBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: `{label} ${BAR_FORMAT}`,
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
        const payload = { label: `${u.server} → ${u.target}`, ...barPayload(p) };
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
        multi.log(finishedLine(u));
      }
    },
    stop() {
      multi.stop();
    },
  };
}

function periodicLines(stream: NodeJS.WritableStream): JobProgress {
  const lines = new ProgressLines((l) => stream.write(l));
  return {
    update(u) {
      if (u.type === 'progress') {
        lines.update(`${u.server}\u0000${u.target}`, `${u.server} → ${u.target}`, u.progress);
      } else if (u.type === 'server.finished') {
        lines.done(`${u.server}\u0000${u.target}`);
        stream.write(finishedLine(u));
      }
    },
    stop() {},
  };
}

export function jobProgress(stream: NodeJS.WritableStream, mode: ProgressMode): JobProgress {
  if (mode === 'off') return { update() {}, stop() {} };
  return mode === 'bar' ? terminalBars(stream) : periodicLines(stream);
}
