/**
 * The start of a run, shared by a real run and a dry run: the first contact with the target (a
 * session and its newest generation of the server, retried like any broken connection) and what
 * the catalog remembers of a run of this server to this store that did not finish.
 */
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../core/log.ts';
import type { StreamSender } from '../protocol/index.ts';
import type { Generation } from '../store/types.ts';
import { checkpointOf } from './points.ts';
import {
  DEFAULT_RECONNECT_BACKOFF_MS,
  DEFAULT_RECONNECTS,
  type RetryPolicy,
  withReconnects,
} from './retry.ts';

export function retryPolicy(
  o: { retries?: number; retryBackoffMs?: number; signal?: AbortSignal },
  log: Logger,
): RetryPolicy {
  return {
    retries: o.retries ?? DEFAULT_RECONNECTS,
    backoffMs: o.retryBackoffMs ?? DEFAULT_RECONNECT_BACKOFF_MS,
    ...(o.signal ? { signal: o.signal } : {}),
    log,
  };
}

/**
 * The first contact: a session, the target's newest generation of the server and whether the
 * target asks for a checksum resync (damage only the source can repair). Retried like
 * the transfer: a receiver that dies while starting is the same broken connection as one that
 * dies mid-delta.
 */
export async function firstContact<S extends StreamSender | null>(
  connect: () => Promise<S>,
  server: string,
  policy: RetryPolicy,
): Promise<{ sender: S; newest: Generation | null; resync: boolean }> {
  let sender: S | undefined;
  return withReconnects(
    policy,
    'cannot reach the target; trying again',
    async () => {
      sender = await connect();
      const view = sender ? await sender.inspect(server) : null;
      return { sender, newest: view?.newest ?? null, resync: view?.resync ?? false };
    },
    async () => {
      await sender?.close().catch(() => {});
      sender = undefined;
    },
  );
}

/**
 * What the catalog's in-flight record of this server and store says: a crashed run that got as far
 * as the commit (`delivered`: its delivery was never recorded), or one whose backup job, if still
 * up, is this run's point in time (same base as when it began).
 */
type Inflight =
  | { kind: 'delivered'; checkpoint: string }
  | { kind: 'resume'; checkpoint: string; socketPath: string }
  | undefined;

export function inflightOf(
  catalog: Catalog | undefined,
  server: string,
  storeId: string,
  newest: Generation | null,
): Inflight {
  const inflight = catalog?.inflight.get(server, storeId);
  if (!inflight) return undefined;
  if (newest?.pointInTime === inflight.checkpoint)
    return { kind: 'delivered', checkpoint: inflight.checkpoint };
  if (inflight.socket && (inflight.incrementalFrom ?? undefined) === checkpointOf(newest?.pointInTime)) {
    return { kind: 'resume', checkpoint: inflight.checkpoint, socketPath: inflight.socket };
  }
  return undefined;
}

/** Records what a crashed run delivered; returns the backup job to continue, if any. */
export function settleInflight(
  catalog: Catalog | undefined,
  server: string,
  storeId: string,
  newest: Generation | null,
): { checkpoint: string; socketPath: string } | undefined {
  const state = inflightOf(catalog, server, storeId, newest);
  if (state?.kind === 'delivered' && catalog && newest) {
    catalog.transaction(() => {
      catalog.checkpoints.markDelivered(server, state.checkpoint, storeId, newest.id);
      catalog.inflight.clear(server, storeId);
    });
    return undefined;
  }
  return state?.kind === 'resume' ? state : undefined;
}
