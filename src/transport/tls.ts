/**
 * TCP with TLS, for targets without ssh: the client side (the listener, `haven receive --listen`,
 * is in tls-listener.ts). The client pins the target's CA (the system roots are not used) and may
 * present a certificate. Both ends use TLS 1.2 or later, TCP keepalive (a dead peer frees the
 * server's lock eventually) and no Nagle delay (control frames are small request/answer pairs).
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { asHavenError, type HavenError, ioError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { certificateFindings, logFindingsOnce, pemCertificates } from './cert-expiry.ts';
import { type Connection, JoinedStream } from './connection.ts';
import { TransportError } from './errors.ts';
import { formatTarget, type Target } from './url.ts';

export const KEEPALIVE_MS = 60_000;

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

export async function readPem(path: string, what: string): Promise<Buffer> {
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

function tlsHint(code: string, message: string): string {
  if (code === 'CERT_HAS_EXPIRED' || /expired/i.test(message)) {
    return 'A certificate has expired (the target’s, its CA, or this host’s client certificate): renew it; `haven receive --listen` logs its own at start.';
  }
  if (/before secure TLS/i.test(message)) {
    return 'The target closed the connection during the handshake: its connection limits (--max-connections, --max-connections-per-peer) may be reached; its log says why.';
  }
  return 'Check the CA (--tls-ca), the client certificate and key, and that the target’s certificate names this host.';
}

/** Socket errors as typed errors: TLS trouble, unreachable peers, the rest as I/O. */
function mapSocketError(e: Error, where: string): HavenError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  if (TLS_CODES.test(code) || /alert|certificate|handshake|before secure TLS/i.test(e.message)) {
    return new TransportError(
      'TRANSPORT_TLS_FAILED',
      'unavailable',
      `TLS with ${where} failed: ${e.message}`,
      {
        hint: tlsHint(code, e.message),
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
  const base = o.log ?? silentLogger;
  const log = base.child({ target: where });
  logFindingsOnce(certificateFindings(pemCertificates(ca), `TLS CA file ${o.ca}`), base, log);
  if (cert)
    logFindingsOnce(certificateFindings(pemCertificates(cert), `TLS certificate file ${o.cert}`), base, log);
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
  const presented = socket.getPeerX509Certificate();
  if (presented) logFindingsOnce(certificateFindings([presented], `the certificate of ${where}`), base, log);
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
