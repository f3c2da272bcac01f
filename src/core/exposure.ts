/**
 * Whether the daemon's HTTP listener can be reached from other hosts in clear text. Every API
 * request carries the bearer token that can start, cancel and read everything, so plain HTTP is
 * only safe on a loopback address, or behind a TLS-terminating reverse proxy the operator names
 * (`daemon.tls_proxy`). Used by `haven config check`, `haven doctor` and `haven serve` at start.
 */
import { isIP } from 'node:net';

/** True for a loopback address or name: 127.0.0.0/8, ::1 (also IPv4-mapped), localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h.startsWith('::ffff:') && isIP(h.slice(7)) === 4) return h.slice(7).startsWith('127.');
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}

/** The warning for a listener other hosts reach over plain HTTP, or null when it is fine. */
export function clearTextExposure(host: string, port: number, tlsProxy: readonly string[]): string | null {
  if (isLoopbackHost(host) || tlsProxy.length > 0) return null;
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return `the daemon listens on ${where}, which other hosts can reach, over plain HTTP with no TLS proxy declared (daemon.tls_proxy): the API token and everything the API returns cross the network in clear`;
}

export const CLEAR_TEXT_FIX =
  'Listen on 127.0.0.1 (daemon.listen) and reach the daemon through an SSH tunnel (ssh -L 8470:127.0.0.1:8470 HOST) or a TLS reverse proxy on this host; with a TLS proxy in front, set daemon.tls_proxy to its address.';
