/**
 * The transmission phase as an explicit state machine, without I/O: it hands out cookies and
 * request headers, keeps every pending request by cookie, consumes reply bytes through the reply
 * parser, and settles each request's promise when its reply is complete.
 *
 * States:
 *   open     requests may be submitted
 *   closing  no new requests; when the last pending one settles, the owner sends NBD_CMD_DISC
 *            (entered by close(), or when the server answers ESHUTDOWN, after which proto.md
 *            says the client MUST initiate a soft disconnect)
 *   broken   a protocol violation, a truncated stream or a socket failure: every pending request
 *            failed with the same error and nothing more may be sent
 *   closed   NBD_CMD_DISC was produced; the owner ends the socket
 */
import type { Logger } from '../core/log.ts';
import { silentLogger } from '../core/log.ts';
import {
  commandName,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_EINVAL,
  NBD_ESHUTDOWN,
} from './constants.ts';
import {
  connectionLost,
  connectionUnusable,
  type NbdError,
  NbdServerError,
  protocolError,
} from './errors.ts';
import { ReplyParser, type ReplyRequestInfo, type ReplySink } from './reply-parser.ts';
import { encodeRequest } from './request-codec.ts';

export type TransmissionState = 'open' | 'closing' | 'broken' | 'closed';

export interface BlockExtent {
  length: number;
  flags: number;
}

/** BLOCK_STATUS result: extents per negotiated meta context name, starting at the request offset. */
export type BlockStatusResult = Map<string, BlockExtent[]>;

export interface SubmitRequest {
  command: number;
  flags: number;
  offset: number;
  length: number;
  /** READ: where the bytes go. */
  target?: Buffer;
  targetOffset?: number;
}

export interface Submitted<T> {
  cookie: number;
  /** The 28-byte request header to send (followed by the data, for WRITE). */
  header: Buffer;
  promise: Promise<T>;
}

/** Byte ranges of a read that replies have filled, to detect overlaps and gaps (proto.md). */
class Coverage {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  covered = 0;

  /** Adds [start, end); false if it overlaps what is already covered. */
  add(start: number, end: number): boolean {
    const n = this.starts.length;
    const lastEnd = n > 0 ? this.ends[n - 1]! : -1;
    if (start >= lastEnd) {
      // In-order arrival, the usual case: extend or append.
      if (start === lastEnd) this.ends[n - 1] = end;
      else {
        this.starts.push(start);
        this.ends.push(end);
      }
      this.covered += end - start;
      return true;
    }
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    // lo is the first interval ending after start; it must begin at or after end.
    if (lo < n && this.starts[lo]! < end) return false;
    this.starts.splice(lo, 0, start);
    this.ends.splice(lo, 0, end);
    this.covered += end - start;
    return true;
  }
}

interface Pending extends ReplyRequestInfo {
  resolve: (v: unknown) => void;
  reject: (e: NbdError) => void;
  target: Buffer | undefined;
  /** target index of export offset `offset`. */
  targetBase: number;
  coverage: Coverage | undefined;
  extents: BlockStatusResult | undefined;
  seenContexts: Set<number> | undefined;
  error: NbdServerError | undefined;
}

export interface TransmissionOptions {
  structured: boolean;
  /** Negotiated meta contexts, name → id. */
  contexts: ReadonlyMap<string, number>;
  exportSize: number;
  maxBlockStatusPayload?: number;
  log?: Logger;
}

const COOKIE_LIMIT = 0x1_0000_0000;

export class Transmission implements ReplySink<Pending> {
  private current: TransmissionState = 'open';
  private readonly pending = new Map<number, Pending>();
  private readonly parser: ReplyParser<Pending>;
  private readonly contextNames = new Map<number, string>();
  private nextCookie = 1;
  private failure: NbdError | undefined;
  private readonly log: Logger;
  /** Called when a closing transmission has no more pending requests. */
  onIdle: (() => void) | undefined;

  constructor(private readonly options: TransmissionOptions) {
    this.parser = new ReplyParser<Pending>(this, {
      structured: options.structured,
      maxBlockStatusPayload: options.maxBlockStatusPayload,
    });
    for (const [name, id] of options.contexts) this.contextNames.set(id, name);
    this.log = options.log ?? silentLogger;
  }

