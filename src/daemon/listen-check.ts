/**
 * `haven doctor`'s look at the daemon's listen address (`daemon.listen`): a warning when other
 * hosts can reach it over plain HTTP with no TLS proxy declared (core/exposure.ts). A name is
 * resolved: it is loopback only when every address it has is.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { HavenConfig } from '../core/config.ts';
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
