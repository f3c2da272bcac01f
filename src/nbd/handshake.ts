/**
 * The handshake as an explicit state machine, without I/O (proto.md "Fixed newstyle
 * negotiation", "NBD_OPT_INFO and NBD_OPT_GO", "Metadata querying"):
 *
 *   greeting ──> structured ──> meta ──> go ──> done
 *                     │                   │
 *                     └── (no contexts) ──┘└─ ERR_UNSUP ─> export-name ──> done
 *
 * greeting     read NBDMAGIC/IHAVEOPT and the handshake flags; answer with client flags
 *              (FIXED_NEWSTYLE, and NO_ZEROES when offered) and NBD_OPT_STRUCTURED_REPLY
 * structured   ACK: structured replies on; ERR_UNSUP: simple replies only (then no contexts)
 * meta         NBD_OPT_SET_META_CONTEXT: collect NBD_REP_META_CONTEXT until ACK; every requested
 *              context must be granted
 * go           NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE: collect NBD_REP_INFO until ACK, which
 *              enters transmission; an old server without GO gets NBD_OPT_EXPORT_NAME instead
 *
 * feed() takes bytes and returns what to send, and either the negotiated export (plus any bytes
 * that followed it) or an error. After an error the state machine also asks to send
 * NBD_OPT_ABORT (a soft disconnect, which proto.md requires of a client leaving haggling).
 */
import {
  DEFAULT_MAX_BLOCK,
  DEFAULT_MIN_BLOCK,
  DEFAULT_PREFERRED_BLOCK,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_ROTATIONAL,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_RESIZE,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  OPTION_REPLY_HEADER_SIZE,
  optionName,
  optionReplyName,
} from './constants.ts';
import { handshakeError, type NbdError, protocolError } from './errors.ts';
import {
  EXPORT_NAME_REPLY_SIZE,
  EXPORT_NAME_ZEROES,
  encodeAbort,
  encodeClientFlags,
  encodeExportName,
  encodeGo,
  encodeSetMetaContext,
  encodeStructuredReply,
  GREETING_SIZE,
  type OptionReplyHeader,
  parseExportNameReply,
  parseGreeting,
  parseInfoReply,
  parseMetaContextReply,
  parseOptionReplyHeader,
} from './option-codec.ts';

export interface TransmissionFlags {
  readOnly: boolean;
  canFlush: boolean;
  canFua: boolean;
  rotational: boolean;
  canTrim: boolean;
  canWriteZeroes: boolean;
  canDf: boolean;
  canMultiConn: boolean;
  canResize: boolean;
  canCache: boolean;
  canFastZero: boolean;
}

export function decodeTransmissionFlags(f: number, structured: boolean): TransmissionFlags {
  return {
    readOnly: (f & NBD_FLAG_READ_ONLY) !== 0,
    canFlush: (f & NBD_FLAG_SEND_FLUSH) !== 0,
    canFua: (f & NBD_FLAG_SEND_FUA) !== 0,
    rotational: (f & NBD_FLAG_ROTATIONAL) !== 0,
    canTrim: (f & NBD_FLAG_SEND_TRIM) !== 0,
    canWriteZeroes: (f & NBD_FLAG_SEND_WRITE_ZEROES) !== 0,
    // DF only means something with structured replies (proto.md "NBD_FLAG_SEND_DF").
    canDf: structured && (f & NBD_FLAG_SEND_DF) !== 0,
    canMultiConn: (f & NBD_FLAG_CAN_MULTI_CONN) !== 0,
    canResize: (f & NBD_FLAG_SEND_RESIZE) !== 0,
    canCache: (f & NBD_FLAG_SEND_CACHE) !== 0,
    canFastZero: (f & NBD_FLAG_SEND_WRITE_ZEROES) !== 0 && (f & NBD_FLAG_SEND_FAST_ZERO) !== 0,
  };
}

export interface BlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

