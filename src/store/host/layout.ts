/**
 * Where host artefacts live in a filesystem store (docs/store-format.md, "Host artefacts"):
 *
 *   <store>/hosts/<host>_rescue_<seq>.iso              rescue media, `_1` newest
 *   <store>/hosts/<host>_backup_<seq>.tar.gz           backup archives
 *   <store>/hosts/<host>_<kind>_incomplete<suffix>     a file being received
 *   <store>/hosts/<host>.txt                           what the files are and how to recover (plain text)
 *   <store>/.haven/hosts/<host>/manifest.json          what readers trust
 *   <store>/.haven/hosts/<host>/journal.json           a rotation in progress
 *   <store>/.haven/hosts/<host>/writer.lock            one writer (or long reader) per host
 *   <store>/.haven/hosts/<host>/manifest.lock          short lock around manifest updates
 *
 * Host files sit in their own directory, so they can never collide with a server's images
 * (`<server>_<disk>_<seq>.raw` in the store root), whatever the names.
 */
import { join } from 'node:path';
import { checkName } from '../../core/names.ts';
import { under } from '../common/names.ts';
import { HOST_FILE_SUFFIX, type HostFileKind } from './types.ts';

export class HostLayout {
  constructor(readonly root: string) {}

  get filesDir(): string {
    return join(this.root, 'hosts');
  }

  get metaDir(): string {
    return join(this.root, '.haven', 'hosts');
  }

  /** `<host>_<kind>_<seq><suffix>`: the seed's naming (docs/hosts.md). */
  fileName(host: string, kind: HostFileKind, seq: number | 'incomplete'): string {
    return `${checkName('host', host)}_${kind}_${seq}${HOST_FILE_SUFFIX[kind]}`;
  }

  file(host: string, kind: HostFileKind, seq: number | 'incomplete'): string {
    return under(this.root, 'hosts', this.fileName(host, kind, seq));
  }

  readme(host: string): string {
    return under(this.root, 'hosts', `${checkName('host', host)}.txt`);
  }

  hostDir(host: string): string {
    return under(this.root, '.haven', 'hosts', checkName('host', host));
  }

  manifest(host: string): string {
    return join(this.hostDir(host), 'manifest.json');
  }

  journal(host: string): string {
    return join(this.hostDir(host), 'journal.json');
  }

  writerLock(host: string): string {
    return join(this.hostDir(host), 'writer.lock');
  }

  manifestLock(host: string): string {
    return join(this.hostDir(host), 'manifest.lock');
  }
}

/** The host, kind and sequence of a host file name, or null for anything else. */
export function parseHostFileName(
  name: string,
): { host: string; kind: HostFileKind; seq: number | 'incomplete' } | null {
  const m = /^(.+)_(rescue|backup)_(\d+|incomplete)(\.iso|\.tar\.gz)$/.exec(name);
  const host = m?.[1];
  if (!m || host === undefined) return null;
  const kind = m[2] as HostFileKind;
  if (HOST_FILE_SUFFIX[kind] !== m[4]) return null;
  const seq = m[3] === 'incomplete' ? 'incomplete' : Number(m[3]);
  return { host, kind, seq };
}
