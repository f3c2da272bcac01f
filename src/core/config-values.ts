/**
 * The scalar value kinds of the configuration file, each parsed from what YAML gives us into the
 * typed value the rest of Haven uses. Every parser throws a `ValueProblem` whose message says
 * what was expected, so config.ts can place it under the key path where it was found.
 *
 * Target URLs are parsed here only far enough to validate them and to know their kind;
 * transport/ owns connecting to them.
 */
import { isIP } from 'node:net';
import { posix } from 'node:path';
import { Cron } from 'croner';
import { parseStoreQuery, type StoreQuery } from './store-query.ts';
import { parseDuration, parseRate, parseSize } from './units.ts';

/** A value that does not fit its key. The message completes "<key path>: ...". */
export class ValueProblem extends Error {}

/** A short, quoted rendering of what was found, for "expected X, got Y" messages. */
export function describeValue(v: unknown): string {
  if (v === null) return 'nothing (null)';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return `${typeof v} ${String(v)}`;
}

function expected(what: string, v: unknown): never {
  throw new ValueProblem(`expected ${what}, got ${describeValue(v)}`);
}

export function parseString(v: unknown, what = 'a string'): string {
  if (typeof v !== 'string' || v.trim() === '') expected(what, v);
  return v;
}

export function parseBoolean(v: unknown): boolean {
  if (typeof v !== 'boolean') expected('true or false', v);
  return v;
}

export function parseInteger(v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    expected(`a whole number from ${min} to ${max}`, v);
  }
  return v;
}

export function parseEnum<T extends string>(v: unknown, values: readonly T[]): T {
  if (typeof v !== 'string' || !values.includes(v as T)) {
    expected(`one of ${values.map((x) => JSON.stringify(x)).join(', ')}`, v);
  }
  return v as T;
}

/** Wraps the core/units parsers: their messages carry the accepted forms in the hint. */
function viaUnits<T>(v: unknown, what: string, parse: (x: string | number) => T): T {
  if (typeof v !== 'string' && typeof v !== 'number') expected(what, v);
  try {
    return parse(v);
  } catch {
    return expected(what, v);
  }
}

export function parseSizeValue(v: unknown): number {
  return viaUnits(v, 'a size such as 4096, 512KiB, 50MiB or 2GiB', parseSize);
}

/** Bytes per second; 0 means unlimited. */
export function parseRateValue(v: unknown): number {
  return viaUnits(v, 'a rate such as 50MiB/s or 10MB/s (0 for unlimited)', parseRate);
}

/** Milliseconds. A bare number is seconds. */
export function parseDurationValue(v: unknown, minMs = 0): number {
  const ms = viaUnits(v, 'a duration such as 90s, 15m, 26h or 1d12h', parseDuration);
  if (ms < minMs)
    throw new ValueProblem(`expected a duration of at least ${minMs / 1000}s, got ${describeValue(v)}`);
  return ms;
}

export function parseAbsolutePath(v: unknown, what = 'an absolute path'): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0')) expected(what, v);
  const p = posix.normalize(v);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/** Checks that a time zone name is one the runtime knows (IANA, e.g. Europe/Berlin). */
export function parseTimeZone(v: unknown): string {
  if (typeof v !== 'string') expected('an IANA time zone such as Europe/Berlin or UTC', v);
  try {
    new Intl.DateTimeFormat('en', { timeZone: v });
  } catch {
    expected('an IANA time zone such as Europe/Berlin or UTC', v);
  }
  return v;
}

/**
 * A five-field cron expression (minute hour day-of-month month day-of-week) or a nickname such
 * as @daily, checked by croner, the library the scheduler runs it with, so what passes here is
 * exactly what will fire. Six-field forms are refused: croner reads the first field of those
 * as seconds, which an operator used to crontab(5) would not expect.
 */
