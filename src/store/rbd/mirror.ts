/**
 * The rbd store's metadata in the pool (common/mirror.ts): every file a DR site needs to recover
 * from the cluster alone — the descriptor, manifests, journals, delta records, digest files and
 * definitions — is written through to RADOS objects in the pool's `haven` namespace as it
 * changes, and fetched back when a store is opened on a host that lacks it or holds an older copy.
 * Locks, staged delta data and activation state stay on the DR host: they belong to the process
 * and the host using them, like a cache drive's staged data.
 *
 * In the pool: object `haven.index`, whose omap maps each file's path (relative to the store) to
 * `{sha256, size, parts, at}`, and the file's content in objects `m.<path>`, `m.<path>#1`, …
 * (parts of 8 MiB: RADOS objects are kept small, and a 1 TiB disk's 512 MiB of digests never sits
 * in memory at once). A file is written first, then indexed; removed from the index first, then
 * deleted, so the index names only complete contents.
 *
 * Opening (`sync`): a file the pool has and this host lacks, or holds with other content and an
 * older time, is fetched; a file this host has and the pool lacks or holds older (a crash between
 * the local write and its copy, or an operator's edit of a definition) is written through. The
 * files of a server whose writer lock a live process holds on this host are left alone: that
 * process's copy is the newest.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, utimes } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { io, isErrno, removeIfExists, tmpName } from '../common/files.ts';
import { liveHolder } from '../common/lock.ts';
import type { MetadataLayout } from '../common/metadata-layout.ts';
import type { MetadataMirror } from '../common/mirror.ts';
import type { Broker } from './broker.ts';

const INDEX = 'haven.index';
const PART_BYTES = 8 << 20;

/** The metadata files a DR site recovers from (paths relative to the store's metadata root). */
const MIRRORED = [
  /^haven-store\.json$/,
  /^definitions\/[^/]+\.xml$/,
  /^\.haven\/servers\/[^/]+\/(manifest|manifest\.copy|journal)\.json$/,
  /^\.haven\/servers\/[^/]+\/deltas\/[^/]+\/delta\.json$/,
  /^\.haven\/servers\/[^/]+\/digests\/[^/]+\/[^/]+\.sums$/,
];

interface Entry {
  sha256: string;
  size: number;
  parts: number;
  /** When it was written through (ms since the epoch). */
  at: number;
}

export function isMirrored(rel: string): boolean {
  return MIRRORED.some((r) => r.test(rel));
}

function partName(rel: string, n: number): string {
  return n === 0 ? `m.${rel}` : `m.${rel}#${n}`;
}

/** Digest files are written once per generation and never change: their size tells them apart. */
function immutable(rel: string): boolean {
  return rel.endsWith('.sums');
}

export class RbdMirror implements MetadataMirror {
  constructor(
    private readonly broker: Broker,
    private readonly layout: MetadataLayout,
    private readonly log: Logger,
  ) {}

  async saved(path: string): Promise<void> {
    const rel = this.rel(path);
    if (rel !== null && isMirrored(rel)) await this.push(rel);
  }

  async removed(path: string): Promise<void> {
    const rel = this.rel(path);
    if (rel === null) return;
    const index = await this.index(rel);
    for (const [key, entry] of Object.entries(index)) {
      if (key !== rel && !key.startsWith(`${rel}/`)) continue;
      await this.broker.call('omap_rm', { obj: INDEX, keys: [key] });
      for (let n = 0; n < entry.parts; n++) await this.broker.call('obj_rm', { name: partName(key, n) });
    }
  }

  /** Brings this host's files and the pool's into agreement (see the top of this file). */
  async sync(): Promise<{ fetched: number; written: number }> {
    // A pool at its quota takes no write (Ceph's clients would wait on it): this host's newer
    // files are written through at a later open, and the store opens meanwhile to be read.
    const writable = (await this.broker.call('pool_status')).full !== true;
    if (!writable) this.log.warn('the pool is full: metadata changed here is written to it later', {});
    const index = await this.index('');
    const local = await this.localFiles();
    const counts = { fetched: 0, written: 0 };
    const held = new Map<string, boolean>();
    const busy = async (rel: string): Promise<boolean> => {
      const server = /^\.haven\/servers\/([^/]+)\//.exec(rel)?.[1];
      if (server === undefined) return false;
      if (!held.has(server)) held.set(server, (await liveHolder(this.layout.serverLock(server))) !== null);
      return held.get(server) === true;
    };
    for (const rel of new Set([...Object.keys(index), ...local.keys()])) {
      if (await busy(rel)) continue;
      const entry = index[rel];
      const mine = local.get(rel);
      if (entry && !mine) {
        await this.fetch(rel, entry);
        counts.fetched++;
      } else if (mine && !entry) {
        if (!writable) continue;
        await this.push(rel);
        counts.written++;
      } else if (entry && mine && !(await this.same(rel, entry, mine.size))) {
        if (mine.mtimeMs > entry.at) {
          if (!writable) continue;
          await this.push(rel);
          counts.written++;
        } else {
          await this.fetch(rel, entry);
          counts.fetched++;
        }
      }
    }
    if (counts.fetched || counts.written) this.log.info('store metadata synchronised with the pool', counts);
    return counts;
  }