  get state(): TransmissionState {
    return this.current;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** The error that broke the connection, if it is broken. */
  get brokenBy(): NbdError | undefined {
    return this.failure;
  }

  /** Registers a request and returns its header. Throws if the transmission is not open. */
  submit<T>(r: SubmitRequest): Submitted<T> {
    if (this.current !== 'open') throw connectionUnusable(this.failure, this.current !== 'broken');
    const cookie = this.allocateCookie();
    let resolve!: (v: unknown) => void;
    let reject!: (e: NbdError) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res as (v: unknown) => void;
      reject = rej;
    });
    const isRead = r.command === NBD_CMD_READ;
    const p: Pending = {
      cookie,
      command: r.command,
      flags: r.flags,
      offset: r.offset,
      length: r.length,
      resolve,
      reject,
      target: r.target,
      targetBase: r.targetOffset ?? 0,
      coverage: isRead ? new Coverage() : undefined,
      extents: r.command === NBD_CMD_BLOCK_STATUS ? new Map() : undefined,
      seenContexts: r.command === NBD_CMD_BLOCK_STATUS ? new Set() : undefined,
      error: undefined,
    };
    this.pending.set(cookie, p);
    const header = encodeRequest({
      flags: r.flags,
      command: r.command,
      cookie,
      offset: r.offset,
      length: r.length,
    });
    return { cookie, header, promise };
  }

  /** Cookies are distinct from every pending one (proto.md); they wrap below 2^32. */
  private allocateCookie(): number {
    for (;;) {
      const c = this.nextCookie;
      this.nextCookie = c + 1 >= COOKIE_LIMIT ? 1 : c + 1;
      if (!this.pending.has(c)) return c;
    }
  }

  /** Reply bytes from the socket. A violation breaks the transmission (and is not thrown). */
  feed(buf: Buffer, start = 0, end = buf.length): void {
    if (this.current === 'broken' || this.current === 'closed') return;
    try {
      this.parser.feed(buf, start, end);
    } catch (e) {
      this.fail(e as NbdError);
    }
  }

  /** See ReplyParser.directView. */
  directView(): Buffer | undefined {
    if (this.current === 'broken' || this.current === 'closed') return undefined;
    return this.parser.directView();
  }

  feedDirect(n: number): void {
    if (this.current === 'broken' || this.current === 'closed') return;
    try {
      this.parser.feedDirect(n);
    } catch (e) {
      this.fail(e as NbdError);
    }
  }

  /** Stop accepting requests; onIdle fires (now or later) when nothing is pending. */
  beginClose(): void {
    if (this.current !== 'open') return;
    this.current = 'closing';
    this.maybeIdle();
  }

  /** The NBD_CMD_DISC request; after it the transmission is closed (DISC has no reply). */
  disconnectRequest(): Buffer {
    this.current = 'closed';
    return encodeRequest({ flags: 0, command: NBD_CMD_DISC, cookie: 0, offset: 0, length: 0 });
  }

  /** Breaks the transmission: every pending request fails with `err`. Idempotent. */
  fail(err: NbdError): void {
    if (this.current === 'broken') return;
    if (this.current === 'closed' && this.pending.size === 0) return;
    this.current = 'broken';
    this.failure = err;
    const all = [...this.pending.values()];
    this.pending.clear();
    if (all.length > 0)
      this.log.debug('nbd: failing pending requests', { count: all.length, code: err.code });
    for (const p of all) p.reject(err);
  }

  /** The byte stream ended (or errored). Anything still expected is lost. */
  end(cause?: unknown): void {
    if (this.current === 'broken') return;
    if (this.parser.midReply) {
      this.fail(connectionLost('NBD server closed the connection in the middle of a reply', cause, true));
    } else if (this.pending.size > 0) {
      this.fail(connectionLost(`NBD connection lost with ${this.pending.size} request(s) pending`, cause));
    } else if (this.current === 'closed') {
      return;
    } else {
      // Nothing was lost, but nothing more can be sent either.
      this.current = 'broken';
      this.failure = connectionLost('NBD connection closed by the server', cause);
    }
  }

  private maybeIdle(): void {
    if (this.current === 'closing' && this.pending.size === 0) this.onIdle?.();
  }

  private settle(p: Pending, fn: () => void): void {
    this.pending.delete(p.cookie);
    fn();
    this.maybeIdle();
  }

  // ------------------------------------------------------------------ ReplySink

  request(cookie: number): Pending | undefined {
    return this.pending.get(cookie);
  }

  data(p: Pending, offset: number, src: Buffer, start: number, end: number): void {
    this.cover(p, offset, end - start);
    if (p.target) src.copy(p.target, p.targetBase + (offset - p.offset), start, end);
  }

  dataTarget(p: Pending, offset: number, length: number): Buffer | undefined {
    if (!p.target) return undefined;
    const at = p.targetBase + (offset - p.offset);
    return p.target.subarray(at, at + length);
  }

  dataPlaced(p: Pending, offset: number, length: number): void {
    this.cover(p, offset, length);
  }

  hole(p: Pending, offset: number, length: number): void {
    this.cover(p, offset, length);
    if (p.target) {
      const at = p.targetBase + (offset - p.offset);
      p.target.fill(0, at, at + length);
    }
  }

  private cover(p: Pending, offset: number, length: number): void {
    // A run of data that continues the previous one (consecutive socket reads) is the common case.
    if (!p.coverage!.add(offset, offset + length)) {
      throw protocolError('NBD_BAD_REPLY', `read reply chunks overlap at [${offset}, +${length})`, {
        offset,
        length,
      });
    }
  }

  blockStatus(p: Pending, contextId: number, desc: Buffer, start: number, end: number): void {
    const name = this.contextNames.get(contextId);
    if (name === undefined) {
      throw protocolError(
        'NBD_BAD_REPLY',
        `block status for meta context id ${contextId}, which was not negotiated`,
        {
          contextId,
        },
      );
    }
    if (p.seenContexts!.has(contextId)) {
      throw protocolError('NBD_BAD_REPLY', `two block status chunks for ${name} in one reply`);
    }
    p.seenContexts!.add(contextId);
    const limit = this.options.exportSize - p.offset;
    const extents: BlockExtent[] = [];
    let sum = 0;
    for (let at = start; at < end && sum < limit; at += 8) {
      // The final extent may run past the request (proto.md); never past the export.
      const length = Math.min(desc.readUInt32BE(at), limit - sum);
      extents.push({ length, flags: desc.readUInt32BE(at + 4) });
      sum += length;
    }
    p.extents!.set(name, extents);
  }

  error(p: Pending, errno: number, message: string, errorOffset: number | undefined): void {
    // The first error is the one reported; later ones (ERROR_OFFSET may repeat) add nothing.
    p.error ??= new NbdServerError(
      errno === 0 ? NBD_EINVAL : errno,
      commandName(p.command),
      p,
      message,
      errorOffset,
    );
  }

  done(p: Pending): void {
    if (p.error) {
      const err = p.error;
      this.settle(p, () => p.reject(err));
      if (err.errno === NBD_ESHUTDOWN && this.current === 'open') {
        this.log.debug('nbd: server is shutting down; disconnecting');
        this.beginClose();
      }
      return;
    }
    if (p.coverage && p.coverage.covered !== p.length) {
      throw protocolError(
        'NBD_SHORT_REPLY',
        `read [${p.offset}, +${p.length}) completed with only ${p.coverage.covered} bytes described`,
        { offset: p.offset, length: p.length, covered: p.coverage.covered },
      );
    }
    if (p.extents) {
      if (p.extents.size !== this.contextNames.size) {
        const missing = [...this.contextNames.values()].filter((n) => !p.extents!.has(n));
        throw protocolError(
          'NBD_BAD_REPLY',
          `block status reply lacks meta context(s) ${missing.join(', ')}`,
        );
      }
      const result = p.extents;
      this.settle(p, () => p.resolve(result));
      return;
    }
    this.settle(p, () => p.resolve(undefined));
  }
}
