/**
 * Retention after a command that did work (it opened a run log): the log directory and, where
 * this host has a catalog, finished runs and events, at most hourly for all Haven processes of
 * the host together (jobs/retention.ts). So a host that runs `haven protect` or `haven job run`
 * from cron, or a DR host whose only Haven is `haven receive`, keeps its records bounded without
 * the daemon. The checkpoint sweep asks libvirt about every server, so it is left to the daemon
 * and `haven prune`.
 *
 * Cheap when not due (one stat of the stamp file; the modules load only when it is), and it never
 * changes a command's outcome: a failure is logged and the exit code stays.
 */
import { existsSync } from 'node:fs';
import type { CliContext } from './context.ts';

export async function afterRun(ctx: CliContext): Promise<void> {
  if (!ctx.didWork) return;
  const log = ctx.log;
  try {
    const retention = await import('../jobs/retention.ts');
    const now = new Date();
    if (!(await retention.claimLogRetention(ctx.paths.logDir, now))) return;
    const config = await ctx.config();
    await retention.pruneLogs(ctx.paths.logDir, config.retention.logs, {
      now,
      keep: log.filePath ? [log.filePath] : [],
      log,
    });
    const { catalogPath, openCatalog } = await import('../catalog/catalog.ts');
    const path = catalogPath(ctx.paths.stateDir);
    if (!existsSync(path)) return;
    const catalog = openCatalog(path, { log });
    try {
      if (catalog.maintenance.claim('history', retention.RETENTION_EVERY_MS, now)) {
        const pruned = retention.pruneHistory(catalog, config.retention, { now });
        log.verbose('history retention', { ...pruned });
      }
    } finally {
      catalog.close();
    }
  } catch (e) {
    log.verbose('retention after the run failed; the next run or `haven prune` tries again', { err: e });
  }
}
