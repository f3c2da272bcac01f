/**
 * Continuous protection of one server to one or several targets (issue 15; docs/continuous.md):
 * Haven's incremental path run every few seconds by one long-lived process per server, with no
 * process started per cycle. A cycle:
 *
 * 1. a pull backup with prepared scratch files creates checkpoint C(k) and exports the disks as
 *    they were at that instant (capture.ts; crash-consistent across all disks: one transaction);
 * 2. the dirty map since C(k-1) is folded into every lane's pending set, and the sets are
 *    persisted with C(k) (the intent log) — only then may C(k-1) go;
 * 3. the union of the idle lanes' parts is read into the cycle's spool and the job ends at once;
 * 4. each idle lane ships its part from the spool as one journal segment, in the background, at
 *    its own pace (lane.ts). A lane still shipping sits the cycle out: its pending set grows and
 *    it catches up later, so the guest never waits for a link (pull-ahead).
 *
 * Cycles start at most every `intervalMs`, and only when some lane is idle. A server that shuts
 * down gets one more cycle through its images (qemu-nbd, persistent bitmaps), then the protector
 * waits for it to start again. A broken bitmap (a crashed QEMU or host) or a lost checkpoint
 * makes every lane compare every chunk (checksum resync), never a blind full copy.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { asHavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { checkName } from '../../core/names.ts';
import { ensureRunDir } from '../../core/paths.ts';
import type { GenerationIds } from '../../store/types.ts';
import { CHUNK_SIZE } from '../../store/types.ts';
import {
  deleteCheckpoint,
  domainState,
  domainXml,
  getServer,
  needsResync,
  type Server,
  type Virsh,
  VirtError,
} from '../../virt/index.ts';
import { protectedDisks } from '../replicate.ts';
import { lockServer } from '../server-lock.ts';
import type { ProtectedDisk } from '../source.ts';
import { Capture, ScratchFiles } from './capture.ts';
import { ChunkSet, DiskChunks } from './chunk-set.ts';
import { ContinuousError } from './errors.ts';
import { Lane, type LaneRecord, type LaneState, type LaneTarget } from './lane.ts';
import { Spool } from './spool.ts';

/** DataKeeper mirrors to at most seven targets; so does a protector. */
export const MAX_TARGETS = 7;

/** Attempts at deleting a checkpoint the chain no longer needs before leaving it to the operator. */
const DELETE_TRIES = 10;

/** What the protector keeps across restarts (the catalog implements it, jobs/ passes it in). */
export interface ContinuousStateStore {
  load(server: string): SavedProtection | null;
  /** One cycle's state, in one transaction, before the previous checkpoint is deleted. */
  saveCycle(server: string, s: SavedProtection): void;
  /** A lane's state after a segment or a state change. */
  saveLane(server: string, lane: LaneRecord): void;
}

export interface SavedProtection {
  /** The primary's generation identifiers for the server. */
  ids: GenerationIds | null;
  /** The newest checkpoint of the chain: every pending set covers the changes up to it. */
  checkpoint: string | null;
  lanes: LaneRecord[];
}

export interface ProtectorOptions {
  server: string;
  virsh: Virsh;
  runDir: string;
  targets: LaneTarget[];
  job: string;
  copies: number;
  /** Points at most this often (ms). */
  intervalMs: number;
  /** The journal window the targets keep (ms). */
  windowMs: number;
  /** Largest part one segment carries (bytes): the spool's bound per cycle. */
  segmentBytes: number;
  /** A link with no progress for this long is cut and reconnected (ms). */
  stallMs?: number;
  state: ContinuousStateStore;
  /** The operator chose to overwrite what the targets hold (`--overwrite-target`). */
  overwrite?: boolean;
  /** True when a generation should be cut from the next consistent point (the job's schedule). */
  cutDue?: () => boolean;
  signal: AbortSignal;
  log: Logger;
  /** Every second and on each lane change. */
  onStatus?: (s: ProtectorStatus) => void;
}

