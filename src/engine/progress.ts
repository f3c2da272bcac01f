/**
 * Progress of a run: bytes done of a planned total, a smoothed rate and an ETA. Pure: the caller
 * feeds bytes and times; the CLI draws it, the daemon streams it as server-sent events.
 */
export interface ProgressSnapshot {
  phase: string;
  server?: string;
  disk?: string;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes that went over the wire (after compression and skipping unchanged chunks). */
  bytesSent: number;
  /** Bytes per second, smoothed over the last few seconds. */
  rate: number;
  /** Milliseconds to go at the current rate; undefined while unknown. */
  etaMs: number | undefined;
  elapsedMs: number;
}

export class ProgressTracker {
  private done = 0;
  private sent = 0;
  private rate = 0;
  private lastT: number;
  private lastDone = 0;
  private readonly startT: number;
  phase = 'starting';
  disk: string | undefined;

  private lastNotified = -Infinity;

  constructor(
    private total: number,
    readonly server?: string,
    private readonly now: () => number = () => performance.now(),
    /** Told about progress at most every `notifyEveryMs`, and on every phase change. */
    private readonly listener?: (s: ProgressSnapshot) => void,
    private readonly notifyEveryMs = 200,
  ) {
    this.startT = now();
    this.lastT = this.startT;
  }

  /** Enters a new phase (and tells the listener at once). */
  setPhase(phase: string, disk?: string): void {
    this.phase = phase;
    if (disk !== undefined) this.disk = disk;
    this.lastNotified = this.now();
    this.listener?.(this.snapshot());
  }

  setTotal(total: number): void {
    this.total = total;
  }

  add(bytesRead: number, bytesSent = 0): void {
    this.done += bytesRead;
    this.sent += bytesSent;
    const t = this.now();
    const dt = t - this.lastT;
    if (dt >= 250) {
      const inst = ((this.done - this.lastDone) / dt) * 1000;
      // exponential smoothing with a time constant of about 2 s
      const alpha = Math.min(1, dt / 2000);
      this.rate = this.rate === 0 ? inst : this.rate + alpha * (inst - this.rate);
      this.lastT = t;
      this.lastDone = this.done;
    }
    if (this.listener && t - this.lastNotified >= this.notifyEveryMs) {
      this.lastNotified = t;
      this.listener(this.snapshot());
    }
  }

  snapshot(): ProgressSnapshot {
    const remaining = Math.max(0, this.total - this.done);
    return {
      phase: this.phase,
      server: this.server,
      disk: this.disk,
      bytesDone: this.done,
      bytesTotal: this.total,
      bytesSent: this.sent,
      rate: this.rate,
      etaMs: this.rate > 0 ? (remaining / this.rate) * 1000 : undefined,
      elapsedMs: this.now() - this.startT,
    };
  }
}
