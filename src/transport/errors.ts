/** Errors of the transports (target URLs, child processes, ssh, TLS), with stable codes. */
import { HavenError, type KindOf } from '../core/errors.ts';
import type { TRANSPORT_CODES } from './error-codes.ts';

export type TransportCode = keyof typeof TRANSPORT_CODES;

export class TransportError<C extends TransportCode = TransportCode> extends HavenError<C> {
  constructor(
    code: C,
    kind: KindOf<C>,
    message: string,
    o: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(code, message, { kind, ...o });
  }
}

export function badUrl(url: string, why: string): TransportError {
  return new TransportError('TRANSPORT_BAD_URL', 'usage', `invalid target ${JSON.stringify(url)}: ${why}`, {
    hint: 'Write a target as a local path (/srv/haven), ssh://[user@]host[:port]/path, or tls://host:port.',
    details: { url },
  });
}