export interface LaneStatus {
  target: string;
  state: LaneState;
  lagMs: number | null;
  pendingBytes: number;
  lastPoint: LaneRecord['lastPoint'];
  error: LaneRecord['error'];
  wireBytes: number;
  dataBytes: number;
}

export interface ProtectorStatus {
  server: string;
  cycles: number;
  /** Data read into spools, in all. */
  readBytes: number;
  lastCycleMs: number | null;
  domain: 'running' | 'off';
  lanes: LaneStatus[];
}

export class Protector {
  private lanes: Lane[] = [];
  private ids: GenerationIds | null = null;
  private chain: string | undefined;
  /** Checkpoints to delete once the running job has ended (advanceChain). */
  private readonly doomed = new Map<string, number>();
  /** A cycle failed or could not end its job: the next live capture looks for a job left behind. */
  private leftJob = false;
  private ending: Promise<void> = Promise.resolve();
  private wake: (() => void) | null = null;
  private cycles = 0;
  private readBytes = 0;
  private lastCycleMs: number | null = null;
  private lastCycleAt = 0;
  private offlineDone = false;
  private domain: 'running' | 'off' = 'running';
  private definition = '';
  private definitionAt = 0;
  private cutRequested = false;
  private readonly log: Logger;
  private readonly by = hostname();

  constructor(private readonly o: ProtectorOptions) {
    this.log = o.log.child({ server: o.server });
    if (o.targets.length === 0 || o.targets.length > MAX_TARGETS) {
      throw new ContinuousError(
        'CONTINUOUS_TOO_MANY_TARGETS',
        `continuous protection takes 1 to ${MAX_TARGETS} targets, not ${o.targets.length}`,
        {
          kind: 'usage',
          hint: `Name at most ${MAX_TARGETS} targets with --to.`,
          details: { targets: o.targets.length },
        },
      );
    }
  }

  status(): ProtectorStatus {
    const now = Date.now();
    return {
      server: this.o.server,
      cycles: this.cycles,
      readBytes: this.readBytes,
      lastCycleMs: this.lastCycleMs,
      domain: this.domain,
      lanes: this.lanes.map((l) => ({
        target: l.name,
        state: l.state,
        lagMs: l.lagMs(now),
        pendingBytes: l.pendingBytes,
        lastPoint: l.lastPoint,
        error: l.error ? { code: l.error.code, message: l.error.message } : null,
        wireBytes: l.wireBytes,
        dataBytes: l.dataBytes,
      })),
    };
  }

  /** Protects until the signal aborts; lanes finish (or give up) the segment they ship. */
  async run(): Promise<ProtectorStatus> {
    checkName('server', this.o.server);
    const server = await getServer(this.o.virsh, this.o.server, { log: this.log });
    const disks = continuousDisks(server);
    const lock = await lockServer(
      server,
      { target: this.o.targets.map((t) => t.name).join(', '), job: this.o.job },
      this.log,
    );
    const scratch = new ScratchFiles(ensureRunDir(this.o.runDir, 'scratch'), server.name, disks, this.log);
    const ticker = setInterval(() => this.report(), 1000);
    ticker.unref();
    try {
      this.restore(disks);
      this.log.info('continuous protection started', {
        targets: this.lanes.map((l) => l.name),
        chain: this.chain ?? null,
        intervalMs: this.o.intervalMs,
      });
      await this.loop(server, disks, scratch);
    } finally {
      clearInterval(ticker);
      await Promise.allSettled(this.lanes.map((l) => l.stop()));
      await this.ending.catch(() => {});
      for (const l of this.lanes) this.o.state.saveLane(server.name, l.record());
      await ScratchFiles.remove(await scratch.take().catch(() => new Map()));
      await lock.release();
      this.log.info('continuous protection stopped', { cycles: this.cycles });
    }
    return this.status();
  }