export interface NegotiatedExport {
  exportName: string;
  size: number;
  transmissionFlags: number;
  flags: TransmissionFlags;
  structured: boolean;
  blockSize: BlockSize;
  /** Whether the server sent NBD_INFO_BLOCK_SIZE (we then MUST honour it). */
  blockSizeAdvertised: boolean;
  contexts: Map<string, number>;
  description: string | undefined;
  /** 'go' normally; 'export-name' for servers without NBD_OPT_GO. */
  via: 'go' | 'export-name';
}

export interface HandshakeOptions {
  exportName: string;
  metaContexts: readonly string[];
}

export interface HandshakeStep {
  send: Buffer[];
  done?: NegotiatedExport;
  /** Bytes received after the handshake ended (belong to the transmission phase). */
  rest?: Buffer;
  error?: NbdError;
}

type Phase = 'greeting' | 'structured' | 'meta' | 'go' | 'export-name' | 'done' | 'failed';

const isPowerOf2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

export class Handshake {
  private phase: Phase = 'greeting';
  private buf: Buffer = Buffer.alloc(0);
  private noZeroes = false;
  private structured = false;
  private readonly contexts = new Map<string, number>();
  private size: number | undefined;
  private transmissionFlags = 0;
  private blockSize: BlockSize | undefined;
  private description: string | undefined;
  private greeted = false;
  private via: 'go' | 'export-name' = 'go';

  constructor(private readonly options: HandshakeOptions) {
    // Validate names up front: encoding throws a typed NBD_BAD_NAME.
    encodeGo(options.exportName, []);
    encodeSetMetaContext(options.exportName, options.metaContexts);
  }

  get state(): Phase {
    return this.phase;
  }

  feed(chunk: Buffer): HandshakeStep {
    if (this.phase === 'done' || this.phase === 'failed') return { send: [] };
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const send: Buffer[] = [];
    try {
      for (;;) {
        const step = this.advance(send);
        if (step === 'more') return { send };
        if (step === 'done') {
          const rest = this.buf.length > 0 ? this.buf : undefined;
          this.buf = Buffer.alloc(0);
          return { send, done: this.result(), ...(rest ? { rest } : {}) };
        }
      }
    } catch (e) {
      this.phase = 'failed';
      this.buf = Buffer.alloc(0);
      // Past the greeting, leave haggling with a soft disconnect.
      return { send: send.length || this.greeted ? [...send, encodeAbort()] : send, error: e as NbdError };
    }
  }

