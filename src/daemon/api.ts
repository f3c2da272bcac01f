/**
 * The daemon's HTTP API (fastify). Everything but `GET /healthz` and the dashboard's static files
 * (`GET /`, `GET /ui/<file>`: they hold no data) needs the bearer token (daemon/token.ts);
 * without it: 401 API_UNAUTHORIZED. Errors are `{ error: { code, kind, message, hint } }` with
 * the HTTP status of their kind. docs/daemon.md lists the endpoints.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { type Catalog, RUN_STATUSES, type RunStatus, SEVERITIES, type Severity } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { asHavenError, type ErrorKind, HavenError, UsageError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { PeerWarnings, peerAddress, type Refusal } from '../core/peer-limits.ts';
import { inventory, Virsh } from '../engine/index.ts';
import { JobError, jobNotFound, statusRows } from '../jobs/index.ts';
import { dashboardRoutes } from './dashboard-routes.ts';
import type { EventHub } from './hub.ts';
import type { Metrics } from './metrics.ts';
import type { RunManager } from './run-manager.ts';
import type { Scheduler } from './scheduler.ts';
import { targetGenerations } from './target-generations.ts';
import { authorized } from './token.ts';
import { loadUi, UI_HEADERS, type UiFile } from './ui-assets.ts';

const STATUS: Record<ErrorKind, number> = {
  usage: 400,
  config: 400,
  'not-found': 404,
  unavailable: 503,
  refused: 403,
  conflict: 409,
  integrity: 500,
  resource: 507,
  protocol: 502,
  io: 500,
  interrupted: 503,
  internal: 500,
};

/** Routes with `config: { public: true }` are served without the token. */
declare module 'fastify' {
  interface FastifyContextConfig {
    public?: boolean;
  }
}

export interface ApiOptions {
  token: string;
  config: () => HavenConfig;
  catalog: Catalog;
  manager: RunManager;
  scheduler: Scheduler;
  hub: EventHub;
  metrics: Metrics;
  selections: () => Map<string, string[]>;
  /** Where the token is (the dashboard names it to whoever must find it). */
  tokenFile: string;
  log: Logger;
}

export function intParam(name: string, v: unknown, fallback?: number): number | undefined {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new UsageError(`query parameter ${name} must be a whole number, got ${JSON.stringify(v)}`);
  return n;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined || v === '') return undefined;
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw new UsageError(`query parameter ${name} must be one of ${allowed.join(', ')}`);
  }
  return v as T;
}

function iso(d: Date | null | undefined): string | null {
  return d ? d.toISOString() : null;
}

/** A refused progress stream: 429 when the client holds its share, 503 when all are taken. */
function streamRefused(reply: FastifyReply, refusal: Refusal): void {
  const perClient = refusal.over === 'peer';
  reply
    .code(perClient ? 429 : 503)
    .header('retry-after', '30')
    .send({
      error: new HavenError('API_TOO_MANY_STREAMS', `no more progress streams: ${refusal.message}`, {
        kind: 'resource',
        hint: perClient
          ? 'Close other dashboards or streams from this address, or raise daemon.progress_streams_per_client.'
          : 'Wait for other streams to close, or raise daemon.progress_streams.',
        details: { limit: perClient ? 'client' : 'total' },
      }).toJSON(),
    });
}

export async function buildApi(o: ApiOptions): Promise<FastifyInstance> {
  const tlsProxy = o.config().daemon.tlsProxy;
  // Behind the declared proxy, the client is the address it forwards (X-Forwarded-For); from
  // anywhere else that header is ignored, so nobody can pose as many clients.
  const app = Fastify({ logger: false, ...(tlsProxy.length > 0 ? { trustProxy: tlsProxy } : {}) });
  guardRoutes(app, o);
  uiRoutes(app, await loadUi());
  jobRoutes(app, o);
  runRoutes(app, o);
  progressRoute(app, o);
  dashboardRoutes(app, o);
  return app;
}

