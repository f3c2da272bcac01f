/**
 * Reads a byte stream chunk by chunk for the receiver, with backpressure: chunks are queued from
 * 'data' events and the stream is paused while more than `highWater` bytes wait, resumed below
 * half of it. Compared with the stream's own async iterator (16 KiB high-water mark, a pause and
 * a resume around nearly every 64 KiB chunk) this keeps the socket read while the receiver
 * checks and writes the previous frame.
 */
import type { Readable } from 'node:stream';

export class ChunkReader implements AsyncIterator<Buffer> {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly stream: Readable,
    private readonly highWater = 8 * 1024 * 1024,
  ) {
    stream.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued >= this.highWater) stream.pause();
      this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('close', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('error', (e: Error) => {
      this.error ??= e;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async next(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        this.queued -= chunk.length;
        if (this.queued < this.highWater / 2 && this.stream.isPaused() && !this.ended) this.stream.resume();
        return { value: chunk, done: false };
      }
      if (this.error) throw this.error;
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
