/**
 * The receiver's input: bytes in, whole frames out, with bounded memory.
 *
 * Bytes arrive through a ByteSource, synchronously, and are decoded at once: every frame body is
 * copied out of the chunk (FrameDecoder `copyBodies`), so a source may hand over the same buffer
 * for every read. A socket read into one reused buffer (net's `onread`) spares the garbage
 * collector a fresh 64–256 KiB buffer per read, which at a few hundred MB/s was a large part of
 * the receiver's CPU (bench/README.md). While more than `highWater` bytes of frames wait, the
 * source is paused; below half of it, resumed.
 *
 * Frames decoded before a failure are delivered first, as the stream carried them; then the
 * decoding error (`bad`) or the end. A broken stream is thrown from next() once the frames that
 * arrived before it have been taken.
 */
import type { Readable } from 'node:stream';
import type { FrameDecoder, RawFrame } from './codec.ts';

/** Receives a source's bytes. `chunk` may only be read during the call. */
export interface ByteSink {
  /** Returns false to ask the source to pause until resume(). */
  chunk(bytes: Buffer): boolean;
  end(): void;
  error(e: Error): void;
}

export interface ByteSource {
  /** Starts delivery to `sink` (once). */
  start(sink: ByteSink): void;
  /** Continues after `chunk` returned false. */
  resume(): void;
}

/** A Readable as a ByteSource ('data' events; the Readable's own pause and resume). */
export function readableSource(stream: Readable): ByteSource {
  return {
    start(sink) {
      stream.on('data', (chunk: Buffer) => {
        if (!sink.chunk(chunk)) stream.pause();
      });
      stream.on('end', () => sink.end());
      stream.on('close', () => sink.end());
      stream.on('error', (e: Error) => sink.error(e));
    },
    resume() {
      if (stream.isPaused()) stream.resume();
    },
  };
}

/** Frames waiting at most (each may hold a pooled body buffer: this bounds how many exist). */
const MAX_QUEUED_FRAMES = 64;

export type QueueItem = { kind: 'frame'; raw: RawFrame } | { kind: 'bad'; error: Error } | { kind: 'end' };

export class FrameQueue {
  private readonly frames: RawFrame[] = [];
  private queued = 0;
  private paused = false;
  private ended = false;
  private streamError: Error | null = null;
  private decodeError: Error | null = null;
  /** After a fatal error: bytes are dropped unread until the peer hangs up. */
  private discarding = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly decoder: FrameDecoder,
    private readonly source: ByteSource,
    private readonly highWater = 8 * 1024 * 1024,
  ) {
    source.start({
      chunk: (b) => this.onChunk(b),
      end: () => {
        this.ended = true;
        this.notify();
      },
      error: (e) => this.fail(e),
    });
  }

  /** Bytes taken from the source so far. */
  get bytesIn(): number {
    return this.decoder.bytesIn;
  }

  private onChunk(bytes: Buffer): boolean {
    if (this.discarding || this.decodeError) return true;
    try {
      for (const raw of this.decoder.push(bytes)) {
        this.frames.push(raw);
        this.queued += raw.body.length + 8;
      }
    } catch (e) {
      this.decodeError = e as Error;
    }
    this.notify();
    if (this.queued >= this.highWater || this.frames.length >= MAX_QUEUED_FRAMES) {
      this.paused = true;
      return false;
    }
    return true;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next frame, a decoding failure, or the end; throws if the stream broke. */
  async next(): Promise<QueueItem> {
    for (;;) {
      const raw = this.frames.shift();
      if (raw) {
        this.queued -= raw.body.length + 8;
        if (this.paused && this.queued < this.highWater / 2 && this.frames.length < MAX_QUEUED_FRAMES / 2) {
          this.paused = false;
          this.source.resume();
        }
        return { kind: 'frame', raw };
      }
      if (this.decodeError) return { kind: 'bad', error: this.decodeError };
      if (this.streamError) throw this.streamError;
      if (this.ended) return { kind: 'end' };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** Ends the input with `e` (a timeout, a failure of the answering side). */
  fail(e: Error): void {
    this.streamError ??= e;
    this.notify();
  }

  /** Drops everything until the stream ends or breaks (after a fatal error). Never throws. */
  async drain(): Promise<void> {
    this.discarding = true;
    this.frames.length = 0;
    this.queued = 0;
    if (this.paused) {
      this.paused = false;
      this.source.resume();
    }
    while (!this.ended && !this.streamError) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
