/**
 * `haven failback`: hands a server that ran at the DR site back to the repaired primary, sending
 * only what changed at the DR site since activation — the replication engine and stream protocol
 * of `haven protect`, run in the other direction: the DR copy is the source, a receiver on the
 * primary (receiver.ts, sink.ts) writes into the primary's own images.
 *
 * 1. Live pass while the DR copy runs: a pull-mode backup incremental from the checkpoint
 *    activation created (its bitmaps record every write since the copy started).
 * 2. The DR copy is shut down cleanly (what the guest still had in its caches reaches the
 *    overlays), then started again paused from the same disks, isolated like a drill, with its
 *    checkpoints redefined: the engine reads it like any live server.
 * 3. Final pass, incremental from the live pass's checkpoint: what changed during it.
 * 4. On the primary: the guard is removed and the server started. At the DR site: the paused
 *    copy is stopped, `activeAtDr` cleared and the overlays removed.
 *
 * Each pass is incremental only when the primary proves its images still hold the base (sink.ts);
 * otherwise that pass compares every chunk and sends only those that differ. A failed failback
 * can be run again: what the last completed pass established is kept in `failback.json`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainXml } from '../../core/domain-xml.ts';
import { asHavenError, UsageError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { ProgressSnapshot } from '../../engine/index.ts';
import type { DeltaMode, Store } from '../../store/types.ts';
import {
  createTransient,
  destroyDomain,
  parseCheckpointXml,
  redefineCheckpoint,
  shutdownDomain,
  type Virsh,
  waitForState,
} from '../../virt/index.ts';
import { activeDir } from '../activate.ts';
import { isolateChardevs, isolateDevices } from '../definition.ts';
import { notActive, recoveryError } from '../errors.ts';
import { removeDir } from '../overlay.ts';
import { followDrCopy } from './follow.ts';
import { describeEndpoint, type LinkOptions, parsePrimaryEndpoint } from './link.ts';
import { type FailbackRun, isRunning, runPass } from './pass.ts';

export interface FailbackOptions {
  store: Store;
  server: string;
  /** The primary: `local`, or its ssh address. */
  to: string;
  /** libvirt at the DR site. */
  virsh: Virsh;
  runDir: string;
  /** libvirt URI the receiver uses on the primary (default its own default). */
  primaryUri?: string;
  /** Start the server on the primary at the end (default true). */
  start?: boolean;
  /** zstd level on the wire, 0 = off (default 3). */
  compress?: number;
  /** How long the DR copy may take to shut down (default 5 min). */
  shutdownTimeoutMs?: number;
  /** Power the DR copy off when it ignores the shutdown request. */
  forceOff?: boolean;
  link?: Omit<LinkOptions, 'log'>;
  onProgress?: (s: ProgressSnapshot & { pass: 'live' | 'final' }) => void;
  /**
   * Replicate in the other direction instead of finishing (follow.ts): a live pass every
   * `intervalMs` while the DR copy runs, until the signal stops it or the copy stops.
   */
  follow?: { intervalMs: number; onPass?: (p: FailbackPass) => void };
  signal?: AbortSignal;
  log: Logger;
}

export interface FailbackPass {
  pass: 'live' | 'final';
  /** incremental (from a checkpoint), or resync (every chunk compared). */
  mode: DeltaMode;
  /** The DR checkpoint this pass brought the primary to. */
  pointInTime: string;
  dataBytes: number;
  zeroBytes: number;
  /** Bytes on the wire in both directions, frames included. */
  wireBytes: number;
  attempts: number;
  durationMs: number;
}

export interface FailbackResult {
  server: string;
  /** The DR copy's domain. */
  drDomain: string;
  primary: string;
  passes: FailbackPass[];
  wireBytes: number;
  started: boolean;
  seconds: number;
  /** `follow`: live passes made (result.passes keeps the newest few), and why following ended. */
  following?: { passes: number; ended: 'stopped' | 'dr-copy-stopped'; lastError?: string };
}

/** What the last completed pass established (kept in the active directory across attempts). */
interface PassState {
  /** The primary's marker bitmap: its images equal the DR copy at `drPoint`. */
  since: string;
  drPoint: string;
}

async function readPassState(dir: string): Promise<PassState | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, 'failback.json'), 'utf8')) as PassState;
    return typeof v.since === 'string' && typeof v.drPoint === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Saved checkpoint XML (activation, each pass), oldest first. */
