/**
 * `haven activate`: start servers at the DR site from nothing but the store's own files and
 * libvirt (docs/design.md §4.4), as transient domains (§4.5), in boot order: the servers of one
 * priority side by side (at most `parallel` at once), all of them running before the next
 * priority's start.
 *
 * Every disk boots through a qcow2 overlay in `<store>/.haven/active/<server>/`, backed by the
 * chosen raw generation: the generation stays byte-identical while the copy runs (the store's
 * invariants hold; replication to this server is refused meanwhile, STORE_ACTIVE_AT_DR), and a
 * checkpoint created on the domain right after it starts gives failback its dirty map.
 * docs/recovery.md explains why every generation, not only older ones, goes through an overlay.
 *
 * Refusals change nothing: an unknown server, a generation that is incomplete or fails its
 * check, a server already active, a domain name already taken at this site, or a primary known
 * to run the server (unless `force`, which is recorded in the manifest).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { activationHostFiles, type DefinitionRules } from '../core/definition-rules.ts';
import { asHavenError, type HavenError, UsageError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { Semaphore } from '../core/semaphore.ts';
import type { ActiveAtDr, Generation, Store } from '../store/types.ts';
import {
  checkpointXml,
  createCheckpoint,
  createTransient,
  destroyDomain,
  domainState,
  Virsh,
  VirtError,
  waitForState,
} from '../virt/index.ts';
import { chooseSource, pointOverlays } from './activate-point.ts';
import { type DefinitionSummary, prepareBoot, readSafeDefinition, summary, throughOverlays } from './boot.ts';
import { bootWaves } from './boot-order.ts';
import type { Relocation } from './definition.ts';
import { recoveryError, unknownServer } from './errors.ts';
import { checkGeneration, holdServer } from './generation.ts';
import { setGuard } from './guard.ts';
import { type NetworkRequest, type NicPlan, serverNetworks } from './networks.ts';
import { makeDir, removeDir } from './overlay.ts';
import { type PrimaryStatus, primaryStatus, primaryUri } from './primary.ts';

export interface ActivateOptions {
  store: Store;
  /** Server names; with `all`, every server in the store. */
  servers?: string[];
  all?: boolean;
  /** Generation sequence number (1 = newest, the default). */
  generation?: number;
  /** A point of the server's journal instead (its id, or a time): docs/continuous.md. */
  at?: string;
  /** Check everything, report the plan, change nothing. */
  dryRun?: boolean;
  /** Activate although the primary runs the server (recorded in the manifest). */
  force?: boolean;
  /** Re-read every chunk of the generation and compare it with its digest first. */
  verify?: boolean;
  /** Run the (single) server under another domain name, with a new UUID. */
  name?: string;
  /** The primary, as a libvirt URI or ssh host: checked, and guarded when reachable. */
  primary?: string;
  /** libvirt at the DR site. */
  virsh: Virsh;
  /** How long each server may take to reach "running" (default 120 s). */
  startTimeoutMs?: number;
  /** How long to wait for a replication that holds the server (default 60 s). */
  lockWaitMs?: number;
  /** Servers of one boot priority started at once (default DEFAULT_ACTIVATION_PARALLEL). */
  parallel?: number;
  /** Stops before the next server (Ctrl-C): the report lists the servers already handled. */
  signal?: AbortSignal;
  /** This DR host's settings for definitions (config `definitions`); none: the rule as is. */
  rules?: DefinitionRules;
  /** The failover network mapping: config `networks` and the flags over it (none: names as they are). */
  networks?: NetworkRequest;
  log: Logger;
}

export type ActivationStatus = 'running' | 'planned' | 'refused' | 'failed';

export interface ActivationResult {
  server: string;
  status: ActivationStatus;
  /** The domain name at the DR site. */
  domain: string;
  generation?: Pick<Generation, 'id' | 'seq' | 'takenAt' | 'pointInTime'>;
  /** The copy started from a journal point (`--at`), not a generation. */
  point?: boolean;
  /**
   * How old the copy's data was when the command started (ms): the recovery point an unplanned
   * failover gets, what the operator must know before the server takes traffic.
   */
  ageMs?: number;
  /** Seconds from the command's start until the domain ran. */
  seconds?: number;
  checkpoint?: string;
  overlayDir?: string;
  /** Console files and sockets given Haven's names in the activation directory. */
  moved: Relocation[];
  /** What the definition rules removed, and what they kept on the operator's word. */
  definition?: DefinitionSummary;
  /** What each network interface joins at this site (docs/recovery.md, "Networks at the DR site"). */
  networks?: NicPlan[];
  primary?: PrimaryStatus & { guarded: boolean };
  force: boolean;
  error?: ReturnType<HavenError['toJSON']>;
}

