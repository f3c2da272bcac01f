/**
 * The connection every part of the catalog shares: statements prepared once, reads and writes
 * whose SQLite errors become HavenErrors, and writes in short IMMEDIATE transactions. IMMEDIATE
 * takes the write lock at BEGIN, so two processes never both read under a shared lock and then
 * deadlock upgrading it (SQLITE_BUSY without waiting); they queue on the busy timeout instead.
 */
import type Database from 'better-sqlite3';
import { badValue, catalogError } from './errors.ts';

export type Row = Record<string, unknown>;

export class CatalogDb {
  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;

  constructor(
    readonly db: Database.Database,
    readonly path: string,
  ) {
    this.tx = db.transaction((fn: () => unknown) => fn());
  }

  prepare(sql: string): Database.Statement {
    try {
      return this.db.prepare(sql);
    } catch (e) {
      throw catalogError(e, this.path);
    }
  }

  read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw catalogError(e, this.path);
    }
  }

  /** Runs `fn` in an IMMEDIATE transaction (a savepoint when already inside one). */
  write<T>(fn: () => T): T {
    try {
      return this.tx.immediate(fn) as T;
    } catch (e) {
      throw catalogError(e, this.path);
    }
  }
}

/** Milliseconds since the epoch, as stored. */
export function ms(d: Date | undefined, fallback = Date.now()): number {
  if (d === undefined) return fallback;
  const t = d.getTime();
  if (!Number.isFinite(t)) throw badValue('time', String(d), 'a valid Date');
  return t;
}

export function date(v: unknown): Date {
  return new Date(v as number);
}

export function dateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : new Date(v as number);
}

export function str(v: unknown): string {
  return v as string;
}

export function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : (v as string);
}

export function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : (v as number);
}

/**
 * A reader from a row to a record, declared by its columns: `'server updated_at:date record:json'`.
 * Each column becomes the camelCase key (`updated_at` → `updatedAt`); `:date` turns stored
 * milliseconds into a Date, `:json` parses a TEXT column and `:bool` reads SQLite's 0/1; NULL (or a column the query did not
 * select) becomes null. Only the listed columns are read, so `SELECT *` may return more.
 */
export function rowReader<T>(columns: string): (r: Row) => T {
  const fields = columns
    .split(/\s+/)
    .filter((c) => c !== '')
    .map((spec) => {
      const [column = spec, type] = spec.split(':');
      const key = column.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
      return { column, key, convert: columnConverter(spec, type) };
    });
  return (r) => {
    const record: Record<string, unknown> = {};
    for (const f of fields) record[f.key] = f.convert(r[f.column]);
    return record as T;
  };
}

function columnConverter(spec: string, type: string | undefined): (v: unknown) => unknown {
  if (type === undefined) return (v) => v ?? null;
  if (type === 'date') return dateOrNull;
  if (type === 'json') return fromJson;
  if (type === 'bool') return (v) => (v === null || v === undefined ? null : v === 1);
  throw new Error(`rowReader: ${JSON.stringify(spec)} has an unknown type (date, json or bool)`);
}

/** JSON for a TEXT column; bigints become strings so nothing is lost silently. */
export function toJson(v: unknown): string | null {
  if (v === undefined) return null;
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

export function fromJson(v: unknown): unknown {
  return v === null || v === undefined ? null : JSON.parse(v as string);
}

export function oneOf<T extends string>(what: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw badValue(what, v, allowed.map((a) => JSON.stringify(a)).join(', '));
  }
  return v as T;
}

export function nonEmpty(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw badValue(what, v, 'a non-empty string');
  return v;
}

export function optionalText(what: string, v: unknown): string | null {
  if (v === undefined || v === null) return null;
  return nonEmpty(what, v);
}

/** A count of bytes or milliseconds: a non-negative safe integer. */
export function count(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw badValue(what, v, 'a non-negative integer');
  return v;
}

export function limit(v: number | undefined, fallback: number, max = 10_000): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw badValue('limit', v, 'a positive integer');
  return Math.min(v, max);
}
