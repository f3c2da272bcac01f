/**
 * What a `--dry-run` may read: the catalog as it is, only when it exists at the schema this Haven
 * writes; otherwise the plan goes without it (it only tells whether a crashed run's backup job
 * would be continued, and which lost checkpoint a run would redefine).
 *
 * It is opened as every command opens it, not read-only: a read-only connection to a WAL database
 * that no other process has open creates its `-wal` and `-shm` files and cannot remove them, while
 * the last read-write connection removes them when it closes. Nothing is written: the schema
 * version is read from the file's header first (SQLite file format §1.3: the user version is the
 * big-endian 32-bit number at offset 60), so an open that would migrate never happens.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import type { Catalog } from '../catalog/catalog.ts';
import { asHavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

function userVersion(path: string): number | undefined {
  const header = Buffer.alloc(100);
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, header, 0, 100, 0) === 100 ? header.readUInt32BE(60) : undefined;
  } finally {
    closeSync(fd);
  }
}

export async function catalogForDryRun(stateDir: string, log: Logger): Promise<Catalog | undefined> {
  // Imported here: `haven protect` loads the catalog only after its receiver started.
  const { catalogPath, openCatalog, SCHEMA_VERSION } = await import('../catalog/catalog.ts');
  const path = catalogPath(stateDir);
  try {
    if (!existsSync(path)) return undefined;
    const version = userVersion(path);
    if (version !== SCHEMA_VERSION) {
      log.verbose('planning without the catalog: its schema is not this Haven’s', { version });
      return undefined;
    }
    return openCatalog(path, { log });
  } catch (e) {
    log.verbose('planning without the catalog', { err: asHavenError(e) });
    return undefined;
  }
}
