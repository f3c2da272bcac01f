/**
 * NbdClient: the thin socket layer around the handshake and transmission state machines.
 *
 * - Connects over a unix socket or TCP, runs the handshake, then pipelines requests: any number of
 *   callers may have requests in flight; replies are matched by cookie. Reads and writes longer
 *   than the server allows (block-size.ts) are split and sent concurrently.
 * - Receives with a caller-owned buffer (`onread`): while the parser is inside read data, the next
 *   socket read goes straight into the destination buffer, so a read costs the kernel's copy and
 *   nothing more in JavaScript. Small replies land in one reusable receive buffer.
 * - Sends request headers corked, so a burst of requests becomes one writev; write payloads are
 *   passed to the socket as they are, never copied (the caller must not change them until the
 *   write resolves).
 * - Never hangs on a dead peer: socket close or error fails every pending request; a peer that
 *   stays silent for requestTimeoutMs while requests are pending breaks the connection.
 */
import net from 'node:net';
import type { Logger } from '../core/log.ts';
import { silentLogger } from '../core/log.ts';
import { maxRequestLength } from './block-size.ts';
import * as C from './constants.ts';
import {
  checkTargetBuffer,
  connectionLost,
  connectionUnusable,
  NbdError,
  requestError,
  timeoutError,
} from './errors.ts';
import { type BlockSize, Handshake, type NegotiatedExport, type TransmissionFlags } from './handshake.ts';
import { type BlockStatusResult, type SubmitRequest, Transmission } from './transmission.ts';

export interface NbdConnectOptions {
  /** Unix socket path (e.g. a libvirt backup socket or qemu-nbd -k). */
  socketPath?: string;
  /** TCP host and port, when there is no socketPath. */
  host?: string;
  port?: number;
  /** Export name; '' (the default) is the server's default export. */
  exportName?: string;
  /** Meta contexts to negotiate: 'base:allocation', 'qemu:dirty-bitmap:<name>'. All must be granted. */
  metaContexts?: string[];
  /** Limit for connecting plus the handshake (default 30 s). */
  connectTimeoutMs?: number;
  /** Break the connection when the server sends nothing for this long while requests are pending (default 10 min; 0 = never). */
  requestTimeoutMs?: number;
  /** Requests on the wire at once; more wait in a local queue (default 64). */
  maxInFlight?: number;
  /** Size of the reusable receive buffer for headers and small replies (default 256 KiB). */
  receiveBufferSize?: number;
  /** Receive read data straight into the destination buffer (default true; false copies through the receive buffer). */
  directReceive?: boolean;
  log?: Logger;
}

export type NbdFlags = TransmissionFlags;
export type { BlockSize, BlockStatusResult };

const DEFAULT_CONNECT_TIMEOUT = 30_000;
const DEFAULT_REQUEST_TIMEOUT = 600_000;
const DEFAULT_MAX_IN_FLIGHT = 64;
const DEFAULT_RECEIVE_BUFFER = 256 * 1024;
/** Below this, read data goes through the receive buffer (one read syscall for many replies). */
const MIN_DIRECT = 16 * 1024;

interface Queued {
  req: SubmitRequest;
  data: Buffer | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

function connectError(e: NodeJS.ErrnoException, where: string): NbdError {
  const refused = e.code === 'ENOENT' || e.code === 'ECONNREFUSED';
  return new NbdError(
    'NBD_CONNECT_FAILED',
    `cannot connect to NBD server at ${where}: ${e.code ?? e.message}`,
    {
      kind: 'unavailable',
      connectionUsable: false,
      cause: e,
      hint: refused
        ? 'No NBD server is listening there: check that qemu-nbd (or the libvirt backup job) is running and the path/port is right.'
        : 'Check the address and that the NBD server accepts connections.',
      details: { errno: e.code, address: where },
    },
  );
}

export class NbdClient {
  readonly exportName: string;
  readonly size: number;
  readonly flags: NbdFlags;
  readonly blockSize: BlockSize;
  /** Negotiated meta contexts, name → server-assigned id. */
  readonly contexts: ReadonlyMap<string, number>;
  /** Whether structured replies are in use (holes are then sent as holes). */
  readonly structured: boolean;
  readonly description: string | undefined;
  /** Largest READ/WRITE/WRITE_ZEROES length sent in one request. */
  readonly maxRequest: number;

  private readonly queue: Queued[] = [];
  private inFlight = 0;
  private corked = false;
  private closing: Promise<void> | undefined;
  private closeRequested = false;
  private readonly log: Logger;

