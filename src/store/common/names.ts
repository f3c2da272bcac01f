/**
 * Names every store kind shares (docs/design.md §4.1, §4.3): image names (`<server>_<disk>_<seq>`, the
 * file name without `.raw` in a filesystem store, the LV or RBD image name in the others), the ids
 * Haven generates, the collision rule between servers, and `under()`, which refuses any path built
 * from a name that would leave the store's directory.
 */
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { storeError } from '../errors.ts';
import type { Seq } from './rotation-plan.ts';

/** docs/design.md §4.1: `<server>_<disk>_<sequence>`, or `_incomplete` while written. */
export function imageName(server: string, disk: string, seq: Seq): string {
  return `${server}_${disk}_${seq}`;
}

/**
 * The sequence numbers (and `incomplete`) of `server`'s disk `disk` among image names (file names
 * ending in `suffix`, or LV names): what `ImageVolumes.list` returns. Other names are ignored.
 */
export function imageSeqs(names: Iterable<string>, server: string, disk: string, suffix = ''): Seq[] {
  const prefix = `${server}_${disk}_`;
  const out: Seq[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(suffix)) continue;
    const seq = name.slice(prefix.length, name.length - suffix.length);
    if (seq === 'incomplete') out.push(seq);
    else if (/^[1-9]\d*$/.test(seq)) out.push(Number(seq));
  }
  return out;
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

export type NameCollision = {
  prefix: string;
  server: string;
  disk: string;
  otherServer: string;
  otherDisk: string;
};

/**
 * Two servers' images collide when `<server>_<disk>` is the same string (server `a_b` disk `c`
 * and server `a` disk `b_c` both make `a_b_c_1`): the sequence is always the last `_` field, so
 * equal prefixes are exactly the colliding case. Returns the first clash, or null.
 */
export function findNameCollision(
  ours: { server: string; disks: readonly string[] },
  others: Iterable<{ server: string; disks: readonly string[] }>,
): NameCollision | null {
  const mine = new Map<string, string>();
  for (const disk of ours.disks) {
    const prefix = `${ours.server}_${disk}`;
    const twin = mine.get(prefix);
    if (twin !== undefined) {
      return { prefix, server: ours.server, disk, otherServer: ours.server, otherDisk: twin };
    }
    mine.set(prefix, disk);
  }
  for (const other of others) {
    if (other.server === ours.server) continue;
    for (const otherDisk of other.disks) {
      const prefix = `${other.server}_${otherDisk}`;
      const clash = mine.get(prefix);
      if (clash !== undefined)
        return { prefix, server: ours.server, disk: clash, otherServer: other.server, otherDisk };
    }
  }
  return null;
}
