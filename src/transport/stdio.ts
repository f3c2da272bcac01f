/**
 * The receiving end's stdin and stdout (`haven receive --stdio`, started by a sender locally or
 * through ssh) as one connection.
 *
 * Pipes and sockets are opened as non-blocking sockets on fds 0 and 1 (process.stdout writes
 * synchronously to pipes); anything else falls back to the process's streams. A socket stdin is
 * read into one reused buffer (net's `onread`) and handed over chunk by chunk, synchronously
 * (`input`, the shape of protocol's ByteSource): the receiver copies each frame out at once, so
 * no buffer is allocated per read.
 */
import { fstatSync } from 'node:fs';
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';
import { type Duplex, type Readable, Writable } from 'node:stream';
import type { HavenError } from '../core/errors.ts';
import { JoinedStream } from './connection.ts';

/** Bytes read per system call from a socket stdin. */
const READ_BUFFER_BYTES = 1024 * 1024;

export interface StdioSink {
  chunk(bytes: Buffer): boolean;
  end(): void;
  error(e: Error): void;
}

export interface StdioInput {
  start(sink: StdioSink): void;
  resume(): void;
}

export interface StdioConnection {
  /** Answers go out here; reading it yields nothing when `input` is set. */
  stream: Duplex;
  /** stdin, when it is a pipe or socket. */
  input?: StdioInput;
}

function isSocketLike(fd: number): boolean {
  const st = fstatSync(fd);
  return st.isFIFO() || st.isSocket();
}

export function stdioConnection(mapError: (e: Error) => HavenError): StdioConnection {
  const output = new AfterPendingSignals(
    isSocketLike(1) ? new Socket({ fd: 1, readable: false, writable: true }) : process.stdout,
  );
  if (!isSocketLike(0)) {
    return { stream: new JoinedStream(process.stdin, output, { mapError }) };
  }
  const { socket, input } = bufferedSocketInput(0);
  return { stream: new JoinedStream(socket, output, { mapError }), input };
}

/**
 * A socket on `fd` read into one reused buffer. Bytes that arrive before start() (the socket
 * reads from the moment it exists) are copied and delivered first.
 */
function bufferedSocketInput(fd: number): { socket: Readable; input: StdioInput } {
  let sink: StdioSink | null = null;
  const early: Buffer[] = [];
  let earlyEnd = false;
  let earlyError: Error | null = null;
  // Node's Socket constructor takes `onread` like net.connect() does (net.md, "new
  // net.Socket([options])"); @types/node lists it only for connect().
  const options: SocketConstructorOpts & { onread: OnReadOpts } = {
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (n: number, buf: Uint8Array) => {
        const view = Buffer.from(buf.buffer, buf.byteOffset, n);
        if (sink) return sink.chunk(view);
        early.push(Buffer.from(view));
        return true;
      },
    },
  };
  const socket = new Socket(options);
  const onEnd = () => {
    if (sink) sink.end();
    else earlyEnd = true;
  };
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', (e: Error) => {
    if (sink) sink.error(e);
    else earlyError ??= e;
  });
  const input: StdioInput = {
    start(s) {
      sink = s;
      let go = true;
      for (const b of early.splice(0)) go = s.chunk(b) && go;
      if (!go) socket.pause();
      if (earlyError) s.error(earlyError);
      else if (earlyEnd) s.end();
    },
    resume() {
      socket.resume();
    },
  };
  return { socket, input };
}

/** Runs `fn` after the event loop has polled once more (two check phases from now). */
function afterNextPoll(fn: () => void): void {
  setImmediate(() => setImmediate(fn));
}

/**
 * stdout for answers, each write held until the event loop has polled once more, so a stop
 * signal that came before the request an answer is for always wins (`haven receive --stdio`
 * destroys this stream on SIGINT/SIGTERM/SIGHUP; what is held then is dropped).
 *
 * Why a signal can lose otherwise: a sender that signals the receiver and then writes a request
 * (kill() returns before write() starts) cannot stop the request from being read first. The
 * kernel runs the signal's C handler (libuv's, which writes a byte to the loop's signal pipe)
 * before the receiver is back in user space, but that byte may miss the poll that reads the
 * request, and even in the same poll libuv runs signal watchers after every other I/O callback
 * (src/unix/linux.c, uv__io_poll: "Run signal watchers last"). An answer computed from memory
 * (expected digests, say) then left before the handler ran. Held past the next poll, which
 * reports the signal pipe (an immediate is pending, so that poll does not block), the answer
 * finds the stream destroyed. The cost is one loop turn per answer; data only flows the other
 * way.
 */
class AfterPendingSignals extends Writable {
  constructor(private readonly inner: Writable) {
    super({ highWaterMark: inner.writableHighWaterMark });
    inner.on('error', (e: Error) => this.destroy(e));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    afterNextPoll(() => {
      if (this.destroyed) return cb();
      this.inner.write(chunk, cb);
    });
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    afterNextPoll(() => {
      if (this.destroyed) return cb();
      this.inner.cork();
      for (let i = 0; i < chunks.length - 1; i++) this.inner.write(chunks[i]!.chunk);
      this.inner.write(chunks[chunks.length - 1]!.chunk, cb);
      this.inner.uncork();
    });
  }

  override _final(cb: (e?: Error | null) => void): void {
    afterNextPoll(() => {
      if (!this.destroyed) this.inner.end();
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}
