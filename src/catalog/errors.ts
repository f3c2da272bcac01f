/**
 * Catalog failures as HavenErrors. SQLite reports everything through result codes
 * (https://sqlite.org/rescode.html); the ones an operator can act on get their own code here,
 * the rest are bugs.
 */
import { HavenError, type HavenErrorOptions, InternalError, type KindOf } from '../core/errors.ts';
import type { CATALOG_CODES } from './error-codes.ts';

export type CatalogCode = keyof typeof CATALOG_CODES;

export class CatalogError<C extends CatalogCode = CatalogCode> extends HavenError<C> {
  constructor(code: C, message: string, options: HavenErrorOptions<KindOf<C>>) {
    super(code, message, options);
  }
}

const NOT_FOUND = {
  checkpoint: 'CATALOG_CHECKPOINT_NOT_FOUND',
  event: 'CATALOG_EVENT_NOT_FOUND',
  run: 'CATALOG_RUN_NOT_FOUND',
} as const satisfies Record<string, CatalogCode>;

/** A value a caller passed that the catalog cannot store (unknown kind, empty name). */
export function badValue(what: string, value: unknown, expected: string): CatalogError {
  return new CatalogError(
    'CATALOG_BAD_VALUE',
    `invalid ${what} ${JSON.stringify(value)}: expected ${expected}`,
    {
      kind: 'usage',
      details: { what, value: typeof value === 'string' ? value : String(value) },
    },
  );
}

export function notFound(
  what: keyof typeof NOT_FOUND,
  key: string,
  details: Record<string, unknown>,
): CatalogError {
  return new CatalogError(NOT_FOUND[what], `${what} ${key} is not in the catalog`, {
    kind: 'not-found',
    details,
  });
}

/** Turns what better-sqlite3 throws into a HavenError that names the catalog file. */
export function catalogError(err: unknown, path: string): HavenError {
  if (err instanceof HavenError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return new InternalError(message, err);
  const details = { path, sqlite: code };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new CatalogError('CATALOG_BUSY', `catalog ${path} stayed locked by another Haven process`, {
      kind: 'conflict',
      cause: err,
      hint: 'Another run or the daemon held the catalog longer than the busy timeout; run again in a moment.',
      details,
    });
  }
  if (code === 'SQLITE_FULL') {
    return new HavenError('NO_SPACE', `no space left writing the catalog ${path}`, {
      kind: 'resource',
      cause: err,
      hint: 'Free space in the state directory, then run again; what the catalog held before is intact.',
      details,
    });
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new CatalogError(
      'CATALOG_CORRUPT',
      `catalog ${path} is damaged or not a SQLite database: ${message}`,
      {
        kind: 'integrity',
        cause: err,
        hint: `Move ${path} aside and run again: Haven starts a new catalog and resyncs by checksum; the DR copies are not affected.`,
        details,
      },
    );
  }
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_PERM')
  ) {
    return new CatalogError('CATALOG_CANNOT_WRITE', `cannot open or write the catalog ${path}: ${message}`, {
      kind: 'io',
      cause: err,
      hint: 'Run as root, or give the Haven user write access to the state directory (HAVEN_STATE_DIR).',
      details,
    });
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return new HavenError('IO_ERROR', `I/O error on the catalog ${path}: ${message}`, {
      kind: 'io',
      cause: err,
      details,
    });
  }
  return new InternalError(`catalog ${path}: ${message}`, err);
}
