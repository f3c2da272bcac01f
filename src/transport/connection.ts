/**
 * What every transport hands the protocol: one Duplex byte stream, plus a way to close the
 * transport itself (wait for a child process, close a socket).
 *
 * `JoinedStream` joins a readable and a writable (a child's stdout and stdin, or a socket with
 * itself) into that Duplex and turns their failures into typed HavenErrors, so the sender reports
 * "ssh: Permission denied" or "TLS: certificate required" with a stable code instead of a bare
 * EPIPE. Chunks pass through untouched; backpressure is kept in both directions.
 */
import { Duplex, type Readable, type Writable } from 'node:stream';
import type { HavenError } from '../core/errors.ts';

export interface Connection {
  readonly stream: Duplex;
  /** The target, for logs. */
  readonly description: string;
  /** Process id of the child (child-process transports only). */
  readonly pid?: number;
  /** Ends the stream (if still open) and waits until the transport is gone. Never throws. */
  close(): Promise<void>;
}

export interface JoinOptions {
  /** Turns an error of either side into the error the stream fails with. */
  mapError(e: Error): HavenError;
  /**
   * Awaited when the readable side ends: resolves to null for a clean end, or to the error to
   * fail with instead (a child that exited non-zero).
   */
  settleEnd?: () => Promise<HavenError | null>;
}

export class JoinedStream extends Duplex {
  constructor(
    private readonly src: Readable,
    private readonly dst: Writable,
    o: JoinOptions,
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: 4 * 1024 * 1024,
      writableHighWaterMark: 4 * 1024 * 1024,
    });
    src.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) src.pause();
    });
    let ended = false;
    src.on('end', () => {
      ended = true;
      if (!o.settleEnd) {
        this.push(null);
        return;
      }
      o.settleEnd().then(
        (err) => (err ? this.destroy(err) : this.push(null)),
        (e: Error) => this.destroy(o.mapError(e)),
      );
    });
    const onError = (e: Error) => {
      if (o.settleEnd) {
        // The process's exit status explains the failure better than EPIPE does.
        o.settleEnd().then(
          (err) => this.destroy(err ?? o.mapError(e)),
          () => this.destroy(o.mapError(e)),
        );
      } else {
        this.destroy(o.mapError(e));
      }
    };
    src.on('error', (e: Error) => {
      ended = true;
      onError(e);
    });
    if ((dst as unknown) !== src) dst.on('error', onError);
    // Closed without an end or an error (a stream torn down underneath): the peer is gone.
    src.on('close', () => {
      if (!ended) onError(new Error('the connection closed before its end'));
    });
  }

  override _read(): void {
    this.src.resume();
  }

  // The callback runs once the inner stream has finished with the chunk (its own write callback),
  // not when it merely buffered it: a sender reuses a frame's memory after that callback.
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.dst.write(chunk, () => cb());
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    this.dst.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.dst.write(chunks[i]!.chunk);
    this.dst.write(chunks[chunks.length - 1]!.chunk, () => cb());
    this.dst.uncork();
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.dst.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.src.destroy();
    if ((this.dst as unknown) !== this.src) this.dst.destroy();
    cb(err);
  }
}