  private constructor(
    private readonly socket: net.Socket,
    private readonly tx: Transmission,
    negotiated: NegotiatedExport,
    private readonly maxInFlight: number,
    log: Logger,
  ) {
    this.exportName = negotiated.exportName;
    this.size = negotiated.size;
    this.flags = negotiated.flags;
    this.blockSize = negotiated.blockSize;
    this.contexts = negotiated.contexts;
    this.structured = negotiated.structured;
    this.description = negotiated.description;
    this.log = log;
    this.maxRequest = maxRequestLength(negotiated.blockSize, negotiated.size);
    // Closing (asked for, or forced by an ESHUTDOWN reply) ends with a soft disconnect once
    // nothing is pending: NBD_CMD_DISC, then the socket's end.
    tx.onIdle = () => {
      if (this.queue.length === 0 && !this.socket.destroyed && this.socket.writable) {
        this.socket.end(tx.disconnectRequest());
      }
    };
  }

  /** True while requests can be sent (open and not broken). */
  get usable(): boolean {
    return this.tx.state === 'open';
  }

  /** Requests sent and not yet answered, plus those waiting for a slot. */
  get pendingCount(): number {
    return this.tx.pendingCount + this.queue.length;
  }

  static connect(o: NbdConnectOptions): Promise<NbdClient> {
    const log = (o.log ?? silentLogger).child({ component: 'nbd' });
    const where = o.socketPath ?? `${o.host ?? 'localhost'}:${o.port ?? 10809}`;
    const exportName = o.exportName ?? '';
    const metaContexts = [...new Set(o.metaContexts ?? [])];
    const handshake = new Handshake({ exportName, metaContexts });
    const recvBuf = Buffer.allocUnsafe(o.receiveBufferSize ?? DEFAULT_RECEIVE_BUFFER);
    const maxInFlight = Math.max(1, o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    const requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT;
    const directReceive = o.directReceive ?? true;

    return new Promise<NbdClient>((resolve, reject) => {
      let client: NbdClient | undefined;
      let tx: Transmission | undefined;
      let settled = false;
      // Which buffer the next socket read lands in: a view of a read's destination, or recvBuf.
      let direct = false;

      const fail = (err: NbdError, gently = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // After a refused option the NBD_OPT_ABORT we queued should still leave.
        if (gently) socket.destroySoon();
        else socket.destroy();
        reject(err);
      };

      // Returning false would pause the socket; we always keep reading.
      const onBytes = (nread: number, buf: Buffer): boolean => {
        if (tx) {
          if (direct) tx.feedDirect(nread);
          else tx.feed(buf, 0, nread);
          if (tx.state === 'broken') client?.onBroken();
          return true;
        }
        const step = handshake.feed(Buffer.from(buf.subarray(0, nread)));
        for (const b of step.send) socket.write(b);
        if (step.error) {
          log.debug('nbd: handshake failed', { code: step.error.code, address: where });
          fail(step.error, true);
          return true;
        }
        if (step.done) {
          const negotiated = step.done;
          tx = new Transmission({
            structured: negotiated.structured,
            contexts: negotiated.contexts,
            exportSize: negotiated.size,
            log,
          });
          client = new NbdClient(socket, tx, negotiated, maxInFlight, log);
          if (step.rest) tx.feed(step.rest);
          settled = true;
          clearTimeout(timer);
          if (requestTimeoutMs > 0) socket.setTimeout(requestTimeoutMs);
          log.debug('nbd: connected', { address: where, ...describeExport(negotiated) });
          resolve(client);
        }
        return true;
      };

      const nextBuffer = (): Buffer => {
        const view = directReceive ? tx?.directView() : undefined;
        if (view && view.length >= MIN_DIRECT) {
          direct = true;
          return view;
        }
        direct = false;
        return recvBuf;
      };

      const socket = net.connect({
        ...(o.socketPath ? { path: o.socketPath } : { host: o.host ?? 'localhost', port: o.port ?? 10809 }),
        onread: { buffer: nextBuffer, callback: onBytes },
      });

      const connectTimeoutMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT;
      const timer = setTimeout(() => fail(connectTimeoutError(where, connectTimeoutMs)), connectTimeoutMs);

      socket.on('connect', () => {
        if (!o.socketPath) {
          // proto.md: both sides SHOULD disable Nagle's algorithm.
          socket.setNoDelay(true);
          socket.setKeepAlive(true, 30_000);
        }
      });
      socket.on('error', (e: NodeJS.ErrnoException) => {
        if (!settled) {
          fail(
            e.syscall === 'connect'
              ? connectError(e, where)
              : connectionLost(`NBD handshake with ${where} failed: ${e.message}`, e),
          );
          return;
        }
        tx?.fail(connectionLost(`NBD connection to ${where} failed: ${e.message}`, e));
        client?.onBroken();
      });
      socket.on('timeout', () => {
        if (tx && tx.pendingCount > 0) {
          tx.fail(timeoutError(requestTimeoutMs, tx.pendingCount));
          client?.onBroken();
        }
      });
      socket.on('close', () => {
        if (!settled) {
          fail(connectionLost(`NBD server at ${where} closed the connection during the handshake`));
          return;
        }
        tx?.end();
        client?.onBroken();
      });
    });
  }

  // ---------------------------------------------------------------- public operations

  /** Reads [offset, offset+length). Holes come back as zeroes. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange('read', offset, length);
    // Every byte is overwritten (data, or zeroes for holes) before the read resolves.
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(offset, buf, 0, length);
    return buf;
  }

  /** Like read, into target[targetOffset, targetOffset+length) (lets the engine reuse buffers). */
  async readInto(
    offset: number,
    target: Buffer,
    targetOffset = 0,
    length = target.length - targetOffset,
  ): Promise<void> {
    checkTargetBuffer(target, targetOffset, length);
    this.checkRange('read', offset, length);
    if (length === 0) return;
    await this.split(offset, length, this.maxRequest, (off, len) =>
      this.enqueue({
        command: C.NBD_CMD_READ,
        flags: 0,
        offset: off,
        length: len,
        target,
        targetOffset: targetOffset + (off - offset),
      }),
    );
  }

  /** Writes data at offset. `data` must stay unchanged until the promise settles. */
  async write(offset: number, data: Buffer, o: { fua?: boolean } = {}): Promise<void> {
    this.checkWritable('write');
    if (o.fua) this.require(this.flags.canFua, 'FUA');
    this.checkRange('write', offset, data.length);
    if (data.length === 0) return;
    const flags = o.fua ? C.NBD_CMD_FLAG_FUA : 0;
    await this.split(offset, data.length, this.maxRequest, (off, len) =>
      this.enqueue(
        { command: C.NBD_CMD_WRITE, flags, offset: off, length: len },
        data.subarray(off - offset, off - offset + len),
      ),
    );
  }

  async writeZeroes(
    offset: number,
    length: number,
    o: { noHole?: boolean; fua?: boolean; fastZero?: boolean } = {},
  ): Promise<void> {
    this.checkWritable('write zeroes');
    this.require(this.flags.canWriteZeroes, 'WRITE_ZEROES');
    if (o.fua) this.require(this.flags.canFua, 'FUA');
    if (o.fastZero) this.require(this.flags.canFastZero, 'FAST_ZERO');
    this.checkRange('write zeroes', offset, length);
    if (length === 0) return;
    const flags =
      (o.fua ? C.NBD_CMD_FLAG_FUA : 0) |
      (o.noHole ? C.NBD_CMD_FLAG_NO_HOLE : 0) |
      (o.fastZero ? C.NBD_CMD_FLAG_FAST_ZERO : 0);
    await this.split(offset, length, this.maxRequest, (off, len) =>
      this.enqueue({ command: C.NBD_CMD_WRITE_ZEROES, flags, offset: off, length: len }),
    );
  }

  async flush(): Promise<void> {
    this.require(this.flags.canFlush, 'FLUSH');
    await this.enqueue({ command: C.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 });
  }

  async trim(offset: number, length: number): Promise<void> {
    this.checkWritable('trim');
    this.require(this.flags.canTrim, 'TRIM');
    this.checkRange('trim', offset, length);
    if (length === 0) return;
    await this.split(offset, length, this.maxRequest, (off, len) =>
      this.enqueue({ command: C.NBD_CMD_TRIM, flags: 0, offset: off, length: len }),
    );
  }

  /**
   * Block status of [offset, offset+length) for every negotiated context. The server may describe
   * less than asked, or (for the last extent) more; extents never reach past the export's end.
   */
  async blockStatus(
    offset: number,
    length: number,
    o: { reqOne?: boolean } = {},
  ): Promise<BlockStatusResult> {
    if (this.contexts.size === 0) {
      throw requestError(
        'NBD_UNKNOWN_CONTEXT',
        'BLOCK_STATUS needs a meta context negotiated at connect time',
      );
    }
    this.checkRange('block status', offset, length);
    if (length === 0) return new Map([...this.contexts.keys()].map((k) => [k, []]));
    // The length field is 32 bits; a shorter question is fine, the answer may be shorter anyway.
    const max = C.MAX_REQUEST_LENGTH - (C.MAX_REQUEST_LENGTH % this.blockSize.minimum);
    const ask = Math.min(length, max);
    return (await this.enqueue({
      command: C.NBD_CMD_BLOCK_STATUS,
      flags: o.reqOne ? C.NBD_CMD_FLAG_REQ_ONE : 0,
      offset,
      length: ask,
    })) as BlockStatusResult;
  }

  /** Waits for pending requests, sends NBD_CMD_DISC and closes the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.closeRequested = true;
      if (this.socket.destroyed) {
        resolve();
        return;
      }
      this.socket.once('close', () => resolve());
      if (this.tx.state !== 'open' && this.tx.state !== 'closing') {
        this.socket.destroy();
        return;
      }
      this.maybeFinishClose();
    });
    return this.closing;
  }

  // ---------------------------------------------------------------- internals

  private checkRange(what: string, offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw requestError(
        'NBD_BAD_RANGE',
        `${what} [${offset}, +${length}) is outside the export (size ${this.size})`,
        {
          offset,
          length,
          size: this.size,
        },
      );
    }
    const min = this.blockSize.minimum;
    if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
      throw requestError(
        'NBD_BAD_RANGE',
        `${what} [${offset}, +${length}) is not aligned to the export's minimum block size ${min}`,
        {
          offset,
          length,
          minimum: min,
        },
      );
    }
  }

  private checkWritable(what: string): void {
    if (this.flags.readOnly)
      throw requestError('NBD_READ_ONLY', `cannot ${what}: export "${this.exportName}" is read-only`);
  }

  private require(ok: boolean, feature: string): void {
    if (!ok)
      throw requestError(
        'NBD_UNSUPPORTED',
        `NBD server does not support ${feature} on export "${this.exportName}"`,
        { feature },
      );
  }

  /** Runs `one` over [offset, offset+length) in pieces of at most `max`; settles only when all pieces have. */
  private async split(
    offset: number,
    length: number,
    max: number,
    one: (off: number, len: number) => Promise<unknown>,
  ): Promise<void> {
    if (length <= max) {
      await one(offset, length);
      return;
    }
    const parts: Promise<unknown>[] = [];
    for (let off = offset; off < offset + length; off += max)
      parts.push(one(off, Math.min(max, offset + length - off)));
    // Wait for every piece even when one fails: the caller may reuse the buffer right after.
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private enqueue(req: SubmitRequest, data?: Buffer): Promise<unknown> {
    if (this.closeRequested || this.tx.state !== 'open') return Promise.reject(this.unusableError());
    if (this.inFlight < this.maxInFlight) return this.send(req, data);
    return new Promise((resolve, reject) => this.queue.push({ req, data, resolve, reject }));
  }

  /** For requests made after the connection broke or closed (the cause is attached). */
  private unusableError(): NbdError {
    return connectionUnusable(this.tx.brokenBy, this.tx.state !== 'broken');
  }

  private send(req: SubmitRequest, data: Buffer | undefined): Promise<unknown> {
    const s = this.tx.submit<unknown>(req);
    this.inFlight++;
    if (!this.corked) {
      // Headers submitted in the same tick leave in one writev.
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(s.header);
    if (data && data.length > 0) this.socket.write(data);
    return s.promise.finally(() => {
      this.inFlight--;
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const q = this.queue.shift()!;
      if (this.tx.state !== 'open') {
        q.reject(this.unusableError());
        continue;
      }
      this.send(q.req, q.data).then(q.resolve, q.reject);
    }
    this.maybeFinishClose();
  }

  /** After close(): once the local queue and the wire are empty, disconnect. */
  private maybeFinishClose(): void {
    if (!this.closeRequested || this.queue.length > 0 || this.inFlight > 0) return;
    if (this.tx.state === 'open') this.tx.beginClose();
  }

  /** Called by the socket layer when the transmission broke: fail queued work, drop the socket. */
  private onBroken(): void {
    if (this.tx.state !== 'broken') return;
    const err = this.tx.brokenBy ?? this.unusableError();
    // Queued requests fail with the same error as those on the wire.
    for (const q of this.queue.splice(0)) q.reject(err);
    if (!this.socket.destroyed) {
      this.log.debug('nbd: connection broken', { code: err.code });
      this.socket.destroy();
    }
  }
}

function connectTimeoutError(where: string, ms: number): NbdError {
  return new NbdError(
    'NBD_CONNECT_TIMEOUT',
    `NBD connect/handshake with ${where} took longer than ${ms} ms`,
    {
      kind: 'unavailable',
      connectionUsable: false,
      hint: 'Check that the NBD server is alive; qemu-nbd with all its --shared client slots in use accepts a connection but never answers it.',
    },
  );
}

/** What the handshake agreed on, for the log. */
function describeExport(n: NegotiatedExport): Record<string, unknown> {
  return {
    exportName: n.exportName,
    size: n.size,
    structured: n.structured,
    contexts: [...n.contexts.keys()],
    blockSize: n.blockSize,
  };
}
