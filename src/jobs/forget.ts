/**
 * `haven forget`: drop what the primary keeps for (server, target) pairs it no longer copies.
 *
 * What goes, per pair: the status row (so `haven status`, the dashboard and /metrics stop showing
 * it), the open problems of the pair (`copy:` and `rpo:` keys), the mapping from the name to the
 * store(s) it reached, and for each such store its checkpoint deliveries and in-flight delta.
 * Then every Haven checkpoint of the server that no remaining target needs is deleted from
 * libvirt with its bitmaps (engine/checkpoint-cleanup.ts; shut-off servers included) and from the
 * catalog. Run history and events stay (retention ages them out). Nothing at the target's store
 * is touched: its generations belong to the DR site.
 *
 * A store that another name of the same server still reaches (a configured target and its URL
 * used ad hoc) keeps its records and checkpoint: forgetting one name must not cost the other its
 * incremental base. The next copy of a forgotten pair is a checksum resync when the target still
 * holds a copy, a full copy when it never got one.
 *
 * The catalog part runs in one transaction that first checks, with the runs table as the lock
 * (jobs/runner.ts), that no run copies the pair; a dry run does the same transaction and rolls it
 * back, so the plan it prints is exactly what a real run would do.
 */
import { type Catalog, pidAlive } from '../catalog/catalog.ts';
import type { HavenConfig } from '../core/config.ts';
import { HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import {
  type CheckpointCleanup,
  type DomainState,
  deleteCheckpoints,
  endLeftBackup,
  havenCheckpoints,
  serverPresence,
  type Virsh,
} from '../engine/index.ts';
import { JobError } from './errors.ts';
import { dedupKeys } from './events.ts';
import { jobsCopying } from './pairs.ts';

export interface ForgetRequest {
  server?: string;
  target?: string;
  /** Every target of `server` (also one libvirt no longer knows). */
  allTargets?: boolean;
  /** Every server copied to `target`. */
  allServers?: boolean;
  dryRun?: boolean;
}

/** What the next copy of a forgotten pair will be. */
export type NextCopy = 'incremental' | 'resync' | 'full';

export interface ForgottenPair {
  server: string;
  target: string;
  /** Ids of the stores the name reached. */
  stores: string[];
  lastGoodAt: string | null;
  nextCopy: NextCopy;
  /** Jobs of the configuration that still copy the pair: their next run brings it back. */
  jobs: string[];
}

export interface ForgetCounts {
  status: number;
  inflight: number;
  deliveries: number;
  mappings: number;
  problems: number;
}

export interface ServerForget {
  server: string;
  /** libvirt's state of the server, or absent when it no longer exists there. */
  domain: DomainState | 'absent';
  /** Stores whose deliveries and in-flight delta go. */
  stores: string[];
  /** Stores another name of the server still reaches: kept, with their checkpoint. */
  keptStores: Array<{ store: string; alsoAs: string[] }>;
  /** Checkpoints no remaining target needs: deleted (or, in a dry run, to be deleted). */
  checkpoints: string[];
  /** Checkpoints of the server the catalog still keeps for other targets. */
  keptCheckpoints: string[];
  /** What deleting them did; null in a dry run. */
  result: CheckpointCleanup | null;
  removed: ForgetCounts;
}

export interface ForgetResult {
  dryRun: boolean;
  pairs: ForgottenPair[];
  servers: ServerForget[];
  /** Always true: forget never deletes anything at a target's store. */
  storesUntouched: true;
}

export interface ForgetOptions {
  config: HavenConfig;
  catalog: Catalog;
  virsh: Virsh;
  log: Logger;
  now?: Date;
}

interface Scope {
  server: string;
  names: string[];
  stores: string[];
  keptStores: ServerForget['keptStores'];
  all: boolean;
}

/** Thrown inside a dry run's transaction to roll it back; a HavenError passes the catalog as is. */
class Rollback extends HavenError {
  constructor() {
    super('DRY_RUN_ROLLBACK', 'dry run: rolled back', { kind: 'internal' });
  }
}

function noPair(req: ForgetRequest): JobError {
  const what = req.allServers
    ? `target ${req.target}`
    : req.allTargets
      ? `server ${req.server}`
      : `${req.server} → ${req.target}`;
  return new JobError('FORGET_NOT_FOUND', `the catalog holds nothing for ${what}`, {
    kind: 'not-found',
    hint: '`haven status` lists the server/target pairs Haven knows; the target is named as it is there.',
    details: { server: req.server, target: req.target },
  });
}

/** The pairs and stores a request covers, from the catalog. */
function scopesOf(catalog: Catalog, req: ForgetRequest): Scope[] {
  const mappings = catalog.targetStores.list();
  const names = new Map<string, Set<string>>();
  // A pair being copied for the first time has neither status nor mapping yet, only its result.
  for (const x of [...catalog.status.list(), ...mappings, ...copying(catalog)]) {
    if (req.server !== undefined && x.server !== req.server) continue;
    if (req.target !== undefined && !req.allTargets && x.target !== req.target) continue;
    names.set(x.server, (names.get(x.server) ?? new Set()).add(x.target));
  }
  const all = req.allTargets === true;
  const scopes: Scope[] = [];
  const servers = all && req.server !== undefined ? [req.server] : [...names.keys()].sort();
  for (const server of servers) {
    const mine = mappings.filter((m) => m.server === server);
    const forgotten = names.get(server) ?? new Set<string>();
    const stores = new Set(mine.filter((m) => forgotten.has(m.target)).map((m) => m.storeId));
    if (all) {
      for (const s of catalog.checkpoints.stores(server)) stores.add(s.target);
      for (const f of catalog.inflight.list()) if (f.server === server) stores.add(f.target);
    }
    const keptStores: Scope['keptStores'] = [];
    for (const store of [...stores].sort()) {
      const alsoAs = mine.filter((m) => m.storeId === store && !forgotten.has(m.target)).map((m) => m.target);
      if (alsoAs.length === 0) continue;
      keptStores.push({ store, alsoAs });
      stores.delete(store);
    }
    const empty = forgotten.size === 0 && stores.size === 0 && catalog.checkpoints.list(server).length === 0;
    if (!empty)
      scopes.push({ server, names: [...forgotten].sort(), stores: [...stores].sort(), keptStores, all });
  }
  if (scopes.length === 0) throw noPair(req);
  return scopes;
}

function pairsOf(o: ForgetOptions, scope: Scope): ForgottenPair[] {
  const mappings = o.catalog.targetStores.list(scope.server);
  const delivered = new Set(o.catalog.checkpoints.stores(scope.server).map((s) => s.target));
  const kept = new Set(scope.keptStores.map((k) => k.store));
  return scope.names.map((target) => {
    const status = o.catalog.status.get(scope.server, target);
    const stores = mappings.filter((m) => m.target === target).map((m) => m.storeId);
    const good = status?.lastGoodGeneration != null || stores.some((s) => delivered.has(s));
    const keepsBase = stores.length > 0 && stores.every((s) => kept.has(s)) && good;
    return {
      server: scope.server,
      target,
      stores,
      lastGoodAt: status?.lastGoodAt?.toISOString() ?? null,
      nextCopy: keepsBase ? 'incremental' : good ? 'resync' : 'full',
      jobs: jobsCopying(o.config, scope.server, target),
    };
  });
}

/** Results being copied now by a live process (a crashed run's leftovers do not count). */
function copying(catalog: Catalog, server?: string) {
  return catalog.runs.inProgress(server).filter((r) => r.pid === null || pidAlive(r.pid));
}

/** Refuses while a run copies one of the scope's pairs or owns one of its in-flight deltas. */
function assertIdle(catalog: Catalog, scope: Scope): void {
  const busy = copying(catalog, scope.server).find((r) => scope.all || scope.names.includes(r.target));
  const owner =
    busy?.runId ??
    scope.stores
      .map((s) => catalog.inflight.get(scope.server, s)?.runId)
      .find((id) => {
        const run = id == null ? undefined : catalog.runs.get(id);
        return run?.status === 'running' && (run.pid === null || pidAlive(run.pid));
      });
  if (owner == null) return;
  throw new JobError(
    'FORGET_RUN_IN_PROGRESS',
    `run #${owner} is copying ${scope.server}${busy ? ` to ${busy.target}` : ''}: its records cannot be forgotten now`,
    {
      kind: 'conflict',
      hint: `Wait for run #${owner} to end (\`haven runs ${owner}\`), or stop it, then run haven forget again.`,
      details: { server: scope.server, target: busy?.target, runId: owner },
    },
  );
}

/** The catalog part, inside the caller's transaction. Returns what it removed and the plan. */
function removeRecords(catalog: Catalog, scope: Scope, now: Date) {
  const removed: ForgetCounts = { status: 0, inflight: 0, deliveries: 0, mappings: 0, problems: 0 };
  const sockets: string[] = [];
  const { server } = scope;
  for (const store of scope.stores) {
    const f = catalog.inflight.get(server, store);
    if (f?.socket) sockets.push(f.socket);
    if (catalog.inflight.clear(server, store)) removed.inflight++;
    removed.deliveries += catalog.checkpoints.forgetDeliveries(server, store);
    removed.mappings += catalog.targetStores.forgetStore(server, store);
  }
  for (const target of scope.names) {
    removed.status += catalog.status.forget(server, target);
    removed.mappings += catalog.targetStores.forget(server, target);
    for (const key of [dedupKeys.copy(server, target), dedupKeys.rpo(server, target)]) {
      if (catalog.events.resolve(key)) removed.problems++;
    }
  }
  // A never-delivered checkpoint is an orphan only when no other run of the server is going:
  // a run to another target may have just made one.
  const othersRunning = copying(catalog, server).length > 0;
  const unneeded = catalog.checkpoints.unneeded(server, { olderThan: othersRunning ? undefined : now });
  const gone = new Set(unneeded.map((c) => c.name));
  const kept = catalog.checkpoints.list(server).filter((c) => !gone.has(c.name));
  return { removed, sockets, checkpoints: [...gone], keptCheckpoints: kept.map((c) => c.name) };
}

async function forgetServer(
  o: ForgetOptions,
  scope: Scope,
  domain: DomainState | 'absent',
  dryRun: boolean,
): Promise<ServerForget> {
  const { catalog, virsh, log } = o;
  const now = o.now ?? new Date();
  let plan!: ReturnType<typeof removeRecords>;
  try {
    catalog.transaction(() => {
      assertIdle(catalog, scope);
      plan = removeRecords(catalog, scope, now);
      if (dryRun) throw new Rollback();
    });
  } catch (e) {
    if (!(e instanceof Rollback)) throw e;
  }
  // Forgetting every target of a server forgets its Haven checkpoints the catalog never knew too.
  const checkpoints = new Set(plan.checkpoints);
  if (scope.all && domain !== 'absent') {
    for (const name of await havenCheckpoints(virsh, scope.server)) checkpoints.add(name);
  }
  const out: ServerForget = {
    server: scope.server,
    domain,
    stores: scope.stores,
    keptStores: scope.keptStores,
    checkpoints: [...checkpoints],
    keptCheckpoints: plan.keptCheckpoints,
    result: null,
    removed: plan.removed,
  };
  if (dryRun) return out;
  if (domain !== 'absent' && domain !== 'shut off' && domain !== 'crashed') {
    for (const socket of plan.sockets) {
      await endLeftBackup(virsh, scope.server, socket, log).catch((err) =>
        log.warn('could not end the backup job of the forgotten delta', { server: scope.server, err }),
      );
    }
  }
  out.result = await deleteCheckpoints(
    virsh,
    scope.server,
    out.checkpoints.map((name) => ({ name })),
    catalog,
    log,
    { absent: domain === 'absent' },
  );
  return out;
}

function recordEvents(catalog: Catalog, pairs: ForgottenPair[], servers: ServerForget[]): void {
  for (const p of pairs) {
    const s = servers.find((x) => x.server === p.server);
    const deleted = s?.result ? s.result.deleted.length + s.result.missing.length : 0;
    catalog.events.append({
      type: 'pair.forgotten',
      severity: 'info',
      server: p.server,
      target: p.target,
      message: `${p.server} → ${p.target} forgotten: ${deleted} checkpoint(s) of the server deleted; the next copy there is ${p.nextCopy === 'resync' ? 'a checksum resync' : p.nextCopy === 'full' ? 'a full copy' : 'incremental'}`,
      data: { stores: p.stores, nextCopy: p.nextCopy, jobs: p.jobs },
    });
  }
}

/** Plans (dry run) or forgets the pairs `req` names. See the file comment. */
export async function forget(req: ForgetRequest, o: ForgetOptions): Promise<ForgetResult> {
  const dryRun = req.dryRun === true;
  const scopes = scopesOf(o.catalog, req);
  const pairs = scopes.flatMap((s) => pairsOf(o, s));
  // Everything that can refuse is asked before anything changes: libvirt (unreachable is an
  // error, an unknown server is not) and whether a run holds one of the pairs.
  const domains: Array<DomainState | 'absent'> = [];
  for (const scope of scopes) domains.push(await serverPresence(o.virsh, scope.server));
  for (const scope of scopes) assertIdle(o.catalog, scope);
  const servers: ServerForget[] = [];
  for (const [i, scope] of scopes.entries()) servers.push(await forgetServer(o, scope, domains[i]!, dryRun));
  if (!dryRun) recordEvents(o.catalog, pairs, servers);
  return { dryRun, pairs, servers, storesUntouched: true };
}
