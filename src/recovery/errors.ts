/**
 * Errors of recovery/ (activation, drills, restore, failback, the primary guard). Every code is
 * stable and listed in error-codes.ts (and so docs/errors.md) with what to do about it.
 */
import { HavenError, type KindOf } from '../core/errors.ts';
import type { RECOVERY_CODES } from './error-codes.ts';

export type RecoveryCode = keyof typeof RECOVERY_CODES;

export class RecoveryError<C extends RecoveryCode = RecoveryCode> extends HavenError<C> {}

export function recoveryError<C extends RecoveryCode>(
  code: C,
  kind: KindOf<C>,
  message: string,
  options: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {},
): RecoveryError<C> {
  return new RecoveryError(code, message, { kind, ...options });
}

export function unknownServer(server: string, store: string, known: readonly string[]): RecoveryError {
  return recoveryError(
    'RECOVERY_UNKNOWN_SERVER',
    'not-found',
    `the store at ${store} holds no server ${server}`,
    {
      hint: `Servers in this store: ${known.length ? known.join(', ') : '(none)'}. A server appears after its first completed replication.`,
      details: { server, store, known: [...known] },
    },
  );
}

export function notActive(server: string): RecoveryError {
  return recoveryError('RECOVERY_NOT_ACTIVE', 'conflict', `${server} is not running at the DR site`, {
    hint: 'Only a server started with `haven activate` can be failed back or deactivated.',
    details: { server },
  });
}
