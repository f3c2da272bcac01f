/**
 * The store a target URL's query names beside its directory: `?lvm=VG[,VG…]` (an LVM store,
 * docs/store-lvm.md) or `?rbd=rbd://USER@CLUSTER/POOL` (an rbd store, docs/store-rbd.md, its own
 * query percent-encoded). One parser for the command line's `--to` (transport/url.ts) and the
 * configuration's `targets.<name>.url` (config-values.ts), which wrap its message in their errors.
 */

/** What a store URL's query names (`haven receive --lvm`, `--rbd`). */
export interface StoreQuery {
  lvm?: string;
  rbd?: string;
}

/** The query of `u` as a StoreQuery; a string saying what is wrong otherwise. */
export function parseStoreQuery(u: URL, scheme: string): StoreQuery | string {
  if (!u.search) return {};
  const keys = [...u.searchParams.keys()];
  const key = keys[0];
  const value = key === undefined ? null : u.searchParams.get(key);
  if (
    (scheme !== 'ssh' && scheme !== 'file') ||
    keys.length !== 1 ||
    (key !== 'lvm' && key !== 'rbd') ||
    !value
  ) {
    return 'the only query a store URL may carry is lvm=VG[,VG…] or rbd=rbd://USER@CLUSTER/POOL (ssh:// and file:// targets)';
  }
  if (key === 'lvm') {
    if (!/^[A-Za-z0-9+_.,/-]+$/.test(value)) return `lvm=${value} is not a list of volume groups`;
    return { lvm: value };
  }
  // Checked in full by the receiver (store/rbd/location.ts); here only what could reach ssh's command line.
  if (!/^rbd:\/\/[A-Za-z0-9_.,:@[\]/?=&%+-]+$/.test(value))
    return `rbd=${value} is not an rbd store location`;
  return { rbd: value };
}

/** The query as a URL carries it (`?lvm=…`, `?rbd=…` percent-encoded), or '' for a plain store. */
export function storeQueryText(q: StoreQuery): string {
  if (q.lvm) return `?lvm=${q.lvm}`;
  if (q.rbd) return `?rbd=${encodeURIComponent(q.rbd)}`;
  return '';
}