async function savedCheckpoints(dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => f.startsWith('checkpoint-') && f.endsWith('.xml'));
  const xml = await Promise.all(files.map((f) => readFile(join(dir, f), 'utf8')));
  return xml
    .map((x) => ({ x, t: parseCheckpointXml(x).creationTime.getTime() }))
    .sort((a, b) => a.t - b.t)
    .map((c) => c.x);
}

export async function failback(o: FailbackOptions): Promise<FailbackResult> {
  const t0 = Date.now();
  const endpoint = parsePrimaryEndpoint(o.to);
  const manifest = await o.store.manifest(o.server);
  if (!manifest?.activeAtDr) throw notActive(o.server);
  const active = manifest.activeAtDr;
  const drDomain = active.domain ?? o.server;
  const dir = activeDir(o.store, o.server);
  const generation = manifest.generations.find((g) => g.id === active.generationId);
  if (o.compress !== undefined && (!Number.isInteger(o.compress) || o.compress < 0 || o.compress > 19)) {
    throw new UsageError(`--compress must be 0 to 19, got ${o.compress}`);
  }
  const run: FailbackRun = {
    o,
    endpoint,
    drDomain,
    dir,
    log: o.log.child({ server: o.server, failback: describeEndpoint(endpoint) }),
    result: {
      server: o.server,
      drDomain,
      primary: describeEndpoint(endpoint),
      passes: [],
      wireBytes: 0,
      started: false,
      seconds: 0,
    },
    // Where the primary stands: after an earlier attempt's pass, or at the activated generation.
    base: (await readPassState(dir)) ?? { since: generation?.pointInTime, drPoint: active.checkpoint },
  };

  if (o.follow) return followDrCopy(run, t0);
  if (await isRunning(o.virsh, drDomain)) {
    run.log.info('live pass while the DR copy runs', { domain: drDomain });
    await runPass(run, 'live');
    await stopDrCopy(run);
  }
  await finalPass(run);
  run.result.started = o.start !== false;
  await o.store.setActiveAtDr(o.server, null);
  await removeDir(dir);
  run.result.seconds = (Date.now() - t0) / 1000;
  run.log.info('failback complete', { wireBytes: run.result.wireBytes, passes: run.result.passes.length });
  return run.result;
}

/** Shuts the DR copy down after the live pass; powers it off only when told to. */
async function stopDrCopy(run: FailbackRun): Promise<void> {
  const { o, drDomain, log } = run;
  log.info('shutting the DR copy down', { domain: drDomain });
  const down = await shutdownDomain(o.virsh, drDomain, { timeoutMs: o.shutdownTimeoutMs ?? 300_000 });
  if (down.stopped) return;
  if (!o.forceOff) {
    throw recoveryError(
      'FAILBACK_DR_STILL_RUNNING',
      'unavailable',
      `the DR copy ${drDomain} did not shut down in time`,
      {
        hint: 'Shut it down from inside, or run failback again with --force-off (what its caches hold is then lost). The live pass is kept.',
        details: { domain: drDomain, state: down.state },
      },
    );
  }
  log.warn('the DR copy ignored the shutdown request: powering it off', { domain: drDomain });
  await destroyDomain(o.virsh, drDomain);
}

/**
 * The final pass reads the stopped copy's overlays through the same engine: the copy is
 * started again, paused (its guest does not run), with its checkpoints redefined.
 * Isolated like a drill: a paused reader needs no network, console or sockets, and must not
 * take them from the server starting on the primary (on a host that is both sites).
 */
async function finalPass(run: FailbackRun): Promise<void> {
  const { o, drDomain, dir, log } = run;
  const xml = DomainXml.parse(await readFile(join(dir, 'domain.xml'), 'utf8'));
  isolateDevices(xml);
  isolateChardevs(xml, join(dir, 'final-pass-console.log'));
  await createTransient(o.virsh, xml.toString(), { paused: true });
  try {
    for (const cp of await savedCheckpoints(dir)) {
      await redefineCheckpoint(o.virsh, drDomain, cp).catch((e: unknown) =>
        log.warn('a checkpoint could not be redefined: the final pass may compare every chunk', {
          err: asHavenError(e),
        }),
      );
    }
    await runPass(run, 'final');
  } finally {
    await destroyDomain(o.virsh, drDomain).catch(() => false);
    await waitForState(o.virsh, drDomain, 'shut off', { timeoutMs: 30_000 }).catch(() => 'shut off');
  }
}