export function parseCron(v: unknown): string {
  const what =
    'a cron expression with 5 fields (minute hour day-of-month month day-of-week), e.g. "30 1 * * *"';
  if (typeof v !== 'string') expected(what, v);
  let next: Date | null;
  try {
    next = cronFor(v).nextRun();
  } catch (e) {
    const reason = (e as Error).message
      .replace(/^CronPattern:\s*/, '')
      .replace(/^mode '5-part' requires/, 'needs');
    throw new ValueProblem(`invalid cron expression ${describeValue(v)}: ${reason}; expected ${what}`);
  }
  if (!next) throw new ValueProblem(`cron expression ${describeValue(v)} never fires (no such date)`);
  return v;
}

/** A paused croner instance: only used to compute fire times, it never starts a timer. */
export function cronFor(expression: string, timeZone?: string): Cron {
  return new Cron(expression, { paused: true, mode: '5-part', ...(timeZone ? { timezone: timeZone } : {}) });
}

export type TargetEndpoint =
  | ({ kind: 'local'; path: string } & StoreQuery)
  | ({
      kind: 'ssh';
      user: string | undefined;
      host: string;
      port: number | undefined;
      path: string;
    } & StoreQuery)
  | { kind: 'tls'; host: string; port: number };

const URL_FORMS = 'an absolute path, ssh://[user@]host[:port]/path, file:///path or tls://host:port';

function parsePort(text: string, v: unknown): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new ValueProblem(
      `port ${JSON.stringify(text)} in ${describeValue(v)} is not a number from 1 to 65535`,
    );
  }
  return port;
}

/** `v` as a URL that names a host; otherwise a problem that lists the accepted `forms`. */
function urlWithHost(v: string, forms: string): URL {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return expected(forms, v);
  }
  if (!url.hostname) throw new ValueProblem(`${describeValue(v)} has no host; expected ${forms}`);
  return url;
}

/** A target's url: where its store is. */
export function parseTargetUrl(v: unknown): TargetEndpoint {
  if (typeof v !== 'string' || v.trim() === '') expected(URL_FORMS, v);
  if (v.startsWith('/')) return { kind: 'local', path: parseAbsolutePath(v) };
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(v)?.[1]?.toLowerCase();
  if (scheme === 'file') return parseFileTargetUrl(v);
  if (scheme !== 'ssh' && scheme !== 'tls') {
    if (!scheme && !v.includes(':'))
      throw new ValueProblem(`a local store path must be absolute, got ${describeValue(v)}`);
    expected(URL_FORMS, v);
  }
  const url = urlWithHost(v, URL_FORMS);
  if (url.password) {
    throw new ValueProblem(
      `${describeValue(v)} carries a password; use SSH keys (ssh) or a token_file (tls) instead`,
    );
  }
  if (url.hash || (url.search && scheme === 'tls'))
    throw new ValueProblem(`${describeValue(v)} has a query or fragment; expected ${URL_FORMS}`);
  // new URL() has already range-checked the port; an empty port means "not given".
  const port = url.port ? parsePort(url.port, v) : undefined;
  if (scheme === 'tls') {
    if (url.username) throw new ValueProblem(`${describeValue(v)}: a tls:// URL takes no user name`);
    if (url.pathname !== '' && url.pathname !== '/') {
      throw new ValueProblem(
        `${describeValue(v)}: a tls:// URL takes no path (the receiver's --store decides)`,
      );
    }
    if (port === undefined)
      throw new ValueProblem(`${describeValue(v)}: a tls:// URL needs a port (tls://host:port)`);
    return { kind: 'tls', host: url.hostname, port };
  }
  const path = decodeURIComponent(url.pathname);
  if (path === '' || path === '/') {
    throw new ValueProblem(
      `${describeValue(v)} names no store directory; expected ssh://[user@]host[:port]/path`,
    );
  }
  return {
    kind: 'ssh',
    user: url.username ? decodeURIComponent(url.username) : undefined,
    host: url.hostname,
    port,
    path: parseAbsolutePath(path),
    ...targetStore(url, 'ssh', v),
  };
}

/** `file:///path[?lvm=…|?rbd=…]`: a store on this machine, an LVM or rbd one named by its query. */
function parseFileTargetUrl(v: string): TargetEndpoint {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return expected(URL_FORMS, v);
  }
  if (url.host || url.hash)
    throw new ValueProblem(`${describeValue(v)}: a file:// URL names a local path (file:///path)`);
  return {
    kind: 'local',
    path: parseAbsolutePath(decodeURIComponent(url.pathname)),
    ...targetStore(url, 'file', v),
  };
}

