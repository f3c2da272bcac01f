/**
 * Where everything lives in a filesystem store (docs/store-format.md). Every path built from a
 * name passes through `under()`, which refuses anything that would leave the store root
 * (DESIGN §4.3), on top of core/names.ts having refused unsafe names already.
 */
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { checkName } from '../../core/names.ts';
import { storeError } from '../errors.ts';
import type { Seq } from '../rotation-plan.ts';

export const IMAGE_SUFFIX = '.raw';
export const DESCRIPTOR_FILE = 'haven-store.json';

/** DESIGN §4.1: `<server>_<disk>_<sequence>`, or `_incomplete` while written. */
export function imageName(server: string, disk: string, seq: Seq): string {
  return `${server}_${disk}_${seq}`;
}

/** Ids Haven generates itself (UUIDs); checked again when read back from files. */
const ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export function isId(id: string): boolean {
  return typeof id === 'string' && ID.test(id);
}

export function checkId(what: string, id: string): string {
  if (typeof id !== 'string' || !ID.test(id)) {
    throw storeError('STORE_BAD_ID', 'integrity', `invalid ${what} id ${JSON.stringify(id)}`, {
      hint: 'A store file names an id Haven would never generate; run `haven verify` on the target.',
    });
  }
  return id;
}

/** Joins `parts` under `root` and refuses any result outside it. */
export function under(root: string, ...parts: string[]): string {
  const p = resolve(root, ...parts);
  const rel = relative(root, p);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw storeError(
      'STORE_PATH_ESCAPE',
      'refused',
      `path ${JSON.stringify(parts.join('/'))} leaves the store`,
      {
        hint: 'Names must stay inside the store directory.',
        details: { root, parts },
      },
    );
  }
  return p;
}

export class FsLayout {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get descriptor(): string {
    return join(this.root, DESCRIPTOR_FILE);
  }
  get havenDir(): string {
    return join(this.root, '.haven');
  }
  get serversDir(): string {
    return join(this.havenDir, 'servers');
  }
  get locksDir(): string {
    return join(this.havenDir, 'locks');
  }
  get definitionsDir(): string {
    return join(this.root, 'definitions');
  }
  /** Store-wide lock, held briefly while a new delta checks for name collisions. */
  get storeLock(): string {
    return join(this.locksDir, '.store.lock');
  }
  /** Default staging area for deltas (when no cache drive is given). */
  get stagingDir(): string {
    return join(this.havenDir, 'staging');
  }

  image(server: string, disk: string, seq: Seq): string {
    return under(
      this.root,
      imageName(checkName('server', server), checkName('disk', disk), seq) + IMAGE_SUFFIX,
    );
  }
  serverDir(server: string): string {
    return under(this.serversDir, checkName('server', server));
  }
  manifest(server: string): string {
    return join(this.serverDir(server), 'manifest.json');
  }
  manifestLock(server: string): string {
    return join(this.serverDir(server), 'manifest.lock');
  }
  journal(server: string): string {
    return join(this.serverDir(server), 'journal.json');
  }
  serverLock(server: string): string {
    return under(this.locksDir, `${checkName('server', server)}.lock`);
  }
  digestsDir(server: string, generationId: string): string {
    return under(this.serverDir(server), 'digests', checkId('generation', generationId));
  }
  digestsRoot(server: string): string {
    return join(this.serverDir(server), 'digests');
  }
  sums(server: string, generationId: string, disk: string): string {
    return under(this.digestsDir(server, generationId), `${checkName('disk', disk)}.sums`);
  }
  deltasDir(server: string): string {
    return join(this.serverDir(server), 'deltas');
  }
  deltaDir(server: string, deltaId: string): string {
    return under(this.deltasDir(server), checkId('delta', deltaId));
  }
  deltaRecord(server: string, deltaId: string): string {
    return join(this.deltaDir(server, deltaId), 'delta.json');
  }
  definition(server: string): string {
    return under(this.definitionsDir, `${checkName('server', server)}.xml`);
  }
}

/**
 * Two servers' images collide when `<server>_<disk>` is the same string (server `a_b` disk `c`
 * and server `a` disk `b_c` both make `a_b_c_1`): the sequence is always the last `_` field, so
 * equal prefixes are exactly the colliding case. Returns the first clash, or null.
 */
export function findNameCollision(
  ours: { server: string; disks: readonly string[] },
  others: Iterable<{ server: string; disks: readonly string[] }>,
): { prefix: string; server: string; disk: string; otherServer: string; otherDisk: string } | null {
  const mine = new Map<string, string>();
  for (const d of ours.disks) {
    const prefix = `${ours.server}_${d}`;
    if (mine.has(prefix)) {
      return { prefix, server: ours.server, disk: d, otherServer: ours.server, otherDisk: mine.get(prefix)! };
    }
    mine.set(prefix, d);
  }
  for (const o of others) {
    if (o.server === ours.server) continue;
    for (const d of o.disks) {
      const prefix = `${o.server}_${d}`;
      const clash = mine.get(prefix);
      if (clash !== undefined)
        return { prefix, server: ours.server, disk: clash, otherServer: o.server, otherDisk: d };
    }
  }
  return null;
}
