/** Errors of the transports (target URLs, child processes, ssh, TLS), with stable codes. */
import { type ErrorKind, HavenError } from '../core/errors.ts';

export type TransportCode =
  | 'TRANSPORT_BAD_URL'
  | 'TRANSPORT_BAD_OPTION'
  | 'TRANSPORT_NO_AUTH'
  | 'TRANSPORT_CHILD_FAILED'
  | 'TRANSPORT_SSH_FAILED'
  | 'TRANSPORT_REMOTE_COMMAND_MISSING'
  | 'TRANSPORT_CONNECT_FAILED'
  | 'TRANSPORT_TLS_FAILED'
  | 'TRANSPORT_LISTEN_FAILED';

export class TransportError extends HavenError {
  constructor(
    code: TransportCode,
    kind: ErrorKind,
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
