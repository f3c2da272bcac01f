/**
 * Drills (`haven drill`, and `runDrill` for the daemon's scheduler): prove that a generation
 * boots, in isolation, and measure how long it took (the RTO).
 *
 * A drill holds the server (Store.holdServer: no replication recycles the generation meanwhile),
 * checks the generation (structure always, every digest with `verify`), boots it through
 * throwaway overlays in a temporary directory as `<server>-drill-<id>` with no network
 * interfaces (or, where the drill asks for networks, its interfaces mapped to this site's:
 * networks.ts) and its console in a file, waits for the boot marker, and records pass or fail with
 * the seconds it took in the manifest ("tested at"). Whatever it created is removed, pass or fail.
 * The guest's own check (the marker) catches damage the digests cannot see, such as a
 * generation that was already wrong when it was copied.
 */
import { randomBytes } from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BootMarker, type DrillConfig, selectServers } from '../core/config.ts';
import type { DefinitionRules } from '../core/definition-rules.ts';
import { asHavenError, type HavenError, UsageError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { ensureRunDir } from '../core/paths.ts';
import { openStore } from '../store/index.ts';
import { drillRecord, type Generation, type ServerHold, type Store } from '../store/types.ts';
import { createTransient, destroyDomain, type Virsh, VirtError, waitForState } from '../virt/index.ts';
import { type BootRecipe, type DefinitionSummary, prepareBoot, summary, throughOverlays } from './boot.ts';
import { isolateChardevs, isolateDevices, setImageSource } from './definition.ts';
import { recoveryError } from './errors.ts';
import { checkGeneration, chooseGeneration, holdServer } from './generation.ts';
import { waitForBootMarker } from './marker.ts';
import { type BootNetworks, drillNetworks, type NetworkRequest, type NicPlan } from './networks.ts';
import { makeDir, removeDir } from './overlay.ts';
import { choosePoint, pointAsGeneration } from './restore-point.ts';

/** The disk step of a drill of a journal point: raw images of the point, in `dir`. */
async function materialisedDisks(
  o: DrillServerOptions,
  pointId: string,
  disks: readonly { name: string }[],
  dir: string,
): Promise<BootRecipe['placeDisk']> {
  const outputs = new Map(disks.map((d) => [d.name, join(dir, `${d.name}.raw`)]));
  if (!o.store.materialisePoint) throw new UsageError('this store keeps no journal of points');
  await o.store.materialisePoint(o.server, pointId, outputs, o.signal);
  return async (xml, m) => setImageSource(xml, m.disk, outputs.get(m.name) ?? '', 'raw');
}

/** Something worth telling the catalog and the alerting (the CLI or the daemon decides how). */
export interface RecoveryEvent {
  type: 'drill.passed' | 'drill.failed';
  severity: 'info' | 'error';
  server: string;
  message: string;
  /** The same key for every drill of this server in this store: a pass resolves the problem. */
  dedupKey: string;
  data: Record<string, unknown>;
}

export interface DrillServerOptions {
  store: Store;
  server: string;
  /** Sequence number (1 = newest, the default). */
  generation?: number;
  /** A point of the server's journal instead (its id, or a time): docs/continuous.md. */
  at?: string;
  marker: BootMarker;
  timeoutMs: number;
  /** Compare every chunk with its digest before booting. */
  verify?: boolean;
  virsh: Virsh;
  /** Where the throwaway overlays and the console log go (QEMU must write there). */
  runDir: string;
  /** How long to wait for a replication of the server to finish (default 10 min). */
  lockWaitMs?: number;
  signal?: AbortSignal;
  onEvent?: (e: RecoveryEvent) => void;
  /** This DR host's settings for definitions (config `definitions`); none: the rule as is. */
  rules?: DefinitionRules;
  /** Interfaces kept and mapped to these networks; undefined: none (an isolated drill). */
  networks?: BootNetworks | undefined;
  log: Logger;
}

export interface DrillResult {
  server: string;
  domain: string;
  generation?: Pick<Generation, 'id' | 'seq' | 'takenAt'>;
  result: 'pass' | 'fail';
  /** Seconds from the drill's start to the boot marker (pass), or to the failure. */
  seconds: number;
  detail?: string;
  error?: ReturnType<HavenError['toJSON']>;
  /** The last lines of the console, for a failure. */
  consoleTail?: string;
  /** The result is in the manifest (false only when no generation could be chosen). */
  recorded: boolean;
  /** What the definition rules removed, and what they kept on the operator's word. */
  definition?: DefinitionSummary;
  /** What each interface joined (a drill with networks; an isolated drill has none). */
  networks?: NicPlan[];
}

export function drillDedupKey(storeId: string, server: string): string {
  return `drill:${storeId}:${server}`;
}

/**
 * The boot recipe (boot.ts) for a drill: under its own name and UUID, through throwaway overlays
 * in `dir`, its console in `dir/console.log`, isolated from the host's devices and, unless the
 * drill maps its interfaces to networks, from the network (definition.ts `isolateDevices`,
 * `isolateChardevs`).
 */
async function drillXml(
  o: DrillServerOptions,
  domain: string,
  generation: Generation,
  dir: string,
  result: DrillResult,
  log: Logger,
  placeDisk?: BootRecipe['placeDisk'],
): Promise<string> {
  const { xml, report, networks } = await prepareBoot({
    purpose: 'drill',
    store: o.store,
    server: o.server,
    generation,
    rename: domain,
    rules: o.rules,
    hostFiles: { files: dir, sockets: dir },
    networks: o.networks,
    log,
    placeDisk: placeDisk ?? (await throughOverlays(o.store, o.server, generation, dir, log)),
    nvram: async (kept) => {
      const copy = join(dir, 'nvram.fd');
      // The UEFI variables the definition names, where the operator keeps them and this site
      // has them; else libvirt starts from the firmware's template.
      if (kept) await copyFile(kept, copy).catch(() => {});
      return copy;
    },
  });
  result.definition = summary(report);
  if (o.networks) result.networks = networks;
  isolateDevices(xml, { keepInterfaces: o.networks !== undefined });
  isolateChardevs(xml, join(dir, 'console.log'));
  return xml.toString();
}

/**
 * What to look at when a copy shows no boot marker. A definition that lost its kernel or firmware
 * when it arrived (the DR host did not allow their directory then) boots from its disk instead,
 * often silently: that is named first.
 */
export function noMarkerHint(server: string, earlier: readonly string[]): string {
  const boot = earlier.filter((e) => /^os\//.test(e));
  const first =
    'The copy did not show its boot marker: look at the console tail in the report, then at the generation.';
  if (boot.length === 0) return first;
  // Each note is "<element> (<detail>): <reason>" (RuleContext.removeQuietly).
  const what = boot.map((e) => e.split(': ')[0]).join(', ');
  const why = boot[0]!.split(': ').slice(1).join(': ');
  return `${first} Its definition lost ${what} when it was written (${why}): allow the directory in definitions.boot_files and add them back to definitions/${server}.xml (docs/recovery.md, "What a DR definition may hold").`;
}

export async function drillServer(o: DrillServerOptions): Promise<DrillResult> {
  const t0 = Date.now();
  const id = randomBytes(4).toString('hex');
  const domain = `${o.server}-drill-${id}`;
  const log = o.log.child({ server: o.server, drill: domain });
  const result: DrillResult = { server: o.server, domain, result: 'fail', seconds: 0, recorded: false };
  let generation: Generation | undefined;
  let dir: string | undefined;
  let created = false;
  let hold: ServerHold | undefined;
  try {
    let placeDisk: BootRecipe['placeDisk'] | undefined;
    if (o.at !== undefined) {
      // A journal point: materialised into the drill's directory (the journal is only read), and
      // nothing recorded in a manifest (a point is no generation).
      const point = await choosePoint(o.store, o.server, o.at);
      result.generation = { id: point.id, seq: point.seq, takenAt: point.takenAt };
      dir = await makeDir(join(ensureRunDir(o.runDir, 'drills'), `${o.server.slice(0, 40)}-${id}`), 0o1777);
      placeDisk = await materialisedDisks(o, point.id, point.disks, dir);
      generation = pointAsGeneration(point, o.server);
    } else {
      hold = await holdServer(o.store, o.server, 'drill', o.lockWaitMs ?? 600_000);
      generation = (await chooseGeneration(o.store, o.server, o.generation)).generation;
      result.generation = { id: generation.id, seq: generation.seq, takenAt: generation.takenAt };
      await checkGeneration(o.store, o.server, generation, { full: o.verify, signal: o.signal });
      dir = await makeDir(join(ensureRunDir(o.runDir, 'drills'), `${o.server.slice(0, 40)}-${id}`), 0o1777);
    }
    const xml = await drillXml(o, domain, generation, dir, result, log, placeDisk);
    const consoleLog = join(dir, 'console.log');
    log.info('booting the generation in isolation', { seq: generation.seq, generation: generation.id });
    await createTransient(o.virsh, xml);
    created = true;
    const seen = await waitForBootMarker({
      virsh: o.virsh,
      domain,
      marker: o.marker,
      consoleLog,
      timeoutMs: o.timeoutMs,
      signal: o.signal,
    });
    result.seconds = (Date.now() - t0) / 1000;
    if (seen.seen) {
      result.result = 'pass';
      result.detail =
        'serial' in o.marker
          ? `console showed ${JSON.stringify(o.marker.serial)}`
          : 'the guest agent answered';
    } else {
      result.detail = seen.reason;
      result.consoleTail = seen.consoleTail;
      result.error = recoveryError('DRILL_NO_BOOT_MARKER', 'integrity', `${o.server}: ${seen.reason}`, {
        hint: noMarkerHint(o.server, result.definition?.earlier ?? []),
      }).toJSON();
    }
  } catch (e) {
    const err = asHavenError(e);
    result.seconds = (Date.now() - t0) / 1000;
    result.detail = err.message;
    result.error = err.toJSON();
    log.error(`drill failed: ${err.message}`, { code: err.code });
  } finally {
    if (created) {
      await destroyDomain(o.virsh, domain).catch((e) =>
        log.warn('could not stop the drill domain', { err: asHavenError(e) }),
      );
      // A transient domain is gone from libvirt once stopped; wait for it so nothing remains.
      await waitForState(o.virsh, domain, 'shut off', { timeoutMs: 30_000 }).catch((e) => {
        if (!(e instanceof VirtError)) throw e;
        log.warn('the drill domain did not go away', { err: e });
      });
    }
    if (dir)
      await removeDir(dir).catch((e) =>
        log.warn('could not remove the drill directory', { dir, err: asHavenError(e) }),
      );
    if (generation && o.at === undefined) {
      const record = drillRecord(t0, result);
      try {
        await o.store.recordTest(o.server, generation.id, record);
        result.recorded = true;
      } catch (e) {
        log.error('could not record the drill in the manifest', { err: asHavenError(e) });
      }
    }
    await hold?.release();
  }
  const key = drillDedupKey(o.store.descriptor.id, o.server);
  const data = { ...result, store: o.store.location };
  if (result.result === 'pass') {
    log.info('drill passed', { seconds: result.seconds });
    o.onEvent?.({
      type: 'drill.passed',
      severity: 'info',
      server: o.server,
      message: `drill of ${o.server} passed: booted generation _${result.generation?.seq} in ${result.seconds.toFixed(1)} s`,
      dedupKey: key,
      data,
    });
  } else {
    o.onEvent?.({
      type: 'drill.failed',
      severity: 'error',
      server: o.server,
      message: `drill of ${o.server} failed: ${result.detail ?? 'unknown reason'}`,
      dedupKey: key,
      data,
    });
  }
  return result;
}

export interface DrillReport {
  drill: string;
  store: string;
  results: DrillResult[];
  passed: number;
  failed: number;
}

export interface RunDrillDeps {
  virsh: Virsh;
  runDir: string;
  log: Logger;
  onEvent?: (e: RecoveryEvent) => void;
  signal?: AbortSignal;
  /** Overrides for what the configuration says (CLI flags). */
  generation?: number;
  /** A journal point (id or time) instead of a generation. */
  at?: string;
  verify?: boolean;
  /** Only these servers (they must be in the store); default what the drill selects. */
  servers?: string[];
  marker?: BootMarker;
  timeoutMs?: number;
  /** This DR host's settings for definitions (config `definitions`). */
  rules?: DefinitionRules;
  /** The site's network mapping and the flags' (used when the drill's `networks` is not isolated). */
  networks?: NetworkRequest;
}

/** The marker and timeout of one server: flags, else its override, else the drill's. */
export function serverDrillSettings(
  config: DrillConfig,
  deps: Pick<RunDrillDeps, 'marker' | 'timeoutMs'>,
  server: string,
): { marker: BootMarker | undefined; timeoutMs: number } {
  const override = config.overrides[server];
  return {
    marker: deps.marker ?? override?.bootMarker ?? config.bootMarker,
    timeoutMs: deps.timeoutMs ?? override?.timeoutMs ?? config.timeoutMs,
  };
}

export function noMarker(config: DrillConfig, server: string): HavenError {
  return recoveryError('DRILL_NO_MARKER', 'config', `drill ${config.name} has no boot marker for ${server}`, {
    hint: `Set drills.${config.name}.boot_marker or drills.${config.name}.overrides.${server}.boot_marker.`,
  });
}

/**
 * Opens the drill's store, picks its servers (those named, or those its patterns select among
 * the store's servers, or among its journals for `--at`) and runs `body`; the store is closed
 * whatever happens.
 */
export async function withDrillStore<T>(
  config: DrillConfig,
  deps: RunDrillDeps,
  body: (store: Store, servers: string[]) => Promise<T>,
): Promise<T> {
  const store = await openStore(config.store, { log: deps.log });
  try {
    const inStore = deps.at === undefined ? await store.listServers() : await store.listJournals();
    return await body(store, deps.servers ?? selectServers(config.servers, inStore));
  } finally {
    await store.close();
  }
}

/**
 * Runs a configured drill (config `drills.<name>`): every server of its store that the drill's
 * patterns select, one after the other, each with its marker and timeout (overrides applied).
 * This is what the daemon schedules; it never throws for a failing server, only for a store it
 * cannot open.
 */
export function runDrill(config: DrillConfig, deps: RunDrillDeps): Promise<DrillReport> {
  return withDrillStore(config, deps, async (store, servers) => {
    const report: DrillReport = {
      drill: config.name,
      store: store.location,
      results: [],
      passed: 0,
      failed: 0,
    };
    for (const server of servers) {
      if (deps.signal?.aborted) break;
      const { marker, timeoutMs } = serverDrillSettings(config, deps, server);
      let r: DrillResult;
      if (!marker) {
        const err = noMarker(config, server);
        r = {
          server,
          domain: '',
          result: 'fail',
          seconds: 0,
          detail: err.message,
          error: err.toJSON(),
          recorded: false,
        };
        deps.onEvent?.({
          type: 'drill.failed',
          severity: 'error',
          server,
          message: err.message,
          dedupKey: drillDedupKey(store.descriptor.id, server),
          data: { ...r },
        });
      } else {
        r = await drillServer({
          store,
          server,
          marker,
          timeoutMs,
          virsh: deps.virsh,
          runDir: deps.runDir,
          log: deps.log,
          ...(deps.generation !== undefined ? { generation: deps.generation } : {}),
          ...(deps.at !== undefined ? { at: deps.at } : {}),
          ...(deps.verify !== undefined ? { verify: deps.verify } : {}),
          ...(deps.signal ? { signal: deps.signal } : {}),
          ...(deps.onEvent ? { onEvent: deps.onEvent } : {}),
          ...(deps.rules ? { rules: deps.rules } : {}),
          networks: drillNetworks(config.networks, deps.networks ?? {}, server, deps.virsh),
        });
      }
      report.results.push(r);
      if (r.result === 'pass') report.passed++;
      else report.failed++;
    }
    return report;
  });
}
