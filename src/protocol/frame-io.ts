/**
 * Writing frames to a byte stream with bounded memory. Each frame's buffers go out corked (one
 * writev for header and payload, no copy). `ready()` resolves while fewer than `maxQueued` bytes
 * wait in the stream: the write callbacks, not 'drain', release the budget, so several frames
 * stay in flight and the peer is never starved while the next frame is being prepared.
 */
import type { Writable } from 'node:stream';

export class FrameWriter {
  /** Bytes handed to the stream so far. */
  bytesOut = 0;
  private queued = 0;
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private failure: Error | null = null;

  constructor(
    private readonly stream: Writable,
    private readonly maxQueued: number,
    private readonly onWriteError: (e: Error) => void,
  ) {}

  /**
   * Queues one frame made of `parts` (header first). `onWritten` runs once the stream has
   * finished with the parts (written, or failed): only then may their memory be reused.
   */
  write(parts: readonly Buffer[], onWritten?: () => void): void {
    let n = 0;
    for (const p of parts) n += p.length;
    this.bytesOut += n;
    this.queued += n;
    const done = (err?: Error | null) => {
      this.queued -= n;
      onWritten?.();
      if (err) {
        this.fail(err);
        this.onWriteError(err);
      } else if (this.queued < this.maxQueued) {
        this.wake();
      }
    };
    if (this.failure || this.stream.destroyed || this.stream.writableEnded) {
      this.queued -= n;
      onWritten?.();
      return;
    }
    if (parts.length === 1) {
      this.stream.write(parts[0]!, done);
      return;
    }
    this.stream.cork();
    for (let i = 0; i < parts.length - 1; i++) this.stream.write(parts[i]!);
    this.stream.write(parts[parts.length - 1]!, done);
    this.stream.uncork();
  }

  /** More than the budget waits in the stream (the peer reads slower than this side writes). */
  get full(): boolean {
    return this.queued >= this.maxQueued;
  }

  /** Resolves once the queue is below its budget; rejects if the stream failed. */
  ready(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.queued < this.maxQueued) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Rejects current and future waiters with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.reject(this.failure);
  }

  /** Ends the stream once everything queued is written; resolves at 'finish' (or after timeoutMs). */
  end(timeoutMs = 10_000): Promise<void> {
    const s = this.stream;
    if (s.destroyed || s.writableFinished) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      timer.unref();
      function finish() {
        clearTimeout(timer);
        s.off('finish', finish);
        s.off('close', finish);
        s.off('error', finish);
        resolve();
      }
      s.once('finish', finish);
      s.once('close', finish);
      s.once('error', finish);
      if (!s.writableEnded) s.end();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.resolve();
  }
}