/** The token check on every non-public route, and errors in the API's JSON shape. */
function guardRoutes(app: FastifyInstance, o: ApiOptions): void {
  app.addHook('onRequest', async (req, reply) => {
    // Decided by the route fastify matched, not by the URL text: no spelling of a path
    // (`/ui/../api/status`, `//api/status`, a query string) can reach a data route unchecked.
    if (req.routeOptions.config?.public === true) return;
    if (!authorized(req.headers.authorization, o.token)) {
      reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="haven"')
        .send({
          error: new HavenError('API_UNAUTHORIZED', 'this API needs the bearer token', {
            kind: 'refused',
            hint: 'Send "Authorization: Bearer <token>"; the token is in the api-token file of the daemon’s state directory.',
          }).toJSON(),
        });
    }
  });

  app.setErrorHandler((err, _req, reply: FastifyReply) => {
    const fastifyStatus = (err as { statusCode?: number }).statusCode;
    if (!(err instanceof HavenError) && fastifyStatus && fastifyStatus < 500) {
      reply.code(fastifyStatus).send({
        error: new HavenError('API_BAD_REQUEST', (err as Error).message, { kind: 'usage' }).toJSON(),
      });
      return;
    }
    const he = asHavenError(err);
    if (he.kind === 'internal') o.log.error('API error', { err: he });
    reply.code(STATUS[he.kind] ?? 500).send({ error: he.toJSON() });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({
      error: new HavenError('API_NOT_FOUND', `no endpoint ${req.method} ${req.url}`, {
        kind: 'not-found',
      }).toJSON(),
    });
  });
}

/** The health check and the dashboard's files: public, they hold no data. */
function uiRoutes(app: FastifyInstance, ui: Map<string, UiFile>): void {
  app.get('/healthz', { config: { public: true } }, async () => ({ ok: true }));

  const sendUi = (reply: FastifyReply, name: string): FastifyReply => {
    const file = ui.get(name);
    if (!file) {
      return reply.code(404).send({
        error: new HavenError('API_NOT_FOUND', `the dashboard has no file ${name}`, {
          kind: 'not-found',
        }).toJSON(),
      });
    }
    return reply.headers(UI_HEADERS).type(file.type).send(file.body);
  };
  app.get('/', { config: { public: true } }, async (_req, reply) => sendUi(reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/ui/:file', { config: { public: true } }, async (req, reply) =>
    sendUi(reply, req.params.file),
  );
}

/** Metrics, servers and jobs (with "run now"). */
function jobRoutes(app: FastifyInstance, o: ApiOptions): void {
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', o.metrics.contentType);
    return o.metrics.scrape();
  });

  // One virsh process kept for the API's listings: a listing's dozen-odd libvirt calls then cost
  // no process start each (20–70 ms apiece on a loaded host; a call made while it is busy runs in a
  // process of its own, virsh-session.ts).
  const virsh = new Virsh({ log: o.log, session: true });
  app.addHook('onClose', async () => virsh.close());
  app.get('/api/servers', async () => {
    const config = o.config();
    const servers = await inventory(virsh, o.log);
    const rows = statusRows({ config, catalog: o.catalog, selections: o.selections() });
    const selections = o.selections();
    const jobsOf = (name: string) =>
      Object.values(config.jobs)
        .filter((j) => selections.get(j.name)?.includes(name))
        .map((j) => j.name);
    return servers.map((s) => ({
      ...s,
      jobs: jobsOf(s.name),
      protection: rows.filter((r) => r.server === s.name),
    }));
  });

  const jobView = (config: HavenConfig, name: string) => {
    const j = config.jobs[name]!;
    const last = o.catalog.runs.list({ kind: 'job', job: name, limit: 1 })[0];
    const running = o.manager.active().find((r) => r.job === name);
    return {
      ...j,
      nextRun: iso(o.scheduler.next(name)),
      running: running
        ? { runId: running.runId, startedAt: iso(running.startedAt), trigger: running.trigger }
        : null,
      lastRun: last ?? null,
      servers_now: o.selections().get(name) ?? null,
    };
  };

  app.get('/api/jobs', async () => {
    const config = o.config();
    return Object.keys(config.jobs).map((n) => jobView(config, n));
  });

  app.get<{ Params: { job: string } }>('/api/jobs/:job', async (req) => {
    const config = o.config();
    if (!config.jobs[req.params.job]) throw jobNotFound(req.params.job, Object.keys(config.jobs));
    return {
      ...jobView(config, req.params.job),
      runs: o.catalog.runs.list({ kind: 'job', job: req.params.job, limit: 20 }),
    };
  });

  app.post<{ Params: { job: string } }>('/api/jobs/:job/runs', async (req, reply) => {
    const run = await o.manager.start(req.params.job, 'api');
    reply.code(202);
    return {
      runId: run.runId,
      job: run.job,
      trigger: run.trigger,
      startedAt: iso(run.startedAt),
      logFile: run.logFile,
    };
  });
}

