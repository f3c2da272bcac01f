/**
 * Where an rbd store is: a Ceph cluster and a pool (docs/store-rbd.md).
 *
 *   rbd://haven@ceph/dr                      user client.haven of cluster "ceph": its configuration
 *                                            /etc/ceph/ceph.conf and keyring
 *                                            /etc/ceph/ceph.client.haven.keyring (Ceph's own
 *                                            defaults for a cluster name), pool "dr"
 *   rbd://haven@10.0.0.1,10.0.0.2,10.0.0.3/dr?keyring=/etc/haven/ceph.keyring
 *                                            the same with monitors instead of a configuration file
 *   rbd://haven@ceph/dr?conf=/srv/c.conf&keyring=/srv/k
 *                                            another configuration file or keyring
 *
 * A host part with a dot, a colon, a comma or a digit first is a list of monitors; any other is a
 * cluster name. The pool, the user and the cluster are Ceph names; paths must be absolute.
 */
import { isAbsolute } from 'node:path';
import { badLocation } from './errors.ts';

export interface RbdLocation {
  pool: string;
  /** The cephx user id (`haven` for client.haven). */
  user: string;
  /** The cluster name (configuration from /etc/ceph/<cluster>.conf), when no monitors are given. */
  cluster: string | undefined;
  /** Monitor addresses (`host[:port]`), when given instead of a configuration file. */
  monitors: string[] | undefined;
  /** Ceph configuration file. */
  conf: string | undefined;
  keyring: string;
}

const CEPH_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/;
/** A user id as libvirt's `<auth username>` takes it (domaincommon.rng "genericName"): no dots. */
const CEPH_USER = /^[A-Za-z0-9_][A-Za-z0-9_+-]{0,99}$/;
const MONITOR = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

export function isRbdLocation(spec: string): boolean {
  return /^rbd:\/\//i.test(spec);
}

export function parseRbdLocation(spec: string): RbdLocation {
  if (!isRbdLocation(spec)) throw badLocation(spec, 'it does not start with rbd://');
  if (/[\0\n\r\s]/.test(spec)) throw badLocation(spec, 'it holds spaces or control characters');
  const rest = spec.slice('rbd://'.length);
  const q = rest.indexOf('?');
  const [authority, path] = splitOnce(q < 0 ? rest : rest.slice(0, q), '/');
  const query = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
  const at = authority.lastIndexOf('@');
  const user = at < 0 ? 'admin' : decodeURIComponent(authority.slice(0, at));
  const host = at < 0 ? authority : authority.slice(at + 1);
  const pool = decodeURIComponent(path ?? '');
  if (!CEPH_USER.test(user)) {
    throw badLocation(
      spec,
      `user ${JSON.stringify(user)} is not a Ceph user id libvirt accepts (letters, digits, _ + -)`,
    );
  }
  if (!CEPH_NAME.test(pool))
    throw badLocation(
      spec,
      pool ? `pool ${JSON.stringify(pool)} is not a pool name` : 'no pool after the cluster',
    );
  for (const k of query.keys()) {
    if (!['conf', 'keyring'].includes(k))
      throw badLocation(spec, `unknown option ${k} (conf and keyring are known)`);
  }
  const conf = absolute(spec, 'conf', query.get('conf'));
  const keyringOption = absolute(spec, 'keyring', query.get('keyring'));
  const isMonitors = /[.:,[]/.test(host) || /^\d/.test(host);
  if (isMonitors) {
    const monitors = host.split(',');
    for (const m of monitors)
      if (!MONITOR.test(m)) throw badLocation(spec, `monitor ${JSON.stringify(m)} is not host[:port]`);
    if (!keyringOption) throw badLocation(spec, 'with monitors, the keyring must be given (?keyring=FILE)');
    return { pool, user, cluster: undefined, monitors, conf, keyring: keyringOption };
  }
  const cluster = host || 'ceph';
  if (!CEPH_NAME.test(cluster))
    throw badLocation(spec, `cluster ${JSON.stringify(cluster)} is not a cluster name`);
  return {
    pool,
    user,
    cluster,
    monitors: undefined,
    conf: conf ?? `/etc/ceph/${cluster}.conf`,
    keyring: keyringOption ?? `/etc/ceph/${cluster}.client.${user}.keyring`,
  };
}

/** The location as written in logs and listings (the same string parses back to it). */
export function formatRbdLocation(l: RbdLocation): string {
  const host = l.monitors ? l.monitors.join(',') : l.cluster;
  const q = new URLSearchParams();
  if (l.monitors) {
    if (l.conf) q.set('conf', l.conf);
    q.set('keyring', l.keyring);
  } else {
    if (l.conf !== `/etc/ceph/${l.cluster}.conf`) q.set('conf', l.conf ?? '');
    if (l.keyring !== `/etc/ceph/${l.cluster}.client.${l.user}.keyring`) q.set('keyring', l.keyring);
  }
  const query = q.toString();
  return `rbd://${l.user}@${host}/${l.pool}${query ? `?${query}` : ''}`;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

function absolute(spec: string, key: string, value: string | null): string | undefined {
  if (value === null) return undefined;
  if (!isAbsolute(value)) throw badLocation(spec, `${key} must be an absolute path`);
  return value;
}
