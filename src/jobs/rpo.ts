/**
 * Recovery point objective checks: a pair whose newest good copy is older than its job's `rpo`
 * (or that has been tried and never copied) is a problem, raised once as `rpo.breached` and
 * resolved once as `rpo.recovered` when a good copy brings it back within the objective. Run by
 * the daemon on a timer and by every job run when it ends.
 */
import { formatDuration } from '../core/units.ts';
import { dedupKeys, type EventLog } from './events.ts';
import type { StatusRow } from './status.ts';

export interface RpoCheck {
  raised: string[];
  resolved: string[];
}

export function checkRpo(rows: readonly StatusRow[], events: EventLog, now = new Date()): RpoCheck {
  const out: RpoCheck = { raised: [], resolved: [] };
  for (const r of rows) {
    if (r.rpoMs === null) continue;
    const key = dedupKeys.rpo(r.server, r.target);
    const breached = r.rpo === 'breached' || (r.rpo === 'never' && r.lastRunAt !== null);
    if (breached) {
      // Raised once: while the problem is open, the next check adds nothing.
      if (events.catalog.events.openProblem(key)) continue;
      const age = r.lastGoodAt ? formatDuration(now.getTime() - r.lastGoodAt.getTime()) : null;
      events.emit({
        type: 'rpo.breached',
        severity: 'error',
        server: r.server,
        target: r.target,
        ...(r.job ? { job: r.job } : {}),
        message: age
          ? `${r.server} → ${r.target}: the newest good copy is ${age} old, beyond the objective of ${formatDuration(r.rpoMs)}`
          : `${r.server} → ${r.target}: no good copy yet (objective ${formatDuration(r.rpoMs)}); last result ${r.lastResult ?? 'unknown'}`,
        data: {
          rpoMs: r.rpoMs,
          ageMs: r.ageMs,
          lastGoodAt: r.lastGoodAt?.toISOString() ?? null,
          code: r.lastErrorCode ?? undefined,
        },
        dedupKey: key,
        at: now,
      });
      out.raised.push(key);
    } else if (r.rpo === 'ok') {
      const resolved = events.resolve(key, {
        type: 'rpo.recovered',
        severity: 'info',
        server: r.server,
        target: r.target,
        ...(r.job ? { job: r.job } : {}),
        message: `${r.server} → ${r.target}: within the objective of ${formatDuration(r.rpoMs)} again`,
        at: now,
      });
      if (resolved) out.resolved.push(key);
    }
  }
  return out;
}
