/**
 * Byte streams to targets (docs/design.md §3): a child process (`haven receive --stdio`, locally or over
 * ssh) or TCP with TLS. `openTarget` picks the transport from the target URL; `spawnPeer` starts
 * any haven command as a peer the same way (failback's receiver on the primary).
 */
import type { Logger } from '../core/log.ts';
import { type ChildOptions, openChildTarget } from './child.ts';
import type { Connection } from './connection.ts';
import { TransportError } from './errors.ts';
import { connectTls, type TlsClientOptions } from './tls.ts';
import { parseTarget, type Target } from './url.ts';

export { CERT_WARN_DAYS } from './cert-expiry.ts';
export {
  type ChildOptions,
  HAVEN_BIN,
  type PeerHost,
  type PeerOptions,
  type PeerRole,
  shellQuote,
  spawnPeer,
  sshArgs,
  sshPeerArgs,
} from './child.ts';
export { type Connection, JoinedStream } from './connection.ts';
export { TransportError } from './errors.ts';
export { type StdioConnection, stdioConnection } from './stdio.ts';
export { connectTls, type TlsClientOptions } from './tls.ts';
export {
  DEFAULT_CONNECTION_LIMITS,
  listenTls,
  type TlsListener,
  type TlsListenOptions,
} from './tls-listener.ts';
export { formatTarget, parseTarget, type Target } from './url.ts';

export interface TargetOptions extends ChildOptions {
  /** For tls:// targets. */
  tls?: Omit<TlsClientOptions, 'log'>;
  log?: Logger;
}

/** Opens the byte stream to a target (a URL or a parsed Target). */
export async function openTarget(target: string | Target, o: TargetOptions = {}): Promise<Connection> {
  const t = typeof target === 'string' ? parseTarget(target) : target;
  if (t.kind === 'tls') {
    if (!o.tls) {
      throw new TransportError(
        'TRANSPORT_BAD_OPTION',
        'usage',
        'a tls target needs TLS options (at least the CA)',
        {
          hint: 'Configure the CA of the target’s certificate (--tls-ca).',
        },
      );
    }
    return connectTls(t, { ...o.tls, ...(o.log ? { log: o.log } : {}) });
  }
  return openChildTarget(t, o);
}
