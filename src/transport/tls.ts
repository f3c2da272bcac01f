/**
 * TCP with TLS, for targets without ssh. The listener (`haven receive --listen`) presents its
 * certificate and requires either client certificates signed by its CA or a token in HELLO (or
 * both); the client pins the target's CA (the system roots are not used) and may present a
 * certificate. Both ends use TLS 1.2 or later, TCP keepalive (a dead peer frees the server's lock
 * eventually) and no Nagle delay (control frames are small request/answer pairs).
 */
import { readFile } from 'node:fs/promises';
import { isIP, type Socket } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { asHavenError, type HavenError, ioError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { type Connection, JoinedStream } from './connection.ts';
import { TransportError } from './errors.ts';
import { formatTarget, type Target } from './url.ts';

const KEEPALIVE_MS = 60_000;

export interface TlsClientOptions {
  /** PEM file of the CA that signed the target's certificate (pinned: the only trust anchor). */
  ca: string;
  /** Client certificate and key (PEM files), for listeners that require one. */
  cert?: string;
  key?: string;
  /** Name to check the target's certificate against, when it differs from the URL's host. */
  servername?: string;
  connectTimeoutMs?: number;
  log?: Logger;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const err = ioError(e as NodeJS.ErrnoException, `${what} ${path}`);
    throw new TransportError('TRANSPORT_BAD_OPTION', 'usage', err.message, {
      hint: `Give the path of a readable PEM file as the ${what}.`,
      details: { path },
      cause: e,
    });
  }
}

const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/;

/** Socket errors as typed errors: TLS trouble, unreachable peers, the rest as I/O. */
function mapSocketError(e: Error, where: string): HavenError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  if (TLS_CODES.test(code) || /alert|certificate|handshake/i.test(e.message)) {
    return new TransportError(
      'TRANSPORT_TLS_FAILED',
      'unavailable',
      `TLS with ${where} failed: ${e.message}`,
      {
        hint: 'Check the CA (--tls-ca), the client certificate and key, and that the target’s certificate names this host.',
        details: { code },
        cause: e,
      },
    );
  }
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) {
    return new TransportError(
      'TRANSPORT_CONNECT_FAILED',
      'unavailable',
      `cannot connect to ${where}: ${e.message}`,
      {
        hint: 'Check that `haven receive --listen` runs on the target and the port is reachable.',
        details: { code },
        cause: e,
      },
    );
  }
  return asHavenError(e);
}

export async function connectTls(
  target: Extract<Target, { kind: 'tls' }>,
  o: TlsClientOptions,
): Promise<Connection> {
  if (!o.ca) {
    throw new TransportError(
      'TRANSPORT_BAD_OPTION',
      'usage',
      'a tls target needs the CA of its certificate',
      {
        hint: 'Pass --tls-ca with the CA that signed the target’s certificate.',
      },
    );
  }
  if (Boolean(o.cert) !== Boolean(o.key)) {
    throw new TransportError(
      'TRANSPORT_BAD_OPTION',
      'usage',
      'a client certificate needs its key, and a key its certificate',
      {
        hint: 'Give both --tls-cert and --tls-key, or neither.',
      },
    );
  }
  const [ca, cert, key] = await Promise.all([
    readPem(o.ca, 'TLS CA file'),
    o.cert ? readPem(o.cert, 'TLS certificate file') : undefined,
    o.key ? readPem(o.key, 'TLS key file') : undefined,
  ]);
  const where = formatTarget(target);
  const log = (o.log ?? silentLogger).child({ target: where });
  const servername = o.servername ?? (isIP(target.host) ? undefined : target.host);
  const timeoutMs = o.connectTimeoutMs ?? 30_000;
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({
      host: target.host,
      port: target.port,
      ca,
      ...(cert && key ? { cert, key } : {}),
      ...(servername ? { servername } : {}),
      minVersion: 'TLSv1.2',
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new TransportError(
          'TRANSPORT_CONNECT_FAILED',
          'unavailable',
          `no TLS connection to ${where} within ${timeoutMs} ms`,
          {
            hint: 'Check the network path and that the target listens on this port.',
          },
        ),
      );
    }, timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (e: Error) => {
      clearTimeout(timer);
      reject(mapSocketError(e, where));
    };
    s.once('error', onError);
  });
  socket.setKeepAlive(true, KEEPALIVE_MS);
  socket.setNoDelay(true);
  log.debug('TLS connected', { protocol: socket.getProtocol(), cipher: socket.getCipher().name });
  const stream = new JoinedStream(socket, socket, { mapError: (e) => mapSocketError(e, where) });
  return {
    stream,
    description: where,
    async close() {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      if (socket.closed) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 10_000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

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
  /** Stops accepting; ends running sessions after `graceMs` (default: wait for them). */
  close(graceMs?: number): Promise<void>;
}

export async function listenTls(o: TlsListenOptions): Promise<TlsListener> {
  if (!o.ca && !o.tokenRequired) {
    throw new TransportError('TRANSPORT_NO_AUTH', 'usage', 'a listener must authenticate its senders', {
      hint: 'Give --tls-ca (require client certificates signed by it), --token-file (require a token), or both.',
    });
  }
  const log = o.log ?? silentLogger;
  const [cert, key, ca] = await Promise.all([
    readPem(o.cert, 'TLS certificate file'),
    readPem(o.key, 'TLS key file'),
    o.ca ? readPem(o.ca, 'TLS CA file') : undefined,
  ]);
  const sessions = new Map<TLSSocket, Promise<void>>();
  let server: ReturnType<typeof createServer>;
  try {
    server = createServer({
      cert,
      key,
      // The certificate is checked in 'secureConnection' instead of by the handshake, so that a
      // refused sender gets an ERROR frame saying why rather than a connection reset.
      ...(ca ? { ca, requestCert: true, rejectUnauthorized: false } : {}),
      minVersion: 'TLSv1.2',
      handshakeTimeout: 30_000,
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
  server.on('tlsClientError', (e: Error, socket: Socket) => {
    log.warn(`refused a connection from ${socket.remoteAddress}: ${e.message}`, {
      code: (e as NodeJS.ErrnoException).code,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new TransportError(
          'TRANSPORT_LISTEN_FAILED',
          e.code === 'EADDRINUSE' ? 'conflict' : 'unavailable',
          `cannot listen on ${o.host}:${o.port}: ${e.message}`,
          {
            hint: 'Choose a free port and an address of this host.',
            details: { code: e.code },
            cause: e,
          },
        ),
      ),
    );
    server.listen(o.port, o.host, () => resolve());
  });
  server.on('error', (e) => log.error(`listener error: ${e.message}`));
  const addr = server.address() as { address: string; port: number };
  log.info(`listening on ${addr.address}:${addr.port}`, {
    clientCertificates: Boolean(ca),
    token: o.tokenRequired,
  });
  return {
    host: addr.address,
    port: addr.port,
    get active() {
      return sessions.size;
    },
    async close(graceMs?: number) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      if (graceMs !== undefined) {
        const timer = setTimeout(() => {
          for (const s of sessions.keys()) s.destroy();
        }, graceMs);
        await Promise.allSettled(sessions.values());
        clearTimeout(timer);
      } else {
        await Promise.allSettled(sessions.values());
      }
      await closed;
    },
  };
}