  private restore(disks: ProtectedDisk[]): void {
    const saved = this.o.state.load(this.o.server);
    this.ids = saved?.ids ?? null;
    this.chain = saved?.checkpoint ?? undefined;
    const sizes = disks.map((d) => ({ name: d.name, size: d.size }));
    this.lanes = this.o.targets.map(
      (t) =>
        new Lane({
          server: this.o.server,
          target: t,
          disks: sizes,
          record: saved?.lanes.find((r) => r.target === t.name) ?? null,
          stallMs: this.o.stallMs ?? 20_000,
          pieceBytes: 1024 * 1024,
          overwrite: this.o.overwrite === true,
          log: this.log,
          onChange: (lane) => {
            this.o.state.saveLane(this.o.server, lane.record());
            this.report();
            this.wake?.();
          },
        }),
    );
  }

  private report(): void {
    this.o.onStatus?.(this.status());
  }

  private async loop(server: Server, disks: ProtectedDisk[], scratch: ScratchFiles): Promise<void> {
    const { signal } = this.o;
    while (!signal.aborted) {
      try {
        await this.step(server, disks, scratch);
      } catch (e) {
        const err = asHavenError(e);
        if (signal.aborted) break;
        // libvirtd restarting (VIRT_NO_LIBVIRTD while it is away: the state probe fails as well
        // as the cycle), the guest stopping under the cycle: the next step runs anyway. The
        // checkpoint and its persistent bitmap survive a restarted libvirtd (QEMU keeps running),
        // so the next cycle goes on by bitmap; a backup job the failed cycle left is ended by the
        // next capture (Capture.live).
        this.leftJob = true;
        this.log.warn(`cycle failed: ${err.message}`, { code: err.code });
        await this.sleep(Math.max(1000, this.o.intervalMs));
      }
    }
  }

  /** One turn of the loop: reconnect lanes, look at the domain, run a cycle when one is due. */
  private async step(server: Server, disks: ProtectedDisk[], scratch: ScratchFiles): Promise<void> {
    this.connectLanes();
    const state = (await domainState(this.o.virsh, server.name)).state;
    this.domain = state === 'shut off' || state === 'crashed' ? 'off' : 'running';
    if (this.domain === 'running') this.offlineDone = false;
    const due = this.lastCycleAt + this.o.intervalMs - Date.now();
    const ready = this.lanes.some((l) => l.idle || l.needs !== null);
    const offlineWanted =
      this.domain === 'off' && (!this.offlineDone || this.lanes.some((l) => l.idle && !l.pending.isEmpty()));
    if (!ready || due > 0 || (this.domain === 'off' && !offlineWanted)) {
      await this.sleep(ready && due > 0 ? due : this.domain === 'off' ? 2000 : 500);
      return;
    }
    await this.cycle(server, disks, scratch);
    if (this.domain === 'off') this.offlineDone = true;
  }