  /** Consumes one message if complete; returns 'more' when waiting for bytes. */
  private advance(send: Buffer[]): 'more' | 'again' | 'done' {
    switch (this.phase) {
      case 'greeting': {
        if (this.buf.length < GREETING_SIZE) return 'more';
        const g = parseGreeting(this.buf);
        this.take(GREETING_SIZE);
        if (!(g.handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE)) {
          throw handshakeError(
            'NBD_NOT_FIXED_NEWSTYLE',
            'NBD server does not support fixed newstyle negotiation',
            'unavailable',
            'Use a newer NBD server (qemu-nbd, nbdkit and nbd-server all support it).',
          );
        }
        this.greeted = true;
        this.noZeroes = (g.handshakeFlags & NBD_FLAG_NO_ZEROES) !== 0;
        send.push(encodeClientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (this.noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)));
        send.push(encodeStructuredReply());
        this.phase = 'structured';
        return 'again';
      }
      case 'structured':
      case 'meta':
      case 'go': {
        const msg = this.optionReply();
        if (!msg) return 'more';
        return this.onOptionReply(msg.header, msg.payload, send);
      }
      case 'export-name': {
        const need = EXPORT_NAME_REPLY_SIZE + (this.noZeroes ? 0 : EXPORT_NAME_ZEROES);
        if (this.buf.length < need) return 'more';
        const r = parseExportNameReply(this.buf);
        this.take(need);
        this.size = r.size;
        this.transmissionFlags = r.transmissionFlags;
        this.phase = 'done';
        return 'done';
      }
      default:
        return 'more';
    }
  }

  private take(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  private optionReply(): { header: OptionReplyHeader; payload: Buffer } | undefined {
    if (this.buf.length < OPTION_REPLY_HEADER_SIZE) return undefined;
    const header = parseOptionReplyHeader(this.buf);
    const total = OPTION_REPLY_HEADER_SIZE + header.length;
    if (this.buf.length < total) return undefined;
    const payload = Buffer.from(this.buf.subarray(OPTION_REPLY_HEADER_SIZE, total));
    this.take(total);
    return { header, payload };
  }

  private expectedOption(): number {
    return this.phase === 'structured'
      ? NBD_OPT_STRUCTURED_REPLY
      : this.phase === 'meta'
        ? NBD_OPT_SET_META_CONTEXT
        : NBD_OPT_GO;
  }

  private onOptionReply(h: OptionReplyHeader, payload: Buffer, send: Buffer[]): 'again' | 'done' {
    const expected = this.expectedOption();
    if (h.option !== expected) {
      throw protocolError(
        'NBD_BAD_REPLY',
        `reply to option ${optionName(h.option)} while waiting for ${optionName(expected)}`,
      );
    }
    if (h.type & NBD_REP_FLAG_ERROR) return this.onOptionError(h, payload, send);
    switch (this.phase) {
      case 'structured':
        if (h.type !== NBD_REP_ACK) throw this.unexpected(h);
        this.structured = true;
        this.afterStructured(send);
        return 'again';
      case 'meta':
        if (h.type === NBD_REP_META_CONTEXT) {
          const m = parseMetaContextReply(payload);
          this.contexts.set(m.name, m.id);
          return 'again';
        }
        if (h.type !== NBD_REP_ACK) throw this.unexpected(h);
        this.checkContexts();
        this.sendGo(send);
        return 'again';
      default: {
        // go
        if (h.type === NBD_REP_INFO) {
          const info = parseInfoReply(payload);
          if (info.info === 'export') {
            this.size = info.size;
            this.transmissionFlags = info.transmissionFlags;
          } else if (info.info === 'block-size') {
            this.blockSize = checkBlockSize(info);
          } else if (info.info === 'description') {
            this.description = info.description;
          }
          return 'again';
        }
        if (h.type !== NBD_REP_ACK) throw this.unexpected(h);
        if (this.size === undefined) {
          throw protocolError('NBD_BAD_REPLY', 'NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
        }
        this.phase = 'done';
        return 'done';
      }
    }
  }

  private unexpected(h: OptionReplyHeader): NbdError {
    return protocolError(
      'NBD_BAD_REPLY',
      `unexpected reply ${optionReplyName(h.type)} to option ${optionName(h.option)}`,
    );
  }

  private afterStructured(send: Buffer[]): void {
    if (this.options.metaContexts.length > 0) {
      send.push(encodeSetMetaContext(this.options.exportName, this.options.metaContexts));
      this.phase = 'meta';
    } else {
      this.sendGo(send);
    }
  }

  private sendGo(send: Buffer[]): void {
    send.push(encodeGo(this.options.exportName, [NBD_INFO_BLOCK_SIZE]));
    this.phase = 'go';
  }

  private checkContexts(): void {
    const missing = this.options.metaContexts.filter((c) => !this.contexts.has(c));
    if (missing.length > 0) {
      throw this.contextError(missing, 'the server did not grant them');
    }
  }

  private contextError(missing: readonly string[], why: string): NbdError {
    const bitmap = missing.some((c) => c.startsWith('qemu:dirty-bitmap:'));
    return handshakeError(
      'NBD_META_CONTEXT_UNSUPPORTED',
      `NBD export "${this.options.exportName}" does not offer meta context(s) ${missing.join(', ')}: ${why}`,
      'not-found',
      bitmap
        ? 'The dirty bitmap is not exported: check the checkpoint/bitmap name (qemu-nbd -B, backup-begin); fall back to a checksum resync.'
        : 'Use a server that supports NBD block status (qemu-nbd >= 2.12, nbdkit).',
      { missing: [...missing], granted: [...this.contexts.keys()] },
    );
  }

  private onOptionError(h: OptionReplyHeader, payload: Buffer, send: Buffer[]): 'again' | 'done' {
    const text = payload.toString('utf8');
    const what = `${optionName(h.option)} failed with ${optionReplyName(h.type)}${text ? `: ${text}` : ''}`;
    const details = { option: optionName(h.option), reply: optionReplyName(h.type), serverMessage: text };
    if (h.type === NBD_REP_ERR_TLS_REQD) {
      throw handshakeError(
        'NBD_TLS_REQUIRED',
        `NBD server requires TLS (${what})`,
        'unavailable',
        'Haven connects without TLS; export without --tls-creds or reach it over SSH.',
        details,
      );
    }
    if (h.type === NBD_REP_ERR_SHUTDOWN) {
      throw handshakeError(
        'NBD_SERVER_SHUTTING_DOWN',
        `NBD server is shutting down (${what})`,
        'unavailable',
        'Retry when the server is back.',
        details,
      );
    }
    switch (this.phase) {
      case 'structured':
        // Old servers: carry on with simple replies, unless block status was wanted.
        if (this.options.metaContexts.length > 0) {
          throw this.contextError(this.options.metaContexts, `structured replies were refused (${what})`);
        }
        this.afterStructured(send);
        return 'again';
      case 'meta':
        throw this.contextError(this.options.metaContexts, what);
      default:
        if (h.type === NBD_REP_ERR_UNKNOWN) {
          throw handshakeError(
            'NBD_NO_SUCH_EXPORT',
            `NBD server has no export named "${this.options.exportName}"${text ? ` (${text})` : ''}`,
            'not-found',
            'Check the export name (qemu-nbd -x, or the name in the backup job XML).',
            { exportName: this.options.exportName, serverMessage: text },
          );
        }
        if (h.type === NBD_REP_ERR_UNSUP) {
          // proto.md: fall back to NBD_OPT_EXPORT_NAME when GO is not supported.
          send.push(encodeExportName(this.options.exportName));
          this.phase = 'export-name';
          this.via = 'export-name';
          return 'again';
        }
        throw handshakeError(
          h.type === NBD_REP_ERR_POLICY ? 'NBD_EXPORT_REFUSED' : 'NBD_OPTION_FAILED',
          `NBD server refused export "${this.options.exportName}": ${what}`,
          h.type === NBD_REP_ERR_POLICY ? 'refused' : 'protocol',
          'Check the server configuration for this export.',
          details,
        );
    }
  }

  private result(): NegotiatedExport {
    const advertised = this.blockSize !== undefined;
    const size = this.size ?? 0;
    const bs = this.blockSize ?? {
      minimum: DEFAULT_MIN_BLOCK,
      preferred: DEFAULT_PREFERRED_BLOCK,
      maximum: DEFAULT_MAX_BLOCK,
    };
    return {
      exportName: this.options.exportName,
      size,
      transmissionFlags: this.transmissionFlags,
      flags: decodeTransmissionFlags(this.transmissionFlags, this.structured),
      structured: this.structured,
      blockSize: bs,
      blockSizeAdvertised: advertised,
      contexts: new Map(this.contexts),
      description: this.description,
      via: this.via,
    };
  }
}

/** proto.md "Block size constraints": minimum a power of 2 up to 64 KiB, preferred a power of 2, maximum a multiple of minimum. */
function checkBlockSize(b: { minimum: number; preferred: number; maximum: number }): BlockSize {
  const bad = (why: string) =>
    protocolError('NBD_BAD_REPLY', `invalid NBD_INFO_BLOCK_SIZE: ${why}`, { ...b });
  if (!isPowerOf2(b.minimum) || b.minimum > 65536) throw bad('minimum is not a power of 2 up to 65536');
  if (!isPowerOf2(b.preferred) || b.preferred < b.minimum)
    throw bad('preferred is not a power of 2 >= minimum');
  if (b.maximum !== 0xffffffff && (b.maximum < b.minimum || b.maximum % b.minimum !== 0)) {
    throw bad('maximum is not a multiple of minimum');
  }
  return { minimum: b.minimum, preferred: b.preferred, maximum: b.maximum };
}
