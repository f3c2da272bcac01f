/**
 * The API routes the dashboard's charts, tiles and restore points read (docs/daemon.md,
 * "Endpoints"), and the one public fact the page needs before it has a token: where the token is.
 */
import type { FastifyInstance } from 'fastify';
import { UsageError } from '../core/errors.ts';
import { statusRows } from '../jobs/index.ts';
import { type ApiOptions, intParam } from './api.ts';
import { historyView, summary } from './history.ts';
import { RestorePoints } from './restore-points.ts';

const DAY = 86_400_000;
/** The longest window a chart asks for: a bit over a year of history (retention keeps 90 days). */
const MAX_DAYS = 400;

export function dashboardRoutes(app: FastifyInstance, o: ApiOptions): void {
  const restorePoints = new RestorePoints({ config: o.config, catalog: o.catalog, log: o.log });
  const rows = () => statusRows({ config: o.config(), catalog: o.catalog, selections: o.selections() });

  // Public: a page without a token must say which file holds it, wherever the state directory is
  // (HAVEN_STATE_DIR). The path is no secret; the file is readable by root only.
  app.get('/ui/setup.json', { config: { public: true } }, async () => ({ tokenFile: o.tokenFile }));

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/history', async (req) => {
    const days = intParam('days', req.query.days, 14)!;
    if (days < 1 || days > MAX_DAYS)
      throw new UsageError(`query parameter days must be from 1 to ${MAX_DAYS}`);
    const now = new Date();
    return historyView({ catalog: o.catalog, rows: rows(), from: new Date(now.getTime() - days * DAY), now });
  });

  app.get('/api/summary', async () =>
    summary({ catalog: o.catalog, rows: rows(), running: o.manager.active().length, now: new Date() }),
  );

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/restore-points', async (req) => {
    const q = req.query;
    const pairs = rows().filter(
      (r) => (!q.server || r.server === q.server) && (!q.target || r.target === q.target),
    );
    return restorePoints.list(pairs, q.fresh === 'true' || q.fresh === '1');
  });
}