/** Runs (with cancel), generations, events, problems and the status rows. */
function runRoutes(app: FastifyInstance, o: ApiOptions): void {
  app.get<{ Querystring: Record<string, string | undefined> }>('/api/runs', async (req) => {
    const q = req.query;
    return o.catalog.runs
      .list({
        job: q.job || undefined,
        status: oneOf('status', q.status, RUN_STATUSES) as RunStatus | undefined,
        beforeId: intParam('beforeId', q.beforeId),
        limit: intParam('limit', q.limit, 50),
      })
      .map((r) => ({ ...r, servers: o.catalog.runs.servers(r.id) }));
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', async (req) => {
    const id = intParam('id', req.params.id)!;
    const run = o.catalog.runs.get(id);
    if (!run) throw new JobError('JOB_RUN_NOT_FOUND', `there is no run ${id}`, { kind: 'not-found' });
    const active = o.manager.get(id);
    return { ...run, progress: active ? [...active.progress.values()].map((u) => u.progress) : [] };
  });

  app.post<{ Params: { id: string } }>('/api/runs/:id/cancel', async (req, reply) => {
    const id = intParam('id', req.params.id)!;
    if (!o.manager.cancel(id)) {
      const run = o.catalog.runs.get(id);
      if (!run) throw new JobError('JOB_RUN_NOT_FOUND', `there is no run ${id}`, { kind: 'not-found' });
      throw new JobError('JOB_RUN_NOT_FOUND', `run ${id} is not running in this daemon (${run.status})`, {
        kind: 'conflict',
        hint: 'Only runs the daemon started can be cancelled here; stop a `haven job run` with Ctrl-C.',
        details: { id, status: run.status },
      });
    }
    reply.code(202);
    return { runId: id, cancelling: true };
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/generations', async (req) => {
    const config = o.config();
    const q = req.query;
    const rows = statusRows({ config, catalog: o.catalog, selections: o.selections() }).filter(
      (r) => (!q.server || r.server === q.server) && (!q.target || r.target === q.target),
    );
    const live = q.live !== 'false' && q.live !== '0';
    const fromTargets = live ? await targetGenerations(config, rows, o.log) : new Map<string, unknown>();
    return rows.map((r) => ({
      server: r.server,
      target: r.target,
      job: r.job,
      catalog: {
        lastGoodAt: iso(r.lastGoodAt),
        lastGoodGeneration: r.lastGoodGeneration,
        lastResult: r.lastResult,
        lastRunAt: iso(r.lastRunAt),
        lastRunId: r.lastRunId,
      },
      ...(live ? { target_says: fromTargets.get(`${r.server}\u0000${r.target}`) ?? null } : {}),
    }));
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/events', async (req) => {
    const q = req.query;
    return o.catalog.events.list({
      afterId: intParam('afterId', q.afterId),
      beforeId: intParam('beforeId', q.beforeId),
      minSeverity: oneOf('minSeverity', q.minSeverity, SEVERITIES) as Severity | undefined,
      job: q.job || undefined,
      server: q.server || undefined,
      type: q.type || undefined,
      limit: intParam('limit', q.limit, 100),
    });
  });

  app.get('/api/problems', async () => o.catalog.events.openProblems());

  app.get('/api/status', async () =>
    statusRows({ config: o.config(), catalog: o.catalog, selections: o.selections() }),
  );
}

/** Live progress as server-sent events, within the stream limits (hub.ts). */
function progressRoute(app: FastifyInstance, o: ApiOptions): void {
  const refusals = new PeerWarnings(o.log);
  app.get('/api/progress', (req, reply) => {
    const client = peerAddress(req.ip);
    const refusal = o.hub.reserve(client);
    if (refusal) {
      refusals.warn(client, 'progress-stream', `refused a progress stream to ${client}: ${refusal.message}`);
      streamRefused(reply, refusal);
      return;
    }
    reply.hijack();
    o.hub.add(
      reply.raw,
      client,
      o.manager.active().map((r) => ({
        kind: 'snapshot',
        data: {
          runId: r.runId,
          job: r.job,
          trigger: r.trigger,
          startedAt: iso(r.startedAt),
          progress: [...r.progress.values()],
        },
      })),
    );
    req.raw.on('close', () => reply.raw.end());
  });
}