function targetStore(url: URL, scheme: string, v: string): StoreQuery {
  const q = parseStoreQuery(url, scheme);
  if (typeof q === 'string') throw new ValueProblem(`${describeValue(v)}: ${q}`);
  return q;
}

export type HostEndpoint =
  | { kind: 'local' }
  | { kind: 'ssh'; user: string | undefined; host: string; port: number | undefined };

const HOST_URL_FORMS = 'local or ssh://[user@]host[:port]';

/** How Haven reaches a hypervisor host (config `hosts.<name>.url`): this machine, or over ssh. */
export function parseHostUrl(v: unknown): HostEndpoint {
  if (v === 'local') return { kind: 'local' };
  if (typeof v !== 'string' || !/^ssh:\/\//i.test(v)) expected(HOST_URL_FORMS, v);
  const url = urlWithHost(v, HOST_URL_FORMS);
  if (url.password) throw new ValueProblem(`${describeValue(v)} carries a password; use SSH keys instead`);
  if (url.search || url.hash || (url.pathname !== '' && url.pathname !== '/')) {
    throw new ValueProblem(`${describeValue(v)}: a host URL names the host only; expected ${HOST_URL_FORMS}`);
  }
  return {
    kind: 'ssh',
    user: url.username ? decodeURIComponent(url.username) : undefined,
    host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port ? parsePort(url.port, v) : undefined,
  };
}

/** "host:port" or "[v6addr]:port", as the daemon's listen address. */
export function parseListen(v: unknown): { host: string; port: number } {
  const what = 'host:port, e.g. 127.0.0.1:8470 or [::1]:8470';
  if (typeof v !== 'string') expected(what, v);
  const m = /^\[([0-9a-fA-F:.]+)\]:([^:]*)$/.exec(v) ?? /^([^\s:[\]]+):([^:]*)$/.exec(v);
  if (!m) expected(what, v);
  return { host: m[1]!, port: parsePort(m[2]!, v) };
}

/**
 * Addresses a reverse proxy connects from: an IP address, a CIDR range (10.0.0.0/8), or
 * `loopback`; one or a list. What fastify's trustProxy (proxy-addr) takes.
 */
export function parseProxyAddresses(v: unknown): string[] {
  const what =
    'the address of a TLS reverse proxy (an IP address, a CIDR range, or loopback), or a list of them';
  const items = typeof v === 'string' ? [v] : Array.isArray(v) && v.length > 0 ? v : expected(what, v);
  return items.map((item: unknown) => {
    if (typeof item !== 'string') return expected(what, item);
    if (item === 'loopback') return item;
    const [addr, bits, extra] = item.split('/');
    const family = isIP(addr ?? '');
    const max = family === 4 ? 32 : 128;
    const bitsOk = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    if (family === 0 || !bitsOk || extra !== undefined) expected(what, item);
    return item;
  });
}

/** A plain mail address (no display name): what SMTP's MAIL FROM and RCPT TO take. */
export function parseEmail(v: unknown): string {
  if (typeof v !== 'string' || !/^[^@\s<>,;"]+@[^@\s<>,;"]+\.[^@\s<>,;"]+$/.test(v)) {
    expected('a mail address such as ops@example.com', v);
  }
  return v;
}

export function parseUrl(v: unknown, schemes: readonly string[], example: string): URL {
  const what = `a ${schemes.join(' or ')} URL such as ${example}`;
  if (typeof v !== 'string') expected(what, v);
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return expected(what, v);
  }
  if (!schemes.includes(url.protocol.slice(0, -1)) || !url.hostname) expected(what, v);
  return url;
}

/** A file name at a filesystem's root, such as the cache drive signature. */
export function parseFileName(v: unknown): string {
  if (typeof v !== 'string' || v === '' || v === '.' || v === '..' || v.includes('/') || v.includes('\0')) {
    expected('a file name without "/" such as .dr_cache', v);
  }
  return v;
}
