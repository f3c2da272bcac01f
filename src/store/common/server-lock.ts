/**
 * One writer per server (`.haven/locks/<server>.lock`, lock.ts): a delta being received, a commit
 * being rolled forward, or a long reader that must not see its generations recycled (holdServer).
 */
import { HavenError } from '../../core/errors.ts';
import { storeError } from '../errors.ts';
import type { StoreContext } from './context.ts';
import { ensureDir } from './files.ts';
import { acquireLock, type HeldLock, type LockInfo } from './lock.ts';

/** STORE_LOCKED, naming who holds the server and the lock file. */
function lockedError(ctx: StoreContext, server: string) {
  return (h: LockInfo) =>
    storeError(
      'STORE_LOCKED',
      'conflict',
      `${server} is being written by pid ${h.pid} on ${h.host} since ${h.startedAt}${h.purpose ? ` (${h.purpose})` : ''}`,
      {
        hint: 'Another run replicates this server right now; wait for it to finish. If that process is gone on another host, remove the lock file named in the details.',
        details: {
          server,
          pid: h.pid,
          host: h.host,
          since: h.startedAt,
          purpose: h.purpose,
          lock: ctx.layout.serverLock(server),
        },
      },
    );
}

/** Takes the server's writer lock, waiting up to `waitMs` for a live holder; else STORE_LOCKED. */
export async function lockServer(
  ctx: StoreContext,
  server: string,
  purpose: string,
  waitMs = 0,
): Promise<HeldLock> {
  await ensureDir(ctx.layout.serverDir(server));
  return acquireLock(ctx.layout.serverLock(server), {
    purpose,
    log: ctx.log,
    waitMs,
    locked: lockedError(ctx, server),
  });
}

/** The lock, or the STORE_LOCKED error that says who holds it. */
export async function tryLockServer(
  ctx: StoreContext,
  server: string,
  purpose: string,
): Promise<{ lock: HeldLock } | { busy: HavenError }> {
  try {
    return { lock: await lockServer(ctx, server, purpose) };
  } catch (e) {
    if (e instanceof HavenError && e.code === 'STORE_LOCKED') return { busy: e };
    throw e;
  }
}
