/**
 * Typed NBD failures. Every error says whether the connection it happened on can still be used:
 * a server's error reply to one request leaves the connection open (proto.md: the client MAY
 * continue), while anything that desynchronises the byte stream (bad magic, unknown cookie, a
 * reply that overruns its request, a truncated stream) or a failed negotiation leaves it unusable,
 * and every request pending on it fails with the same error.
 */
import { type CodeOfKind, type ErrorKind, HavenError, type KindOf } from '../core/errors.ts';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from './constants.ts';
import { NBD_CODES } from './error-codes.ts';

export type NbdCode = keyof typeof NBD_CODES;

export interface NbdErrorOptions<K extends ErrorKind = ErrorKind> {
  kind: K;
  connectionUsable: boolean;
  hint?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class NbdError<C extends NbdCode = NbdCode> extends HavenError<C> {
  /** False when the connection must be dropped (and every pending request failed). */
  readonly connectionUsable: boolean;

  constructor(code: C, message: string, options: NbdErrorOptions<KindOf<C>>) {
    super(code, message, options);
    this.connectionUsable = options.connectionUsable;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), connectionUsable: this.connectionUsable };
  }
}

interface ErrnoInfo {
  code: NbdCode;
  name: string;
  hint: string;
}

const ERRNO: Record<number, ErrnoInfo> = {
  [NBD_EPERM]: {
    code: 'NBD_EPERM',
    name: 'EPERM',
    hint: 'The NBD server refused the operation; check that the export is writable.',
  },
  [NBD_EIO]: {
    code: 'NBD_EIO',
    name: 'EIO',
    hint: 'The NBD server hit an I/O error on its image; check the source disk and the server log.',
  },
  [NBD_ENOMEM]: {
    code: 'NBD_ENOMEM',
    name: 'ENOMEM',
    hint: 'The NBD server ran out of memory; use smaller requests or fewer in flight.',
  },
  [NBD_EINVAL]: {
    code: 'NBD_EINVAL',
    name: 'EINVAL',
    hint: 'The NBD server rejected the request as invalid (range, alignment or flags).',
  },
  [NBD_ENOSPC]: {
    code: 'NBD_ENOSPC',
    name: 'ENOSPC',
    hint: 'The NBD server has no space left for this write; free space behind the export.',
  },
  [NBD_EOVERFLOW]: {
    code: 'NBD_EOVERFLOW',
    name: 'EOVERFLOW',
    hint: 'The request was too large for an unfragmented reply; use smaller reads.',
  },
  [NBD_ENOTSUP]: {
    code: 'NBD_ENOTSUP',
    name: 'ENOTSUP',
    hint: 'The NBD server does not support this operation here (e.g. fast zeroing); use the slow path.',
  },
  [NBD_ESHUTDOWN]: {
    code: 'NBD_ESHUTDOWN',
    name: 'ESHUTDOWN',
    hint: 'The NBD server is shutting down; reconnect when it is back.',
  },
};

/**
 * An error reply from the server to one request. Unknown values are treated as EINVAL, as
 * proto.md asks ("The client SHOULD treat an unexpected error value as if it had been
 * NBD_EINVAL"). ESHUTDOWN obliges the client to disconnect, so only it leaves the connection
 * unusable.
 */
export class NbdServerError extends NbdError {
  readonly errno: number;
  readonly errnoName: string;

  constructor(
    errno: number,
    command: string,
    range: { offset: number; length: number },
    message?: string,
    errorOffset?: number,
  ) {
    const info = ERRNO[errno] ?? ERRNO[NBD_EINVAL]!;
    const where = errorOffset === undefined ? '' : ` at offset ${errorOffset}`;
    const text = message ? `: ${message}` : '';
    super(
      info.code,
      `NBD server failed ${command} [${range.offset}, +${range.length})${where} with ${info.name}${text}`,
      {
        kind: NBD_CODES[info.code].kind,
        connectionUsable: errno !== NBD_ESHUTDOWN,
        hint: info.hint,
        details: {
          errno,
          command,
          offset: range.offset,
          length: range.length,
          ...(errorOffset === undefined ? {} : { errorOffset }),
          ...(message ? { serverMessage: message } : {}),
        },
      },
    );
    this.errno = errno;
    this.errnoName = info.name;
  }
}

