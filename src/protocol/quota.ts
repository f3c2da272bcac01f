/**
 * Quotas (issue 13.2): what a sender may make the receiver store is bounded by the target's
 * configured limits, per store (all servers together) and per server, checked on what the sender
 * declares and on what it writes. At OPEN, before anything is staged: a server whose declared
 * disks alone exceed a limit, or a limit already used up, is refused. While the delta runs: a data
 * extent that would take the store past a limit is refused before it is written. Either way the
 * refusal is RECEIVE_QUOTA_EXCEEDED (kind refused: no retry helps), and every committed
 * generation stays as it was; a partial delta is only ever committed whole.
 */
import { HavenError } from '../core/errors.ts';
import { formatBytes } from '../core/units.ts';
import type { DiskSpec, Store } from '../store/types.ts';

export interface Quota {
  /** Bytes the whole store may take. */
  store?: number;
  /** Bytes each named server may take. */
  servers?: Record<string, number>;
}

/** What a delta may still write, in data bytes (Infinity without a quota); throws when nothing. */
export async function deltaBudget(
  store: Store,
  quota: Quota | undefined,
  server: string,
  disks: readonly DiskSpec[],
): Promise<number> {
  const limits: { of: string; limit: number; used: () => Promise<number> }[] = [];
  const own = quota?.servers && Object.hasOwn(quota.servers, server) ? quota.servers[server] : undefined;
  if (own !== undefined)
    limits.push({
      of: `server ${server}`,
      limit: own,
      used: async () => (await store.spaceUsed?.(server)) ?? 0,
    });
  if (quota?.store !== undefined)
    limits.push({ of: 'the store', limit: quota.store, used: async () => (await store.spaceUsed?.()) ?? 0 });
  const declared = disks.reduce((n, d) => n + d.size, 0);
  let budget = Number.POSITIVE_INFINITY;
  for (const l of limits) {
    if (declared > l.limit) {
      throw quotaError(
        server,
        `${server} declares ${formatBytes(declared)} of disks, more than the quota of ${l.of} (${formatBytes(l.limit)})`,
        { declared, quota: l.limit, of: l.of },
      );
    }
    const used = await l.used();
    if (used >= l.limit) {
      throw quotaError(
        server,
        `${l.of} already takes ${formatBytes(used)} of its ${formatBytes(l.limit)} quota`,
        { used, quota: l.limit, of: l.of },
      );
    }
    budget = Math.min(budget, l.limit - used);
  }
  return budget;
}

/** Throws before a data extent of `length` bytes is written when the delta's budget cannot take it. */
export function checkQuotaWrite(server: string, budget: number, written: number, length: number): void {
  if (written + length <= budget) return;
  throw quotaError(
    server,
    `${server}: this delta would write more than the ${formatBytes(budget)} its quota left when it opened`,
    { budget, written, length },
  );
}

function quotaError(server: string, message: string, details: Record<string, unknown>): HavenError {
  return new HavenError('RECEIVE_QUOTA_EXCEEDED', message, {
    kind: 'refused',
    hint: `Nothing was stored beyond the quota and the committed generations are as they were. Raise the target's \`quota\` or \`servers: {${server}: {quota: …}}\` in the configuration (\`haven receive --quota\`, \`--server-quota\`), or keep fewer generations there (\`haven protect --copies\`, the job's \`copies\`).`,
    details: { server, ...details },
  });
}
