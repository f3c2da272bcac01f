/**
 * `haven doctor`'s look at the daemon's listen address (`daemon.listen`): a warning when other
 * hosts can reach it over plain HTTP with no TLS proxy declared (core/exposure.ts). A name is
 * resolved: it is loopback only when every address it has is.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { HavenConfig } from '../core/config.ts';
import { HavenError } from '../core/errors.ts';
import { CLEAR_TEXT_FIX, clearTextExposure, isLoopbackHost } from '../core/exposure.ts';

export interface ListenCheck {
  id: 'daemon-listen';
  title: string;
  status: 'ok' | 'warn';
  detail: string;
  fix?: string;
  required: false;
}

export async function daemonListenCheck(config: HavenConfig): Promise<ListenCheck> {
  const { listen, tlsProxy } = config.daemon;
  const base = { id: 'daemon-listen', title: 'daemon listen address', required: false } as const;
  let host = listen.host;
  if (isIP(host) === 0 && !isLoopbackHost(host)) {
    const addresses = await lookup(host, { all: true }).catch(() => []);
    // Unresolvable: judged as written (not loopback), which errs on the side of warning.
    if (addresses.length > 0 && addresses.every((a) => isLoopbackHost(a.address)))
      host = addresses[0]!.address;
  }
  const exposed = clearTextExposure(host, listen.port, tlsProxy);
  if (exposed) return { ...base, status: 'warn', detail: exposed, fix: CLEAR_TEXT_FIX };
  const where = `${listen.host}:${listen.port}`;
  return {
    ...base,
    status: 'ok',
    detail:
      tlsProxy.length > 0
        ? `${where}, behind the TLS proxy at ${tlsProxy.join(', ')}`
        : `${where} (loopback only)`,
  };
}

/**
 * Why the daemon could not listen, in words an operator can act on: another process holds the
 * address (`DAEMON_ADDRESS_IN_USE`, with how to find it and how to move), the address is not
 * this host's (`DAEMON_ADDRESS_UNAVAILABLE`), or the port is privileged (`DAEMON_PORT_DENIED`).
 * Anything else is the operating system's error as it is.
 */
export function listenError(e: unknown, listen: { host: string; port: number }): unknown {
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const where = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
  const details = { listen: where, errno };
  const move = `listen elsewhere with haven serve --listen ${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port + 1}, or set daemon.listen in the configuration`;
  if (errno === 'EADDRINUSE') {
    return new HavenError(
      'DAEMON_ADDRESS_IN_USE',
      `cannot listen on ${where}: another process listens there`,
      {
        kind: 'conflict',
        cause: e,
        details,
        hint: `Find it with \`ss -ltnp 'sport = :${listen.port}'\` (often another haven serve, e.g. the systemd unit: systemctl status haven); stop it, or ${move}.`,
      },
    );
  }
  if (errno === 'EADDRNOTAVAIL') {
    return new HavenError(
      'DAEMON_ADDRESS_UNAVAILABLE',
      `cannot listen on ${where}: no interface of this host has that address`,
      {
        kind: 'unavailable',
        cause: e,
        details,
        hint: `\`ip -br address\` lists this host's addresses; ${move}.`,
      },
    );
  }
  if (errno === 'EACCES') {
    return new HavenError(
      'DAEMON_PORT_DENIED',
      `cannot listen on ${where}: ports below 1024 need privileges`,
      {
        kind: 'io',
        cause: e,
        details,
        hint: `Run as root (or with CAP_NET_BIND_SERVICE), or ${move}.`,
      },
    );
  }
  return e;
}
