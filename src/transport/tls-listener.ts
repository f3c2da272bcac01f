/**
 * The TLS listener (`haven receive --listen`), for targets without ssh. It presents its
 * certificate and requires either client certificates signed by its CA or a token in HELLO (or
 * both). It trusts nothing a peer does before that:
 * - every accepted TCP connection takes a place (per peer address and in total, connection-gate.ts)
 *   until it closes; one over a limit is closed at once;
 * - a connection that does not finish its TLS handshake within `handshakeTimeoutMs` is closed
 *   (Node reports the timeout as a client error but leaves the socket open: tlsClientError's
 *   listener owns it, tls.md "Event: 'tlsClientError'");
 * - close() ends everything within a bound, whatever the peers do: connections without a session
 *   at once, sessions after a grace period in which they may finish, then by force.
 * Its certificate and CA are checked for expiry at start and daily (cert-expiry.ts).
 */
import type { Socket } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import { asHavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { PeerGate, type PeerLimits, PeerWarnings, peerAddress } from '../core/peer-limits.ts';
import { certificateFindings, logFindings, pemCertificates } from './cert-expiry.ts';
import { TransportError } from './errors.ts';
import { KEEPALIVE_MS, readPem } from './tls.ts';

/**
 * A job sends each server over its own session and runs up to `parallel` (≤ 64) servers at
 * once; several jobs may share a target. Each session may buffer ~10 MiB (the receiver's frame
 * queue and pool), so the total also bounds the listener's memory.
 */
export const DEFAULT_CONNECTION_LIMITS: PeerLimits = { total: 64, perPeer: 16 };

export interface TlsListenOptions {
  host: string;
  port: number;
  /** PEM files of the listener's certificate and key. */
  cert: string;
  key: string;
  /** Require client certificates signed by this CA (PEM file). */
  ca?: string;
  /** Whether HELLO must carry a token (checked by the protocol, not here). */
  tokenRequired: boolean;
  /** Connections held at once, per peer address and in total (DEFAULT_CONNECTION_LIMITS). */
  limits?: Partial<PeerLimits>;
  /** A TLS handshake that takes longer is abandoned and its connection closed. Default 10 s. */
  handshakeTimeoutMs?: number;
  log?: Logger;
  /**
   * Runs one session; its failure is logged, never fatal to the listener. A peer that is not
   * `verified` presented no client certificate or one the CA did not sign: the session must
   * refuse it (with an ERROR frame the sender can report, which a bare TLS reset is not).
   */
  onConnection(socket: TLSSocket, peer: TlsPeer): Promise<void>;
}

export interface TlsPeer {
  /** Address, port and certificate subject, for logs. */
  description: string;
  /** True when no client certificate is required, or the one presented verified against the CA. */
  verified: boolean;
  /** Why the client certificate did not verify. */
  error?: string;
}

export interface TlsListener {
  readonly host: string;
  readonly port: number;
  /** Sessions running now. */
  readonly active: number;
  /** TCP connections open now (sessions and handshakes). */
  readonly connections: number;
  /**
   * Stops accepting and closes every connection that has no session at once; sessions get
   * `graceMs` (default 10 s) to end, then their connections are destroyed and they end as after a
   * lost connection (checkpointing what was marked: the store's time, not the peer's). Whatever
   * the peers do, it resolves about `graceMs` after the call; `cut` counts the sessions cut.
   */
  close(o?: { graceMs?: number }): Promise<{ cut: number }>;
}

/** How often a running listener looks at its certificates' dates again. */
const CERT_RECHECK_MS = 86_400_000;

async function loadCredentials(o: TlsListenOptions, log: Logger) {
  const [cert, key, ca] = await Promise.all([
    readPem(o.cert, 'TLS certificate file'),
    readPem(o.key, 'TLS key file'),
    o.ca ? readPem(o.ca, 'TLS CA file') : undefined,
  ]);
  const check = () => {
    logFindings(certificateFindings(pemCertificates(cert), `TLS certificate file ${o.cert}`), log);
    if (ca) logFindings(certificateFindings(pemCertificates(ca), `TLS CA file ${o.ca}`), log);
  };
  check();
  return { cert, key, ca, check };
}

function createTlsServer(cert: Buffer, key: Buffer, ca: Buffer | undefined, handshakeTimeout: number) {
  try {
    return createServer({
      cert,
      key,
      // The certificate is checked in 'secureConnection' instead of by the handshake, so that a
      // refused sender gets an ERROR frame saying why rather than a connection reset.
      ...(ca ? { ca, requestCert: true, rejectUnauthorized: false } : {}),
      minVersion: 'TLSv1.2',
      handshakeTimeout,
    });
  } catch (e) {
    throw new TransportError(
      'TRANSPORT_BAD_OPTION',
      'usage',
      `unusable TLS certificate or key: ${(e as Error).message}`,
      {
        hint: 'Give a PEM certificate and the private key that belongs to it.',
        cause: e,
      },
    );
  }
}

function listenOn(server: ReturnType<typeof createServer>, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new TransportError(
          'TRANSPORT_LISTEN_FAILED',
          e.code === 'EADDRINUSE' ? 'conflict' : 'unavailable',
          `cannot listen on ${host}:${port}: ${e.message}`,
          { hint: 'Choose a free port and an address of this host.', details: { code: e.code }, cause: e },
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
}

export async function listenTls(o: TlsListenOptions): Promise<TlsListener> {
  if (!o.ca && !o.tokenRequired) {
    throw new TransportError('TRANSPORT_NO_AUTH', 'usage', 'a listener must authenticate its senders', {
      hint: 'Give --tls-ca (require client certificates signed by it), --token-file (require a token), or both.',
    });
  }
  const log = o.log ?? silentLogger;
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...o.limits };
  const { cert, key, ca, check } = await loadCredentials(o, log);
  const server = createTlsServer(cert, key, ca, o.handshakeTimeoutMs ?? 10_000);
  const gate = new PeerGate(limits, 'connections');
  const warnings = new PeerWarnings(log);
  /** Every accepted connection (raw TCP), with or without a session. */
  const sockets = new Set<Socket>();
  const sessions = new Map<TLSSocket, Promise<void>>();
  let closing = false;

  // Emitted for the raw socket, before any TLS work on it.
  server.on('connection', (raw: Socket) => {
    const peer = peerAddress(raw.remoteAddress);
    const refusal = closing ? 'the listener is stopping' : gate.admit(peer)?.message;
    if (refusal) {
      warnings.warn(peer, 'limit', `refused a connection from ${peer}: ${refusal}`);
      raw.destroy();
      return;
    }
    sockets.add(raw);
    raw.once('close', () => {
      sockets.delete(raw);
      gate.release(peer);
    });
  });
  server.on('tlsClientError', (e: Error, socket: TLSSocket) => {
    const peer = peerAddress(socket.remoteAddress);
    warnings.warn(peer, 'handshake', `refused a connection from ${peer}: ${e.message}`, {
      code: (e as NodeJS.ErrnoException).code,
    });
    socket.destroy();
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.setNoDelay(true);
    const subject = socket.getPeerCertificate()?.subject?.CN;
    const description = `${socket.remoteAddress}:${socket.remotePort}${subject ? ` (${subject})` : ''}`;
    const verified = !ca || socket.authorized;
    const error = verified ? undefined : String(socket.authorizationError ?? 'no client certificate');
    if (verified) log.info('connection', { peer: description });
    else log.warn(`refused a connection from ${description}: client certificate not accepted (${error})`);
    const peer: TlsPeer = { description, verified, ...(error ? { error } : {}) };
    const run = o
      .onConnection(socket, peer)
      .catch((e: unknown) => {
        const err = asHavenError(e);
        log.warn(`session from ${description} ended: ${err.message}`, { code: err.code });
      })
      .finally(() => {
        sessions.delete(socket);
        socket.destroy();
      });
    sessions.set(socket, run);
  });
  await listenOn(server, o.host, o.port);
  server.on('error', (e) => log.error(`listener error: ${e.message}`));
  const recheck = setInterval(check, CERT_RECHECK_MS);
  recheck.unref();
  const addr = server.address() as { address: string; port: number };
  log.info(`listening on ${addr.address}:${addr.port}`, {
    clientCertificates: Boolean(ca),
    token: o.tokenRequired,
    maxConnections: limits.total,
    maxConnectionsPerPeer: limits.perPeer,
  });
  return {
    host: addr.address,
    port: addr.port,
    get active() {
      return sessions.size;
    },
    get connections() {
      return sockets.size;
    },
    async close({ graceMs = 10_000 } = {}) {
      closing = true;
      clearInterval(recheck);
      const closed = new Promise<void>((r) => server.close(() => r()));
      // Destroying an accepted socket also closes the TLS socket made over it.
      const inSession = new Set([...sessions.keys()].map(connectionKey));
      for (const raw of sockets) if (!inSession.has(connectionKey(raw))) raw.destroy();
      const running = sessions.size;
      const ended = await settleWithin([...sessions.values()], graceMs);
      for (const raw of sockets) raw.destroy();
      await Promise.allSettled([...sessions.values()]);
      await closed;
      return { cut: ended ? 0 : running };
    },
  };
}

function connectionKey(s: Socket): string {
  return `${s.remoteAddress}|${s.remotePort}`;
}

/** Whether all `runs` settled within `ms`. */
async function settleWithin(runs: Promise<void>[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([
    Promise.allSettled(runs).then(() => true),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return done;
}
