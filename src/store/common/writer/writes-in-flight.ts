/**
 * Data writes a delta writer runs beside later calls (up to MAX_IO_IN_FLIGHT), and the first
 * failure of one. A later write overlapping a running one waits for it, so the later of two
 * writes to a range always wins.
 */
import { asHavenError, type HavenError } from '../../../core/errors.ts';

/** Data writes this writer runs at once (a bound; the receiver keeps a few in flight). */
const MAX_IO_IN_FLIGHT = 8;

interface RunningWrite {
  disk: number;
  start: number;
  end: number;
  /** Settles when the write is done; never rejects (failures go to `failure`). */
  settled: Promise<void>;
}

export class WritesInFlight {
  private running: RunningWrite[] = [];
  private failure: unknown = null;

  /** `onFailure` hears of the first failure of each write as it happens. */
  constructor(private readonly onFailure: (e: HavenError) => void) {}

  /** Waits until a write of [start, end) on `disk` may start; throws an earlier write's failure. */
  async makeRoom(disk: number, start: number, end: number): Promise<void> {
    if (this.running.some((w) => w.disk === disk && w.start < end && start < w.end)) await this.drain();
    if (this.running.length >= MAX_IO_IN_FLIGHT) await this.running.shift()?.settled;
    if (this.failure !== null) await this.drain();
  }

  /** Runs `write` (of [start, end) on `disk`) beside later calls; the promise rejects if it fails. */
  start(disk: number, start: number, end: number, write: () => Promise<void>): Promise<void> {
    const p = write().catch((e: unknown) => {
      const he = asHavenError(e);
      this.failure ??= he;
      this.onFailure(he);
      throw he;
    });
    this.running.push({
      disk,
      start,
      end,
      settled: p.then(
        () => {},
        () => {},
      ),
    });
    return p;
  }

  /** Waits for every running write; throws the first failure. */
  async drain(): Promise<void> {
    const all = this.running;
    this.running = [];
    await Promise.all(all.map((w) => w.settled));
    if (this.failure !== null) throw this.failure;
  }
}
