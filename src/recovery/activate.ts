/**
 * `haven activate`: start servers at the DR site from nothing but the store's own files and
 * libvirt (DESIGN §4.4), as transient domains (§4.5), in boot order, each running before the
 * next starts.
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
import { asHavenError, type HavenError, UsageError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
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
import { orderForBoot } from './boot-order.ts';
import {
  mapDisks,
  markStartedByHaven,
  nvramPath,
  type Relocation,
  relocateChardevs,
  setNvramPath,
  setOverlaySource,
} from './definition.ts';
import { recoveryError, unknownServer } from './errors.ts';
import { checkGeneration, chooseGeneration, holdServer, imagePaths, readDefinition } from './generation.ts';
import { setGuard } from './guard.ts';
import { createOverlay, makeDir, overlayPath, removeDir } from './overlay.ts';
import { type PrimaryStatus, primaryStatus, primaryUri } from './primary.ts';

export interface ActivateOptions {
  store: Store;
  /** Server names; with `all`, every server in the store. */
  servers?: string[];
  all?: boolean;
  /** Generation sequence number (1 = newest, the default). */
  generation?: number;
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
  /** Stops before the next server (Ctrl-C): the report lists the servers already handled. */
  signal?: AbortSignal;
  log: Logger;
}

export type ActivationStatus = 'running' | 'planned' | 'refused' | 'failed';

export interface ActivationResult {
  server: string;
  status: ActivationStatus;
  /** The domain name at the DR site. */
  domain: string;
  generation?: Pick<Generation, 'id' | 'seq' | 'takenAt' | 'pointInTime'>;
  /** Seconds from the command's start until the domain ran. */
  seconds?: number;
  checkpoint?: string;
  overlayDir?: string;
  /** Console logs and sockets moved off paths that do not exist at this site. */
  moved: Relocation[];
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

/** `<store>/.haven/active/<server>`: overlays, moved consoles, the XML started, checkpoints. */
export function activeDir(store: Store, server: string): string {
  if (store.kind !== 'fs') {
    throw recoveryError(
      'RECOVERY_STORE_UNSUPPORTED',
      'unavailable',
      `activation needs a filesystem store, not ${store.kind}`,
      {
        hint: 'Activate from a filesystem store.',
      },
    );
  }
  return join(store.location, '.haven', 'active', checkName('server', server));
}

function newCheckpointName(): string {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `haven-dr-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** The servers to activate, in boot order. Unknown names fail before anything happens. */
export async function selectForActivation(
  store: Store,
  o: { servers?: string[]; all?: boolean; name?: string },
): Promise<string[]> {
  const known = await store.listServers();
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
  return orderForBoot(chosen.map((s) => ({ server: s, priority: priorities.get(s) ?? 100 })));
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
  const servers = await selectForActivation(o.store, o);
  for (const server of servers) {
    if (o.signal?.aborted) break;
    const result: ActivationResult = {
      server,
      status: 'planned',
      domain: o.name ?? server,
      moved: [],
      force: false,
    };
    report.servers.push(result);
    try {
      await activateOne(o, server, uri, started, result);
    } catch (err) {
      const e = asHavenError(err);
      result.status = result.status === 'planned' ? 'refused' : 'failed';
      result.error = e.toJSON();
      report.firstError ??= e;
      o.log.error(`${server}: ${e.message}`, { code: e.code });
    }
  }
  return report;
}

async function activateOne(
  o: ActivateOptions,
  server: string,
  uri: string | undefined,
  started: number,
  result: ActivationResult,
): Promise<void> {
  const log = o.log.child({ server });
  const { store, virsh } = o;
  const domain = result.domain;

  // Checks that need no lock first: none of them changes anything.
  const pre = await chooseGeneration(store, server, o.generation);
  if (pre.manifest.activeAtDr) {
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
  if (uri !== undefined) {
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
  await checkGeneration(store, server, pre.generation, { full: o.verify });
  await checkNameFree(virsh, domain);
  const definition = await readDefinition(store, server);
  mapDisks(
    definition,
    server,
    pre.generation.disks.map((d) => d.name),
  );
  result.generation = pick(pre.generation);
  if (o.dryRun) return;

  const hold = await holdServer(store, server, 'activation', o.lockWaitMs ?? 60_000);
  let dir: string | undefined;
  let activeSet = false;
  let created = false;
  try {
    // Again under the lock: a replication may have committed since the checks above.
    const { manifest, generation } = await chooseGeneration(store, server, o.generation);
    if (manifest.activeAtDr)
      throw recoveryError('RECOVERY_ALREADY_ACTIVE', 'conflict', `${server} already runs at the DR site`);
    if (generation.id !== pre.generation.id)
      await checkGeneration(store, server, generation, { full: o.verify });
    result.generation = pick(generation);

    dir = activeDir(store, server);
    await removeDir(dir);
    await makeDir(dir, 0o755);
    const sockets = await makeDir(join(dir, 'sockets'), 0o1777);
    const xml = await readDefinition(store, server);
    if (o.name !== undefined) {
      xml.name = o.name;
      xml.newUuid();
    }
    const images = await imagePaths(store, server, generation);
    for (const m of mapDisks(xml, server, [...images.keys()])) {
      const overlay = overlayPath(dir, m.name);
      await createOverlay(overlay, images.get(m.name)!, { log });
      setOverlaySource(xml, m.disk, overlay, images.get(m.name)!);
    }
    result.moved = relocateChardevs(xml, { files: dir, sockets }, (p) => !existsSync(dirname(p)));
    const nv = nvramPath(xml);
    if (nv && !existsSync(dirname(nv))) setNvramPath(xml, join(dir, 'nvram.fd'));
    markStartedByHaven(xml, {
      purpose: 'activation',
      store: store.descriptor.id,
      server,
      generation: generation.id,
    });
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
    activeSet = true;
    log.info('starting the copy', { domain, generation: generation.id, seq: generation.seq });
    await createTransient(virsh, text);
    created = true;
    await waitForState(virsh, domain, 'running', { timeoutMs: o.startTimeoutMs ?? 120_000 });
    result.seconds = (Date.now() - started) / 1000;
    result.status = 'running';

    const checkpoint = newCheckpointName();
    try {
      await createCheckpoint(virsh, domain, {
        name: checkpoint,
        description: `Haven activation of ${server}`,
      });
      await writeFile(
        join(dir, `checkpoint-${checkpoint}.xml`),
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
    await store
      .recordTest(server, generation.id, {
        at: active.since,
        kind: 'activation',
        result: 'pass',
        seconds: result.seconds,
        detail: `running as ${domain}`,
      })
      .catch((e: unknown) =>
        log.warn('could not record the activation in the manifest', { err: asHavenError(e) }),
      );
    if (result.primary?.reachable && result.primary.defined && uri !== undefined) {
      result.primary.guarded = await guardPrimary(uri, server, active, store, log);
    }
    log.info('running', { domain, seconds: result.seconds });
  } catch (e) {
    if (result.status !== 'running') {
      // Undo what this attempt did: the store looks as before, no domain is left.
      if (created) await destroyDomain(virsh, domain).catch(() => false);
      if (activeSet) await store.setActiveAtDr(server, null).catch(() => {});
      if (dir) await removeDir(dir).catch(() => {});
      result.status = 'failed';
    }
    throw e;
  } finally {
    await hold.release();
  }
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