export interface ActivationReport {
  store: string;
  startedAt: string;
  dryRun: boolean;
  servers: ActivationResult[];
  /** The first refusal or failure, for the exit code. */
  firstError?: HavenError;
}

/**
 * `<store>/.haven/active/<server>`: overlays, moved consoles, the XML started, checkpoints. Every
 * kind of store has its metadata directory as its location (an LVM or rbd store's images are
 * elsewhere, its activation state is not).
 */
export function activeDir(store: Store, server: string): string {
  return activationHostFiles(store.location, checkName('server', server)).files;
}

function newCheckpointName(): string {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `haven-dr-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** Servers of one priority that start at once unless `--parallel` says otherwise. */
export const DEFAULT_ACTIVATION_PARALLEL = 4;

/**
 * The servers to activate in boot order, as waves of one priority each (boot-order.ts). Unknown
 * names fail before anything happens.
 */
export async function selectForActivation(
  store: Store,
  o: { servers?: string[]; all?: boolean; name?: string; at?: string | undefined },
): Promise<string[][]> {
  const known = await store.listServers();
  // A point can be activated for a server the store keeps only as a journal.
  if (o.at !== undefined)
    for (const s of (await store.listJournals?.()) ?? []) if (!known.includes(s)) known.push(s);
  const named = o.servers ?? [];
  if (o.all && named.length) throw new UsageError('give server names or --all, not both');
  if (!o.all && named.length === 0) throw new UsageError('name the servers to activate, or give --all');
  for (const s of named) {
    checkName('server', s);
    if (!known.includes(s)) throw unknownServer(s, store.location, known);
  }
  const chosen = o.all ? known : [...new Set(named)];
  if (o.name !== undefined && chosen.length !== 1) {
    throw new UsageError('--name renames one server; activate the others separately');
  }
  const priorities = new Map<string, number>();
  for (const s of chosen) priorities.set(s, (await store.manifest(s))?.bootPriority ?? 100);
  return bootWaves(chosen.map((s) => ({ server: s, priority: priorities.get(s) ?? 100 })));
}

/** A domain of this name at the DR site would be taken over by `virsh create`: refuse. */
async function checkNameFree(virsh: Virsh, domain: string): Promise<void> {
  try {
    const { state } = await domainState(virsh, domain);
    throw recoveryError(
      'RECOVERY_NAME_TAKEN',
      'conflict',
      `a domain named ${domain} already exists at this site (${state})`,
      {
        hint:
          state === 'shut off'
            ? 'Starting the copy under this name would start that domain with the copy’s disks: run it under another name (--name NEW), or undefine the other domain.'
            : 'It is running: the server may be active already. Use another name (--name NEW) if you mean to run a second copy.',
        details: { domain, state },
      },
    );
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') return;
    throw e;
  }
}

export async function activateServers(o: ActivateOptions): Promise<ActivationReport> {
  const started = Date.now();
  const report: ActivationReport = {
    store: o.store.location,
    startedAt: new Date(started).toISOString(),
    dryRun: Boolean(o.dryRun),
    servers: [],
  };
  if (o.name !== undefined) checkName('domain', o.name);
  const uri = o.primary === undefined ? undefined : primaryUri(o.primary);
  const waves = await selectForActivation(o.store, o);
  const slots = new Semaphore(Math.max(1, o.parallel ?? DEFAULT_ACTIVATION_PARALLEL));
  for (const wave of waves) {
    if (o.signal?.aborted) break;
    // Reported in boot order whatever order they finish in; one stopped before its start is not.
    const results = await Promise.all(
      wave.map(async (server) => {
        const release = await slots.acquire();
        try {
          return o.signal?.aborted ? undefined : await activateReported(o, server, uri, started, report);
        } finally {
          release();
        }
      }),
    );
    for (const r of results) if (r) report.servers.push(r);
  }
  return report;
}

/** One server's activation; a failure is recorded in its result (and the report's first error). */
async function activateReported(
  o: ActivateOptions,
  server: string,
  uri: string | undefined,
  started: number,
  report: ActivationReport,
): Promise<ActivationResult> {
  const result: ActivationResult = {
    server,
    status: 'planned',
    domain: o.name ?? server,
    moved: [],
    force: false,
  };
  try {
    await activateOne(o, server, uri, started, result);
  } catch (err) {
    const e = asHavenError(err);
    result.status = result.status === 'planned' ? 'refused' : 'failed';
    result.error = e.toJSON();
    // A refusal for missing networks carries the whole plan: the report shows it too.
    if (!result.networks && Array.isArray(e.details?.networks))
      result.networks = e.details.networks as NicPlan[];
    report.firstError ??= e;
    o.log.error(`${server}: ${e.message}`, { code: e.code });
  }
  return result;
}

async function activateOne(
  o: ActivateOptions,
  server: string,
  uri: string | undefined,
  started: number,
  result: ActivationResult,
): Promise<void> {
  const log = o.log.child({ server });
  const pre = await checkActivation(o, server, uri, result, log);
  if (o.dryRun) return;

  // A point needs no hold: materialising it takes the server's lock, and the copy runs from
  // images of its own.
  const hold =
    o.at === undefined ? await holdServer(o.store, server, 'activation', o.lockWaitMs ?? 60_000) : undefined;
  const undo: Undo = { activeSet: false, created: false };
  try {
    // Again under the lock: a replication may have committed since the checks.
    const { manifest, generation, point } = await chooseSource(o.store, server, o);
    if (manifest?.activeAtDr)
      throw recoveryError('RECOVERY_ALREADY_ACTIVE', 'conflict', `${server} already runs at the DR site`);
    if (!point && generation.id !== pre.id)
      await checkGeneration(o.store, server, generation, { full: o.verify });
    result.generation = pick(generation);
    result.ageMs = Math.max(0, started - Date.parse(generation.takenAt));
    const active = await startCopy(o, server, generation, started, result, undo, log);
    await afterStart(o, server, generation, active, uri, result, log);
    log.info('running', { domain: result.domain, seconds: result.seconds });
  } catch (e) {
    if (result.status !== 'running') {
      // Undo what this attempt did: the store looks as before, no domain is left.
      if (undo.created) await destroyDomain(o.virsh, result.domain).catch(() => false);
      if (undo.activeSet) await o.store.setActiveAtDr(server, null).catch(() => {});
      if (undo.dir) await removeDir(undo.dir).catch(() => {});
      result.status = 'failed';
    }
    throw e;
  } finally {
    await hold?.release();
  }
}

/** What an activation attempt changed, for undoing it. */
interface Undo {
  dir?: string;
  activeSet: boolean;
  created: boolean;
}

/**
 * The checks that need no lock and change nothing (a dry run stops after them): the server is
 * not active already, the primary does not run it, the generation is complete (and verifies),
 * no domain of the name exists here, and the definition uses every store disk and passes the
 * definition rules. Returns the generation checked.
 */
async function checkActivation(
  o: ActivateOptions,
  server: string,
  uri: string | undefined,
  result: ActivationResult,
  log: Logger,
): Promise<Generation> {
  const pre = await chooseSource(o.store, server, o);
  if (pre.point) result.point = true;
  if (pre.manifest?.activeAtDr) {
    throw recoveryError(
      'RECOVERY_ALREADY_ACTIVE',
      'conflict',
      `${server} already runs at the DR site (since ${pre.manifest.activeAtDr.since}, as ${pre.manifest.activeAtDr.domain ?? server})`,
      {
        hint: 'Fail back with `haven failback`, or give the copy up with `haven deactivate`.',
        details: { server, activeAtDr: pre.manifest.activeAtDr },
      },
    );
  }
  if (uri !== undefined) await checkPrimary(o, server, uri, result, log);
  // A point's pieces are checked by `haven verify`; materialising it reads them all anyway.
  if (!pre.point) await checkGeneration(o.store, server, pre.generation, { full: o.verify });
  await checkNameFree(o.virsh, result.domain);
  // The definition as it will boot; a dry run reports what the rule changes, a real run at start.
  const { report, networks } = await readSafeDefinition(o.store, server, pre.generation, {
    rules: o.rules,
    hostFiles: activationHostFiles(o.store.location, server),
    networks: serverNetworks(o.networks ?? {}, server, o.virsh),
    log: o.dryRun ? log : silentLogger,
  });
  result.definition = summary(report);
  result.networks = networks;
  result.generation = pick(pre.generation);
  result.ageMs = Math.max(0, Date.now() - Date.parse(pre.generation.takenAt));
  return pre.generation;
}

async function checkPrimary(
  o: ActivateOptions,
  server: string,
  uri: string,
  result: ActivationResult,
  log: Logger,
): Promise<void> {
  const p = await primaryStatus(uri, server, { log });
  result.primary = { ...p, guarded: false };
  if (p.running && !o.force) {
    throw recoveryError(
      'RECOVERY_PRIMARY_RUNNING',
      'refused',
      `the primary (${uri}) runs ${server} (${p.state}): a second copy would diverge from it`,
      {
        hint: 'Stop the server on the primary first, or give --force if the primary is lost to you although libvirt still answers (recorded in the manifest).',
        details: { server, primary: uri, state: p.state },
      },
    );
  }
  result.force = p.running;
  if (!p.reachable)
    log.warn('the primary is not reachable; its guard is set by its next replication attempt', {
      uri,
      error: p.error,
    });
}

/**
 * Overlays, the domain XML (kept as `domain.xml`), `activeAtDr` in the manifest (from then on a
 * replication of the server is refused), then the transient domain, running.
 */
async function startCopy(
  o: ActivateOptions,
  server: string,
  generation: Generation,
  started: number,
  result: ActivationResult,
  undo: Undo,
  log: Logger,
): Promise<ActiveAtDr> {
  const { store, virsh } = o;
  const domain = result.domain;
  const hostFiles = activationHostFiles(store.location, server);
  const dir = activeDir(store, server);
  await removeDir(dir);
  undo.dir = dir;
  await makeDir(dir, 0o755);
  await makeDir(hostFiles.sockets, 0o1777);
  const { xml, report, networks } = await prepareBoot({
    purpose: 'activation',
    store,
    server,
    generation,
    rename: o.name,
    rules: o.rules,
    hostFiles,
    networks: serverNetworks(o.networks ?? {}, server, virsh),
    log,
    placeDisk:
      o.at === undefined
        ? await throughOverlays(store, server, generation, dir, log)
        : await pointOverlays(store, server, generation, dir, log, o.signal),
    // The definition's own file only where the operator keeps it and it exists here.
    nvram: async (kept) => (kept && existsSync(dirname(kept)) ? kept : join(dir, 'nvram.fd')),
  });
  result.moved = report.moved;
  result.definition = summary(report);
  result.networks = networks;
  const text = xml.toString();
  await writeFile(join(dir, 'domain.xml'), text);
  result.overlayDir = dir;

  const active: ActiveAtDr = {
    since: new Date().toISOString(),
    generationId: generation.id,
    force: result.force,
    by: `${userInfo().username}@${hostname()}`,
    domain,
    uri: virsh.uri,
  };
  // Recorded before the start: from here on a replication of this server is refused.
  await store.setActiveAtDr(server, active);
  undo.activeSet = true;
  log.info('starting the copy', { domain, generation: generation.id, seq: generation.seq });
  await createTransient(virsh, text);
  undo.created = true;
  await waitForState(virsh, domain, 'running', { timeoutMs: o.startTimeoutMs ?? 120_000 });
  result.seconds = (Date.now() - started) / 1000;
  result.status = 'running';
  return active;
}

/** The checkpoint failback starts from, the test record, and the primary's guard. */
async function afterStart(
  o: ActivateOptions,
  server: string,
  generation: Generation,
  active: ActiveAtDr,
  uri: string | undefined,
  result: ActivationResult,
  log: Logger,
): Promise<void> {
  const { store, virsh } = o;
  const domain = result.domain;
  const checkpoint = newCheckpointName();
  try {
    await createCheckpoint(virsh, domain, {
      name: checkpoint,
      description: `Haven activation of ${server}`,
    });
    await writeFile(
      join(activeDir(store, server), `checkpoint-${checkpoint}.xml`),
      await checkpointXml(virsh, domain, checkpoint),
    );
    active.checkpoint = checkpoint;
    result.checkpoint = checkpoint;
    await store.setActiveAtDr(server, active);
  } catch (e) {
    log.warn('no activation checkpoint: failback will compare every chunk instead', {
      err: asHavenError(e),
    });
  }
  // A point is no generation: there is no manifest entry to record the test in.
  if (o.at === undefined) await recordActivation(store, server, generation, active, result, log);
  if (result.primary?.reachable && result.primary.defined && uri !== undefined) {
    result.primary.guarded = await guardPrimary(uri, server, active, store, log);
  }
}

async function recordActivation(
  store: Store,
  server: string,
  generation: Generation,
  active: ActiveAtDr,
  result: ActivationResult,
  log: Logger,
): Promise<void> {
  const domain = result.domain;
  await store
    .recordTest(server, generation.id, {
      at: active.since,
      kind: 'activation',
      result: 'pass',
      seconds: result.seconds ?? 0,
      detail: `running as ${domain}`,
    })
    .catch((e: unknown) =>
      log.warn('could not record the activation in the manifest', { err: asHavenError(e) }),
    );
}

async function guardPrimary(
  uri: string,
  server: string,
  active: ActiveAtDr,
  store: Store,
  log: Logger,
): Promise<boolean> {
  try {
    return await setGuard(new Virsh({ uri, log, timeoutMs: 30_000 }), server, {
      since: active.since,
      storeId: store.descriptor.id,
      generationId: active.generationId,
      drDomain: active.domain,
      setBy: `activate (${active.by})`,
    });
  } catch (e) {
    log.warn('could not set the guard on the primary', { uri, err: asHavenError(e) });
    return false;
  }
}

function pick(g: Generation): Pick<Generation, 'id' | 'seq' | 'takenAt' | 'pointInTime'> {
  return { id: g.id, seq: g.seq, takenAt: g.takenAt, pointInTime: g.pointInTime };
}
