/**
 * Errors of the replication stream. Every code here is part of the wire format: a receiver sends
 * it in an ERROR frame, the sender rethrows it as a HavenError with the same code, so operators
 * and the engine see one stable vocabulary on both sides (docs/stream-protocol.md §7).
 */
import { type ErrorKind, HavenError } from '../core/errors.ts';

interface CodeInfo {
  kind: ErrorKind;
  hint: string;
}

const PEER_BUG = 'The peer sent a malformed stream: check that both sides run the same Haven version.';

/** Every PROTO_* code, its kind and what the caller should do. */
export const PROTOCOL_CODES = {
  PROTO_BAD_MAGIC: {
    kind: 'protocol',
    hint: 'The peer is not a Haven stream (a shell banner or motd on stdout?).',
  },
  PROTO_UNKNOWN_FRAME: { kind: 'protocol', hint: PEER_BUG },
  PROTO_FRAME_TOO_LARGE: { kind: 'protocol', hint: PEER_BUG },
  PROTO_TRUNCATED: {
    kind: 'protocol',
    hint: 'The stream ended inside a frame; the connection was cut. Run again to resume.',
  },
  PROTO_BAD_FRAME: { kind: 'protocol', hint: PEER_BUG },
  PROTO_UNEXPECTED_FRAME: { kind: 'protocol', hint: PEER_BUG },
  PROTO_DUPLICATE_HELLO: { kind: 'protocol', hint: PEER_BUG },
  PROTO_DUPLICATE_OPEN: {
    kind: 'protocol',
    hint: 'Finish (END_DELTA, COMMIT) or ABORT the open delta before opening another.',
  },
  PROTO_VERSION: { kind: 'protocol', hint: 'Upgrade Haven so both sides share a protocol version.' },
  PROTO_CAPABILITY: {
    kind: 'protocol',
    hint: 'Use a digest algorithm and compression both sides support (the store fixes the digest).',
  },
  PROTO_AUTH_FAILED: {
    kind: 'refused',
    hint: 'Give the sender the token the receiver requires (--token-file), or a client certificate signed by its CA (--tls-ca).',
  },
  PROTO_BAD_DISK: { kind: 'protocol', hint: PEER_BUG },
  PROTO_BAD_RANGE: { kind: 'protocol', hint: 'Extents must be chunk-aligned and lie inside the disk.' },
  PROTO_OUT_OF_ORDER: {
    kind: 'protocol',
    hint: 'Extents must arrive in ascending order, disks in OPEN order, above resume watermarks.',
  },
  PROTO_BAD_COMPRESSION: { kind: 'protocol', hint: PEER_BUG },
  PROTO_DIGEST_MISMATCH: {
    kind: 'integrity',
    hint: 'Data was damaged on the way; nothing bad was stored. Run again to resume.',
  },
  PROTO_DELTA_MISMATCH: {
    kind: 'integrity',
    hint: 'The receiver did not get what the sender sent; run again (it resumes from the last checkpoint).',
  },
  PROTO_IMAGE_MISMATCH: {
    kind: 'integrity',
    hint: 'The target copy would differ from the source; run a checksum resync.',
  },
  PROTO_CONNECTION_LOST: {
    kind: 'unavailable',
    hint: 'The connection broke; run again to resume from what was staged.',
  },
  PROTO_TIMEOUT: {
    kind: 'unavailable',
    hint: 'The peer did not answer in time; check the network and the peer’s log.',
  },
  PROTO_SENDER_MISUSE: {
    kind: 'internal',
    hint: 'This is a bug in the caller of StreamSender; report it with the log.',
  },
  PROTO_PEER_ERROR: { kind: 'protocol', hint: 'The peer reported a failure; see its log.' },
} as const satisfies Record<string, CodeInfo>;

export type ProtocolCode = keyof typeof PROTOCOL_CODES;

export class ProtocolError extends HavenError {
  constructor(code: ProtocolCode, message: string, details?: Record<string, unknown>, cause?: unknown) {
    const info: CodeInfo = PROTOCOL_CODES[code];
    super(code, message, { kind: info.kind, hint: info.hint, details, cause });
  }
}

export function protoError(
  code: ProtocolCode,
  message: string,
  details?: Record<string, unknown>,
): ProtocolError {
  return new ProtocolError(code, message, details);
}

const KINDS = new Set<ErrorKind>([
  'usage',
  'config',
  'not-found',
  'unavailable',
  'refused',
  'conflict',
  'integrity',
  'resource',
  'protocol',
  'io',
  'interrupted',
  'internal',
]);

/**
 * The error a peer reported in an ERROR frame, rebuilt as a HavenError with the peer's code, kind
 * and hint so that callers can react to, say, STORE_LOCKED exactly as if it happened locally.
 */
export class RemoteError extends HavenError {
  readonly fatal: boolean;
  constructor(
    e: { code: string; kind: string; message: string; hint?: string; details?: Record<string, unknown> },
    fatal: boolean,
    from: 'sender' | 'receiver',
  ) {
    const kind = KINDS.has(e.kind as ErrorKind) ? (e.kind as ErrorKind) : 'protocol';
    super(e.code, `${from}: ${e.message}`, { kind, hint: e.hint, details: e.details });
    this.fatal = fatal;
  }
}