  /** Fetches one file (the descriptor, before the store can open) if the pool has it. */
  async fetchIfMissing(rel: string): Promise<boolean> {
    const entry = (await this.index(rel))[rel];
    const path = join(this.layout.root, rel);
    if (!entry || (await stat(path).catch(() => null))) return false;
    await this.fetch(rel, entry);
    return true;
  }

  private rel(path: string): string | null {
    const rel = relative(this.layout.root, path);
    if (rel === '' || rel.startsWith('..')) return null;
    return rel.split(sep).join('/');
  }

  private async index(prefix: string): Promise<Record<string, Entry>> {
    const reply = await this.broker.call('omap_list', { obj: INDEX, prefix });
    const out: Record<string, Entry> = {};
    for (const [k, v] of Object.entries((reply.entries ?? {}) as Record<string, string>)) {
      if (isMirrored(k)) out[k] = JSON.parse(v) as Entry;
    }
    return out;
  }

  private async push(rel: string): Promise<void> {
    const path = join(this.layout.root, rel);
    const old = (await this.index(rel))[rel];
    const fh = await io(path, () => open(path, 'r')).catch((e) => {
      if (e instanceof Error && /ENOENT|not found/i.test(e.message)) return null;
      throw e;
    });
    if (!fh) return;
    const hash = createHash('sha256');
    let size = 0;
    let parts = 0;
    try {
      const buf = Buffer.allocUnsafe(PART_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, PART_BYTES, size);
        if (bytesRead === 0 && parts > 0) break;
        const part = buf.subarray(0, bytesRead);
        hash.update(part);
        await this.broker.call('obj_put', { name: partName(rel, parts) }, Buffer.from(part));
        size += bytesRead;
        parts++;
        if (bytesRead < PART_BYTES) break;
      }
    } finally {
      await fh.close();
    }
    const entry: Entry = { sha256: hash.digest('hex'), size, parts, at: Date.now() };
    await this.broker.call('omap_set', { obj: INDEX, entries: { [rel]: JSON.stringify(entry) } });
    for (let n = parts; n < (old?.parts ?? 0); n++)
      await this.broker.call('obj_rm', { name: partName(rel, n) });
  }

  private async fetch(rel: string, entry: Entry): Promise<void> {
    const path = join(this.layout.root, rel);
    await io(path, () => mkdir(join(path, '..'), { recursive: true }));
    const tmp = tmpName(path);
    const hash = createHash('sha256');
    const fh = await io(tmp, () => open(tmp, 'wx', 0o644));
    try {
      let at = 0;
      for (let n = 0; n < entry.parts; n++) {
        const { reply, data } = await this.broker.callData('obj_get', { name: partName(rel, n) });
        if (reply.missing === true) {
          this.log.warn('a metadata object of the pool is gone; not fetched', { file: rel });
          await fh.close();
          await removeIfExists(tmp);
          return;
        }
        hash.update(data);
        await fh.write(data, 0, data.length, at);
        at += data.length;
      }
      await fh.sync();
    } finally {
      await fh.close().catch(() => {});
    }
    if (hash.digest('hex') !== entry.sha256) {
      // Written through again meanwhile (the index is updated after the content): fetch later.
      await removeIfExists(tmp);
      this.log.warn('a metadata file changed in the pool while it was fetched; kept the local copy', {
        file: rel,
      });
      return;
    }
    await io(path, () => rename(tmp, path));
    const when = new Date(entry.at);
    await utimes(path, when, when).catch(() => {});
  }

  private async same(rel: string, entry: Entry, size: number): Promise<boolean> {
    if (entry.size !== size) return false;
    if (immutable(rel)) return true;
    const path = join(this.layout.root, rel);
    const data = await io(path, () => readFile(path));
    return createHash('sha256').update(data).digest('hex') === entry.sha256;
  }

  /** The mirrored files this host has, with their size and modification time. */
  private async localFiles(): Promise<Map<string, { size: number; mtimeMs: number }>> {
    const out = new Map<string, { size: number; mtimeMs: number }>();
    const walk = async (dir: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if (isErrno(e, 'ENOENT', 'ENOTDIR')) return;
        throw e;
      }
      for (const e of entries) {
        const path = join(dir, e.name);
        const rel = this.rel(path);
        if (rel === null) continue;
        if (e.isDirectory()) {
          if (rel === '.haven/locks' || rel === '.haven/active') continue;
          await walk(path);
        } else if (e.isFile() && isMirrored(rel)) {
          const st = await stat(path).catch(() => null);
          if (st) out.set(rel, { size: st.size, mtimeMs: st.mtimeMs });
        }
      }
    };
    await walk(this.layout.root);
    return out;
  }
}
