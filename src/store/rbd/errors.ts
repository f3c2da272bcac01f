/**
 * Errors of the rbd store (docs/store-rbd.md lists them with what to do). Ceph's clients report
 * a full pool, a stopped OSD and a stopped monitor all as a wait that only a client timeout ends
 * (test/fixtures/ceph/README.md), so a timeout is asked about once more: a pool over its quota is
 * NO_SPACE, anything else RBD_TIMEOUT.
 */
import type { KindOf } from '../../core/errors.ts';
import { type StoreCode, type StoreError, storeError } from '../errors.ts';

export function rbdError<C extends StoreCode>(
  code: C,
  kind: KindOf<C>,
  message: string,
  hint: string,
  details?: Record<string, unknown>,
  cause?: unknown,
): StoreError {
  return storeError(code, kind, message, {
    hint,
    ...(details ? { details } : {}),
    ...(cause === undefined ? {} : { cause }),
  });
}

export function badLocation(location: string, why: string): StoreError {
  return rbdError(
    'RBD_BAD_LOCATION',
    'usage',
    `${JSON.stringify(location)} is not an rbd store location: ${why}`,
    'Write it as rbd://USER@CLUSTER/POOL (a Ceph configuration file and keyring in /etc/ceph) or rbd://USER@MON1,MON2,MON3/POOL?keyring=FILE; see docs/store-rbd.md.',
    { location },
  );
}

export function poolFull(pool: string, quotaBytes: number, usedBytes: number, cause?: unknown): StoreError {
  return storeError('NO_SPACE', 'resource', `the Ceph pool ${pool} is full (quota ${quotaBytes} bytes)`, {
    hint: `Raise the pool's quota (ceph osd pool set-quota ${pool} max_bytes BYTES) or keep fewer copies, then run again: stored generations are intact and the delta is committed by the next run.`,
    details: { pool, quotaBytes, usedBytes },
    cause,
  });
}

export function timedOut(what: string, seconds: number, cause?: unknown): StoreError {
  return rbdError(
    'RBD_TIMEOUT',
    'unavailable',
    `the Ceph cluster did not answer within ${seconds} s (${what})`,
    'Check the cluster (ceph status): a monitor or OSD may be down, or the pool full. Stored generations are intact; run again once the cluster is healthy (`haven doctor --store LOCATION` checks it).',
    { what, seconds },
    cause,
  );
}
