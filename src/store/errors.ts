/**
 * Store errors. Every code is stable (operators and the receiver's ERROR frames carry it) and
 * listed in error-codes.ts (and so docs/errors.md) with what to do.
 */

import { type CodeOfKind, type CoreCode, HavenError, type KindOf } from '../core/errors.ts';
import type { STORE_CODES } from './error-codes.ts';

export type StoreCode = keyof typeof STORE_CODES;

/** Store codes, and the core codes the store reports as its own (NO_SPACE). */
export class StoreError<C extends StoreCode | CoreCode = StoreCode | CoreCode> extends HavenError<C> {}

export interface StoreErrorOptions {
  hint?: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

export function storeError<C extends StoreCode | CoreCode>(
  code: C,
  kind: KindOf<C>,
  message: string,
  options: StoreErrorOptions = {},
): StoreError<C> {
  return new StoreError(code, message, { kind, ...options });
}

/** Replication is refused while the server runs at the DR site from this store. */
export function activeAtDrError(server: string, activeAtDr: { since: string }): StoreError {
  return storeError(
    'STORE_ACTIVE_AT_DR',
    'refused',
    `${server} is running at the DR site since ${activeAtDr.since}`,
    {
      hint: 'Replicating now would overwrite the copy that runs at the DR site; fail back first, or clear the activation.',
      details: { server, activeAtDr },
    },
  );
}

/**
 * The way forward when a generation a run must build on lost an image and nothing else in the
 * store can stand in for it (issue 13.7): start the server's copies again. Only that server's
 * files go; every other server of the store is untouched.
 */
export function startOverHint(server: string): string {
  return `Run \`haven verify --store PATH ${server}\` to see what is missing; restore the image if you can. Otherwise start ${server}'s copies again: remove .haven/servers/${server} and the images named ${server}_*_<n> in the store, and the next \`haven protect ${server}\` sends a full copy.`;
}

/** A file Haven wrote (descriptor, manifest, journal, delta record) does not parse. */
export function invalidFile(path: string, reason: string, cause?: unknown): StoreError {
  return storeError('STORE_FILE_INVALID', 'integrity', `${path} is not a valid Haven store file: ${reason}`, {
    hint: 'The store metadata is damaged; run `haven verify` on the target and restore the file from a copy if you have one.',
    details: { path },
    cause,
  });
}

export function generationNotFound(server: string, generationId: string): StoreError {
  return storeError(
    'STORE_GENERATION_NOT_FOUND',
    'not-found',
    `${server} has no generation ${generationId}`,
    {
      hint: 'List the generations with `haven images <server> --store PATH`; a rotation may have retired this one.',
      details: { server, generationId },
    },
  );
}

export function serverNotFound(server: string): StoreError {
  return storeError('STORE_SERVER_NOT_FOUND', 'not-found', `the store holds no generation of ${server}`, {
    hint: 'Check the server name; it appears in the store after its first completed replication.',
    details: { server },
  });
}

/** Bad arguments from the receiver (a frame out of range, a call in the wrong state). */
export function badRequest(
  code: StoreCode & CodeOfKind<'protocol'>,
  message: string,
  details?: Record<string, unknown>,
): StoreError {
  return storeError(code, 'protocol', message, {
    hint: 'The sender sent something the store cannot accept; the delta was not changed by this request.',
    details,
  });
}