  private connectLanes(): void {
    for (const lane of this.lanes) {
      if (!lane.wantsConnect()) continue;
      void lane.connect(this.ids).then((d) => {
        if (d && d.kind !== 'refuse' && d.ids.current !== this.ids?.current) {
          this.log.info('generation identifiers adopted', { current: d.ids.current, from: lane.name });
          this.ids = d.ids;
        }
        this.wake?.();
      });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.o.signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
      this.o.signal.addEventListener('abort', done, { once: true });
    });
  }

  private async refreshDefinition(server: Server): Promise<string> {
    if (!this.definition || Date.now() - this.definitionAt > 60_000) {
      this.definition = await domainXml(this.o.virsh, server.name, { inactive: server.persistent });
      this.definitionAt = Date.now();
    }
    return this.definition;
  }

  /** Takes the point in time; a broken or lost base makes every lane compare everything. */
  private async capture(server: Server, disks: ProtectedDisk[], scratch: ScratchFiles): Promise<Capture> {
    await this.ending;
    const take = (base: string | undefined) =>
      this.domain === 'off'
        ? Capture.offline({
            virsh: this.o.virsh,
            server: { ...server, state: 'shut off' },
            disks,
            base,
            runDir: this.o.runDir,
            log: this.log,
          })
        : Capture.live({
            virsh: this.o.virsh,
            server,
            disks,
            base,
            runDir: this.o.runDir,
            scratch,
            leftJob: this.leftJob,
            log: this.log,
          });
    try {
      const cap = await take(this.chain);
      this.leftJob = false;
      return cap;
    } catch (e) {
      const lost = e instanceof VirtError && e.code === 'VIRT_CHECKPOINT_NOT_FOUND';
      if (!this.chain || !(needsResync(e) || lost)) throw e;
      this.log.warn('the previous checkpoint’s bitmaps cannot be used: every lane compares every chunk', {
        checkpoint: this.chain,
        err: e,
      });
      // The spoiled checkpoint goes with the next chain step: kept, it would stay in libvirt
      // (and its bitmaps in the images, marked in use) for as long as the server lives.
      this.doomed.set(this.chain, 0);
      this.chain = undefined;
      for (const l of this.lanes) if (l.needs !== 'allocated') l.needs = 'all';
      return take(undefined);
    }
  }

  private async cycle(server: Server, disks: ProtectedDisk[], scratch: ScratchFiles): Promise<void> {
    const started = performance.now();
    this.lastCycleAt = Date.now();
    const definition = await this.refreshDefinition(server);
    const cap = await this.capture(server, disks, scratch);
    const participants = new Map<Lane, { part: DiskChunks; consistent: boolean }>();
    let spool: Spool | undefined;
    let saved = false;
    try {
      const dirty = await cap.dirty(CHUNK_SIZE);
      await this.fillNeeds(cap, dirty === null);
      if (dirty) for (const l of this.lanes) l.addDirty(dirty);
      const maxChunks = Math.max(1, Math.floor(this.o.segmentBytes / CHUNK_SIZE));
      for (const l of this.lanes) {
        if (l.idle) participants.set(l, l.plan(maxChunks));
        else l.skipped();
      }
      this.o.state.saveCycle(server.name, {
        ids: this.ids,
        checkpoint: cap.pointInTime,
        lanes: this.lanes.map((l) => ({
          ...l.record(),
          ...(participants.has(l) ? { inflight: cap.pointInTime } : {}),
        })),
      });
      saved = true;
      const selection = new DiskChunks(
        disks.map((d) => [d.name, d.size] as [string, number]),
        CHUNK_SIZE,
      );
      for (const p of participants.values()) selection.addAll(p.part);
      const dir = ensureRunDir(this.o.runDir, 'spool');
      spool = await Spool.create(
        join(dir, `${server.name.slice(0, 40)}-${process.pid}-${cap.pointInTime}.spool`),
      );
      this.readBytes += await cap.read(selection, spool, CHUNK_SIZE);
    } catch (e) {
      await spool?.release();
      throw e;
    } finally {
      this.ending = cap.end().then(() => {
        if (cap.endFailed) this.leftJob = true;
      });
      if (saved) this.advanceChain(server, cap.pointInTime);
      scratch.prepare();
    }
    this.shipAll(participants, {
      definition,
      pointInTime: cap.pointInTime,
      takenAt: cap.takenAt,
      disks,
      spool,
      offline: cap.kind === 'offline',
    });
    await spool.release();
    this.cycles++;
    this.lastCycleMs = Math.round(performance.now() - started);
    this.log.debug('cycle', {
      checkpoint: cap.pointInTime,
      ms: this.lastCycleMs,
      lanes: [...participants.keys()].map((l) => l.name),
      spoolBytes: spool.dataBytes,
    });
  }

  /**
   * C(k) is the chain's head now; C(k-1) goes once the job that used it has ended, with the
   * checkpoints an earlier attempt could not delete and those a crash spoiled (`doomed`).
   */
  private advanceChain(server: Server, checkpoint: string): void {
    if (this.chain) this.doomed.set(this.chain, 0);
    this.chain = checkpoint;
    this.ending = this.ending.then(() => this.deleteDoomed(server));
  }

  /**
   * Deletes the checkpoints the chain no longer needs. One whose delete fails stays doomed and
   * is tried again after the next cycles, up to DELETE_TRIES times: a delete can fail for a
   * while and then succeed (QEMU killed under it, so libvirt still sees a running domain;
   * libvirtd away; qemu-nbd still holding the image), and a checkpoint left behind keeps a
   * bitmap that QEMU updates on every guest write for as long as the server lives.
   */
  private async deleteDoomed(server: Server): Promise<void> {
    for (const [name, failed] of [...this.doomed]) {
      if (name === this.chain) {
        this.doomed.delete(name);
        continue;
      }
      try {
        await deleteCheckpoint(this.o.virsh, server.name, name, { log: this.log });
        this.doomed.delete(name);
      } catch (e) {
        if (e instanceof VirtError && e.code === 'VIRT_CHECKPOINT_NOT_FOUND') {
          this.doomed.delete(name);
        } else if (failed + 1 >= DELETE_TRIES) {
          // Not a passing trouble: leave it to the operator rather than try every cycle.
          this.doomed.delete(name);
          this.log.warn(
            `could not delete checkpoint ${name} of ${server.name}; delete it with \`virsh checkpoint-delete ${server.name} ${name}\``,
            { checkpoint: name, err: e },
          );
        } else {
          this.doomed.set(name, failed + 1);
          this.log.warn(
            'could not delete a checkpoint the chain no longer needs; tried again after the next cycle',
            {
              checkpoint: name,
              err: e,
            },
          );
        }
      }
    }
  }

  /** Lanes that start a full copy or a checksum resync get their chunks from this capture. */
  private async fillNeeds(cap: Capture, fullCapture: boolean): Promise<void> {
    if (fullCapture) for (const l of this.lanes) if (l.needs === null) l.needs = 'all';
    const needing = this.lanes.filter((l) => l.needs !== null);
    if (needing.length === 0) return;
    const allocated = needing.some((l) => l.needs === 'allocated') ? await cap.allocated(CHUNK_SIZE) : null;
    for (const l of needing) {
      if (l.needs === 'allocated' && allocated) l.fill(allocated, false);
      else l.fill(everyChunk(cap), true);
    }
  }

  private shipAll(
    participants: Map<Lane, { part: DiskChunks; consistent: boolean }>,
    c: {
      definition: string;
      pointInTime: string;
      takenAt: Date;
      disks: ProtectedDisk[];
      spool: Spool;
      offline: boolean;
    },
  ): void {
    if (this.o.cutDue?.()) this.cutRequested = true;
    const ids = this.ids ?? { current: 'none', history: [] };
    for (const [lane, p] of participants) {
      lane.ship(
        {
          server: this.o.server,
          job: this.o.job,
          copies: this.o.copies,
          windowMs: this.o.windowMs,
          pointInTime: c.pointInTime,
          takenAt: c.takenAt,
          definition: c.definition,
          disks: c.disks.map((d) => ({ name: d.name, size: d.size })),
          spool: c.spool,
          ids,
          by: this.by,
          cut: this.cutRequested,
          sourceOff: c.offline,
        },
        p.part,
        p.consistent,
      );
      void lane.shipping?.then(() => this.wake?.());
    }
    if (participants.size > 0 && [...participants.values()].some((p) => p.consistent))
      this.cutRequested = false;
  }
}

function everyChunk(cap: Capture): DiskChunks {
  const out = new DiskChunks([], CHUNK_SIZE);
  for (const d of cap.disks) out.disks.set(d.name, ChunkSet.full(Math.ceil(d.size / CHUNK_SIZE)));
  return out;
}

/** The server's disks; every one must carry dirty bitmaps (qcow2). */
export function continuousDisks(server: Server): ProtectedDisk[] {
  const disks = protectedDisks(server);
  const raw = disks.filter((d) => d.format !== 'qcow2');
  if (raw.length > 0) {
    throw new ContinuousError(
      'CONTINUOUS_RAW_DISK',
      `${server.name}: ${raw.map((d) => `${d.target} (${d.format})`).join(', ')} cannot track changes`,
      {
        kind: 'usage',
        hint: 'Continuous protection needs qcow2 disks (persistent dirty bitmaps); convert the disk with `qemu-img convert -O qcow2`, or protect this server with scheduled runs.',
        details: { server: server.name, disks: raw.map((d) => d.target) },
      },
    );
  }
  return disks;
}
