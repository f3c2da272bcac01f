/**
 * Errors with stable codes.
 *
 * Every failure Haven reports is a HavenError: `code` is stable (operators script against it and
 * docs/errors.md lists it), `kind` decides the CLI exit code (cli/exit-codes.ts is the one place
 * that maps kinds to numbers), and `hint` tells the caller what to do next.
 */

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

export interface HavenErrorOptions {
  kind: ErrorKind;
  /** What the caller should do about it, in one sentence. */
  hint?: string;
  cause?: unknown;
  /** Structured facts for --json output and logs. Must be JSON-serialisable. */
  details?: Record<string, unknown>;
}

export class HavenError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: HavenErrorOptions) {
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
  constructor(message: string, hint?: string, code = 'USAGE') {
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
