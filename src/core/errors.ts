/**
 * Errors with stable codes.
 *
 * Every failure Haven reports is a HavenError: `code` is stable (operators script against it and
 * docs/errors.md lists it), `kind` decides the CLI exit code (cli/exit-codes.ts is the one place
 * that maps kinds to numbers), and `hint` tells the caller what to do next.
 *
 * The codes form a catalogue: each component lists its own in its error-codes.ts (kind, meaning,
 * what the operator should do), all of them join HavenCodeRegistry below, and so a code that no
 * catalogue lists, or a kind that disagrees with the catalogue, does not compile;
 * docs/errors.md is generated from the catalogues (scripts/gen-errors).
 */
import type { CORE_CODES } from './error-codes.ts';

/** The families of failure. Each maps to one documented exit code. */
export type ErrorKind =
  | 'usage' // bad flags or arguments
  | 'config' // invalid configuration file
  | 'not-found' // a named server, generation, job or file does not exist
  | 'unavailable' // a required service or tool is missing or not reachable (libvirtd, qemu-nbd, ssh)
  | 'refused' // a safety rule refused the operation (primary still running, DR copy active)
  | 'conflict' // another run holds the lock, or state disagrees (split brain, name collision)
  | 'integrity' // a digest, manifest or image failed verification
  | 'resource' // out of space, memory or another bounded resource
  | 'protocol' // a peer sent something malformed or unexpected (NBD, replication stream)
  | 'io' // an operating-system I/O failure
  | 'interrupted' // cancelled by signal or by the operator
  | 'internal'; // a bug: Haven reached a state it should not

/** Every kind, for the codes that carry the kind of the failure they report (docs/errors.md). */
export const ERROR_KINDS = [
  'usage',
  'config',
  'not-found',
  'unavailable',
  'refused',
  'conflict',
  'integrity',
  'resource',
  'protocol',
  'io',
  'interrupted',
  'internal',
] as const satisfies readonly ErrorKind[];

/**
 * One catalogue entry. `kind` is a list only where one code is reported with several kinds (the
 * kind of the failure it wraps, say); docs/errors.md shows every exit code it can lead to.
 */
export interface CodeEntry {
  kind: ErrorKind | readonly [ErrorKind, ...ErrorKind[]];
  /** What happened, in one sentence. */
  meaning: string;
  /** What the operator should do, naming only real commands. */
  action: string;
}

type CoreCatalogue = typeof CORE_CODES;

export type CoreCode = keyof CoreCatalogue;

/**
 * Every code Haven may report, code → catalogue entry: core's own here; src/cli/error-catalogue.ts,
 * the one module that imports every component's catalogue, adds theirs by declaration merging
 * (`declare module '../core/errors.ts'`), so core names none of them and the arrows of docs/design.md §3
 * still point down.
 */
export interface HavenCodeRegistry extends CoreCatalogue {}

export type HavenCode = keyof HavenCodeRegistry & string;

type KindsOf<E> = E extends readonly (infer K)[] ? K : E;

/** The kinds the catalogue allows for `C` (for a union of codes, the union of their kinds). */
export type KindOf<C extends HavenCode> = KindsOf<HavenCodeRegistry[C]['kind']>;

/** The codes the catalogue allows to be reported with kind `K`. */
export type CodeOfKind<K extends ErrorKind> = {
  [C in HavenCode]: K extends KindOf<C> ? C : never;
}[HavenCode];

export interface HavenErrorOptions<K extends ErrorKind = ErrorKind> {
  kind: K;
  /** What the caller should do about it, in one sentence. */
  hint?: string;
  cause?: unknown;
  /** Structured facts for --json output and logs. Must be JSON-serialisable. */
  details?: Record<string, unknown>;
}

/**
 * `C` is inferred from the code a throw site writes, so `new HavenError('NO_SPACE', …, { kind:
 * 'io' })` fails to compile: the catalogue says NO_SPACE is 'resource'.
 */
export class HavenError<C extends HavenCode = HavenCode> extends Error {
  readonly code: C;
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: C, message: string, options: HavenErrorOptions<KindOf<C>>) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.kind = options.kind;
    this.hint = options.hint;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      kind: this.kind,
      message: this.message,
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export class UsageError extends HavenError {
  constructor(message: string, hint?: string, code: CodeOfKind<'usage'> = 'USAGE') {
    super(code, message, { kind: 'usage', hint });
  }
}

export class InternalError extends HavenError {
  constructor(message: string, cause?: unknown) {
    super('INTERNAL', message, {
      kind: 'internal',
      cause,
      hint: 'This is a bug in Haven; please report it with the log file of this run.',
    });
  }
}

export class InterruptedError extends HavenError {
  constructor(message = 'interrupted') {
    super('INTERRUPTED', message, { kind: 'interrupted' });
  }
}

/** Wraps anything thrown into a HavenError, keeping HavenErrors as they are. */
export function asHavenError(err: unknown): HavenError {
  if (err instanceof HavenError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string' && typeof e.syscall === 'string') {
    return ioError(e);
  }
  return new InternalError(err instanceof Error ? err.message : String(err), err);
}

/** Operating-system errors: disk full and its relatives are 'resource', the rest 'io'. */
export function ioError(e: NodeJS.ErrnoException, what?: string): HavenError {
  const subject = what ?? e.path ?? e.syscall ?? 'I/O';
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') {
    return new HavenError('NO_SPACE', `no space left writing ${subject}`, {
      kind: 'resource',
      cause: e,
      hint: 'Free space on the target filesystem (or add a cache drive), then run again; stored generations are intact.',
      details: { errno: e.code, path: e.path },
    });
  }
  if (e.code === 'ENOENT') {
    return new HavenError('FILE_NOT_FOUND', `${subject}: no such file or directory`, {
      kind: 'not-found',
      cause: e,
      details: { errno: e.code, path: e.path },
    });
  }
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new HavenError('PERMISSION_DENIED', `${subject}: permission denied`, {
      kind: 'io',
      cause: e,
      hint: 'Run as root, or give the Haven user access to this path.',
      details: { errno: e.code, path: e.path },
    });
  }
  if (e.code === 'EROFS') {
    // A filesystem the kernel made read-only after an error (errors=remount-ro), or mounted so.
    return new HavenError('READ_ONLY_FILESYSTEM', `${subject}: the filesystem is read-only`, {
      kind: 'io',
      cause: e,
      hint: 'Find out why the filesystem went read-only (dmesg), repair it (e2fsck, xfs_repair) and mount it read-write; the next run completes the pending commit.',
      details: { errno: e.code, path: e.path },
    });
  }
  return new HavenError('IO_ERROR', `${subject}: ${e.message}`, {
    kind: 'io',
    cause: e,
    details: { errno: e.code, path: e.path },
  });
}
