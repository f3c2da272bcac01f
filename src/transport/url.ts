/**
 * Target URLs: where a job's replication stream goes.
 *
 *   /srv/haven                      a store on this machine (a local `haven receive --stdio`)
 *   ssh://[user@]host[:port]/path   a store on a target reached with the system ssh client
 *   ssh://host/path?lvm=vg0,vg1     an LVM store there: its metadata directory and volume groups
 *                                   (docs/store-lvm.md)
 *   ssh://host/path?rbd=rbd://haven@ceph/dr
 *                                   an rbd store there: its metadata directory and Ceph pool
 *                                   (docs/store-rbd.md; `lvm` or `rbd` is the only query a URL may
 *                                   carry, a location with a query of its own percent-encoded)
 *   tls://host:port                 a `haven receive --listen` on a target without ssh
 *
 * Host and user names are checked strictly: they end up as arguments of ssh, and a value that
 * starts with "-" would be read as an option.
 */
import { isAbsolute, resolve } from 'node:path';
import { parseStoreQuery, type StoreQuery, storeQueryText } from '../core/store-query.ts';
import { badUrl } from './errors.ts';

export type Target =
  | ({ kind: 'local'; path: string } & StoreQuery)
  | ({ kind: 'ssh'; user?: string; host: string; port?: number; path: string } & StoreQuery)
  | { kind: 'tls'; host: string; port: number };

export type { StoreQuery };

/** Hostnames, IPv4 and (bracketed in URLs) IPv6 addresses. */
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9A-Fa-f:.]+)$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

function parsePort(url: string, text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw badUrl(url, `port ${text} is not 1 to 65535`);
  return port;
}

function parseHost(url: string, hostname: string): string {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (!host) throw badUrl(url, 'no host');
  if (!HOST.test(host)) throw badUrl(url, `host ${JSON.stringify(host)} is not a host name or address`);
  return host;
}

export function parseTarget(url: string): Target {
  if (typeof url !== 'string' || url.trim() === '') throw badUrl(String(url), 'empty');
  if (/[\0\n\r]/.test(url)) throw badUrl(url, 'control characters');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (url.includes('://')) throw badUrl(url, 'malformed scheme');
    return { kind: 'local', path: isAbsolute(url) ? resolve(url) : resolve(process.cwd(), url) };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw badUrl(url, 'not a URL');
  }
  if (u.hash) throw badUrl(url, 'fragments are not allowed');
  const query = storeQuery(url, u, scheme);
  if (scheme === 'file') {
    if (u.host) throw badUrl(url, 'file URLs name a local path (file:///path)');
    return { kind: 'local', path: resolve(decodeURIComponent(u.pathname)), ...query };
  }
  if (scheme === 'ssh') {
    if (u.password) throw badUrl(url, 'passwords do not belong in target URLs (use ssh keys)');
    const user = u.username ? decodeURIComponent(u.username) : undefined;
    if (user !== undefined && !USER.test(user))
      throw badUrl(url, `user ${JSON.stringify(user)} is not a login name`);
    const host = parseHost(url, u.hostname);
    const port = u.port ? parsePort(url, u.port) : undefined;
    const path = decodeURIComponent(u.pathname);
    if (!path || path === '/') throw badUrl(url, 'no store path after the host');
    return {
      kind: 'ssh',
      host,
      path,
      ...(user !== undefined ? { user } : {}),
      ...(port ? { port } : {}),
      ...query,
    };
  }
  if (scheme === 'tls') {
    if (u.username || u.password)
      throw badUrl(url, 'no user or password in tls URLs (use certificates or a token)');
    const host = parseHost(url, u.hostname);
    if (!u.port) throw badUrl(url, 'a port is required (tls://host:port)');
    if (u.pathname && u.pathname !== '/')
      throw badUrl(url, 'a tls target has no path (the listener chooses its store)');
    return { kind: 'tls', host, port: parsePort(url, u.port) };
  }
  throw badUrl(url, `unknown scheme ${scheme}: (use a path, ssh:// or tls://)`);
}

function storeQuery(url: string, u: URL, scheme: string): StoreQuery {
  const q = parseStoreQuery(u, scheme);
  if (typeof q === 'string') throw badUrl(url, q);
  return q;
}

/** The target as written in logs. */
export function formatTarget(t: Target): string {
  switch (t.kind) {
    case 'local':
      return t.lvm || t.rbd ? `file://${t.path}${storeQueryText(t)}` : t.path;
    case 'ssh': {
      const host = t.host.includes(':') ? `[${t.host}]` : t.host;
      const query = storeQueryText(t);
      return `ssh://${t.user ? `${t.user}@` : ''}${host}${t.port ? `:${t.port}` : ''}${t.path}${query}`;
    }
    case 'tls':
      return `tls://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
  }
}