/** The server broke the protocol: the stream can no longer be trusted. */
export function protocolError(
  code: NbdCode & CodeOfKind<'protocol'>,
  message: string,
  details?: Record<string, unknown>,
): NbdError {
  return new NbdError(code, message, {
    kind: 'protocol',
    connectionUsable: false,
    hint: 'The NBD server sent something the protocol does not allow; reconnect, and report it if it repeats.',
    details,
  });
}

/** The caller asked for something the export cannot do; nothing was sent. */
export function requestError(
  code: 'NBD_BAD_RANGE' | 'NBD_UNSUPPORTED' | 'NBD_READ_ONLY' | 'NBD_UNKNOWN_CONTEXT',
  message: string,
  details?: Record<string, unknown>,
): NbdError {
  const kind = NBD_CODES[code].kind;
  const hint =
    code === 'NBD_BAD_RANGE'
      ? 'Keep requests inside the export and aligned to its minimum block size.'
      : code === 'NBD_UNSUPPORTED'
        ? 'The server did not advertise this feature; use another path or another server.'
        : code === 'NBD_READ_ONLY'
          ? 'The export is read-only; export it writable to change it.'
          : 'Ask for the meta context when connecting (metaContexts).';
  return new NbdError(code, message, { kind, connectionUsable: true, hint, details });
}

/** The stream ended or failed under us. */
export function connectionLost(message: string, cause?: unknown, truncated = false): NbdError {
  return new NbdError(truncated ? 'NBD_TRUNCATED' : 'NBD_CONNECTION_LOST', message, {
    kind: 'io',
    connectionUsable: false,
    cause,
    hint: 'The NBD connection dropped; check that the server (qemu-nbd or QEMU) is still running, then retry.',
  });
}

/** A request on a connection that is already broken or closed. */
export function connectionUnusable(reason: NbdError | undefined, closed: boolean): NbdError {
  const why = closed
    ? 'the connection was closed'
    : `the connection broke earlier (${reason?.code ?? 'unknown'})`;
  return new NbdError(closed ? 'NBD_CLOSED' : 'NBD_CONNECTION_UNUSABLE', `NBD request refused: ${why}`, {
    kind: closed ? 'usage' : 'io',
    connectionUsable: false,
    cause: reason,
    hint: 'Open a new connection.',
  });
}

export function timeoutError(ms: number, pending: number): NbdError {
  return new NbdError(
    'NBD_TIMEOUT',
    `NBD server sent nothing for ${ms} ms with ${pending} request(s) pending`,
    {
      kind: 'unavailable',
      connectionUsable: false,
      hint: 'The NBD server stopped answering; check that it is alive, or raise requestTimeoutMs.',
      details: { timeoutMs: ms, pending },
    },
  );
}

/** Negotiation failed: the connection never reached the transmission phase. */
export function handshakeError<C extends NbdCode>(
  code: C,
  message: string,
  kind: KindOf<C>,
  hint: string,
  details?: Record<string, unknown>,
): NbdError<C> {
  return new NbdError(code, message, { kind, connectionUsable: false, hint, details });
}

export function isNbdError(e: unknown): e is NbdError {
  return e instanceof NbdError;
}

/** A read into a caller's buffer must fit in it (readInto's targetOffset and length). */
export function checkTargetBuffer(target: Buffer, targetOffset: number, length: number): void {
  if (targetOffset < 0 || length < 0 || targetOffset + length > target.length) {
    throw requestError(
      'NBD_BAD_RANGE',
      `target buffer of ${target.length} bytes cannot take ${length} bytes at ${targetOffset}`,
    );
  }
}
