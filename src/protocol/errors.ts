/**
 * Errors of the replication stream. Every code here is part of the wire format: a receiver sends
 * it in an ERROR frame, the sender rethrows it as a HavenError with the same code, so operators
 * and the engine see one stable vocabulary on both sides (docs/stream-protocol.md §7).
 */
import { ERROR_KINDS, type ErrorKind, type HavenCode, HavenError, type KindOf } from '../core/errors.ts';
import { PROTOCOL_CODES } from './error-codes.ts';

export { PROTOCOL_CODES } from './error-codes.ts';
export type ProtocolCode = keyof typeof PROTOCOL_CODES;

export class ProtocolError<C extends ProtocolCode = ProtocolCode> extends HavenError<C> {
  constructor(code: C, message: string, details?: Record<string, unknown>, cause?: unknown) {
    const info = PROTOCOL_CODES[code];
    // TypeScript cannot follow a generic index into the catalogue: info.kind is KindOf<C> by construction.
    super(code, message, { kind: info.kind as KindOf<C>, hint: info.action, details, cause });
  }
}

export function protoError(
  code: ProtocolCode,
  message: string,
  details?: Record<string, unknown>,
): ProtocolError {
  return new ProtocolError(code, message, details);
}

const KINDS = new Set<ErrorKind>(ERROR_KINDS);

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
    // The peer's code as it sent it: a newer peer may send one this version's catalogue lacks.
    super(e.code as HavenCode, `${from}: ${e.message}`, { kind, hint: e.hint, details: e.details });
    this.fatal = fatal;
  }
}
