/**
 * Receiving one delta (DeltaWriter, docs/design.md §4.2 step 1): the lifecycle every kind shares — calls
 * checked and run in call order, the writer's state, checkpoints, seal, commit, close, discard —
 * over a kind that keeps the files (kind.ts: staged.ts or direct.ts). Opening, resuming and
 * creating a delta: open.ts.
 *
 * Resume: `checkpoint()` makes everything durable and records the sender's watermarks with the
 * staged state (counts, file lengths, floors). A later `openDelta` continues from exactly that
 * state (each kind's `reconcile`), so every chunk the store reports as staged holds exactly the
 * bytes its digest names, which is what a sender resuming under a new point in time relies on
 * (`expectedDigests`).
 *
 * Counting: the summary given to `seal()` must equal, per disk, `resumed.staged` (what the delta
 * held when this attempt began) plus what this attempt sent. Bytes sent twice count twice on both
 * sides, so the sender never has to reason about overlaps.
 */
import { asHavenError, type HavenError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { badRequest, storeError } from '../../errors.ts';
import {
  CHUNK_SIZE,
  type DeltaMeta,
  type DeltaSummary,
  type DeltaWriter,
  type Generation,
  type ResumeState,
} from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { deleteDelta, writeDeltaRecord } from '../deltas.ts';
import { fsyncDir, io } from '../files.ts';
import type { HeldLock } from '../lock.ts';
import type { DeltaRecord } from '../records.ts';
import { readSums, writeSums } from '../sums.ts';
import { checkChunkDigests, checkChunkRange, checkExtent, type DeltaDisk } from './disk.ts';
import type { DeltaKind } from './kind.ts';
import { WriteBehind } from './write-behind.ts';
import { WritesInFlight } from './writes-in-flight.ts';

type State = 'open' | 'sealed' | 'committed' | 'closed' | 'failed';

export interface WriterHost {
  /** Runs docs/design.md §4.2 steps 2–4 for this server (the caller holds the server lock). */
  commit(server: string, log: Logger): Promise<Generation>;
}

export class StoreDeltaWriter<K> implements DeltaWriter {
  private state: State = 'open';
  private failure: HavenError | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private resumedState: ResumeState | null = null;
  private readonly writes = new WritesInFlight((e) => {
    if (this.state !== 'open') return;
    this.state = 'failed';
    this.failure = e;
  });
  private readonly writeBehind = new WriteBehind();

  /** Assembled by open.ts; the writer releases `lock` when it ends. */
  constructor(
    private readonly ctx: StoreContext,
    private readonly record: DeltaRecord,
    private readonly kind: DeltaKind<K>,
    private readonly disks: DeltaDisk<K>[],
    private readonly lock: HeldLock,
    private readonly host: WriterHost,
    private readonly log: Logger,
  ) {}

  get deltaId(): string {
    return this.record.id;
  }

  get resumed(): ResumeState | null {
    return this.resumedState;
  }

  // ---- opening (open.ts) ----

  /** A new delta's files exist: make them and their names durable. */
  async makeCreatedDurable(): Promise<void> {
    await this.syncAll();
    await this.kind.syncCreated();
    await fsyncDir(this.record.dataDir);
  }

  /** Brings the files back to the last checkpoint (each kind's `reconcile`), durably. */
  async reconcile(): Promise<void> {
    await this.kind.reconcile(this.disks);
    for (const d of this.disks) d.dirty = true;
    await this.syncAll();
  }

  /**
   * Starts this attempt at a partial delta under `meta` (maybe a new point in time) and records
   * it. Returns what the sender learns: what the partial holds and up to where.
   */
  async beginResumedAttempt(meta: DeltaMeta): Promise<ResumeState> {
    const record = this.record;
    const resumed: ResumeState = {
      deltaId: record.id,
      pointInTime: record.meta.pointInTime,
      watermarks: { ...record.watermarks },
      stagedBytes: this.disks.reduce((n, d) => n + d.dataBytes + d.zeroBytes, 0),
      staged: Object.fromEntries(
        this.disks.map((d) => [d.name, { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes }]),
      ),
    };
    // A new attempt: positions from an older point in time mean nothing to the new sender.
    if (record.meta.pointInTime !== meta.pointInTime) record.watermarks = {};
    record.meta = structuredClone(meta);
    for (const d of this.disks) {
      d.floor = d.size;
      d.attemptHi = 0;
    }
    this.snapshot();
    await writeDeltaRecord(this.ctx, record);
    this.resumedState = resumed;
    return resumed;
  }

  // ---- DeltaWriter ----

  expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer> {
    return this.serial(async () => {
      if (this.state !== 'open' && this.state !== 'sealed') this.assertState('open', 'expectedDigests');
      const d = this.disk(disk);
      await this.writes.drain();
      checkChunkRange(d, fromChunk, count);
      const out = await readSums(d.sums, fromChunk, count);
      await this.kind.fillUnstaged(d, fromChunk, count, out);
      return out;
    });
  }

  /**
   * The checks and bookkeeping run in call order (serial); the data and digest writes then run
   * beside later calls, so several are on their way to the disk at once. A later write that
   * overlaps a running one, and every operation that reads or syncs the files, waits for them.
   */
  writeData(disk: string, offset: number, data: Buffer, chunkDigests: Buffer): Promise<void> {
    let written: Promise<void> = Promise.resolve();
    const submitted = this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'writeData');
        const d = this.disk(disk);
        checkExtent(d, offset, data.length);
        checkChunkDigests(d, offset, data.length, chunkDigests);
        const end = offset + data.length;
        await this.writes.makeRoom(d.index, offset, end);
        const target = await this.kind.placeData(d, offset, data.length, () => this.writes.drain());
        written = this.writes.start(d.index, offset, end, async () => {
          await io(target.what, () => target.out.write(data, target.at));
          await io(this.kind.sumsWhat, () => writeSums(d.sums, offset / CHUNK_SIZE, chunkDigests));
        });
        this.writeBehind.add(target, data.length);
        await this.kind.bookData(d, target, offset, chunkDigests, data.length);
        d.dataBytes += data.length;
        d.attemptHi = Math.max(d.attemptHi, end);
        d.dirty = true;
      }),
    );
    return submitted.then(() => written);
  }

  writeZero(disk: string, offset: number, length: number): Promise<void> {
    return this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'writeZero');
        const d = this.disk(disk);
        checkExtent(d, offset, length);
        await this.writes.drain();
        await this.kind.stageZero(d, offset, length);
        d.zeroBytes += length;
        d.attemptHi = Math.max(d.attemptHi, offset + length);
        d.dirty = true;
      }),
    );
  }

  checkpoint(watermarks: Record<string, number>): Promise<void> {
    return this.serial(() =>
      this.guard(async () => {
        this.assertState('open', 'checkpoint');
        for (const [name, w] of Object.entries(watermarks)) {
          const d = this.disk(name);
          if (!Number.isSafeInteger(w) || w < 0 || w > d.size) {
            throw badRequest('STORE_BAD_WATERMARK', `watermark ${w} is outside disk ${name}`, {
              disk: name,
              watermark: w,
            });
          }
        }
        await this.persist(watermarks);
      }),
    );
  }

  seal(summary: DeltaSummary): Promise<void> {
    return this.serial(async () => {
      this.assertState('open', 'seal');
      this.checkSummary(summary);
      await this.guard(async () => {
        await this.syncAll();
        const r = this.record;
        for (const d of this.disks) {
          d.floor = d.size;
          r.watermarks[d.name] = d.size;
        }
        this.snapshot();
        r.state = 'sealed';
        r.sealedAt = new Date().toISOString();
        await writeDeltaRecord(this.ctx, r);
      });
      this.state = 'sealed';
      this.log.verbose('delta sealed', { deltaId: this.deltaId });
      crashPoint('after-seal');
    });
  }

  commit(): Promise<Generation> {
    return this.serial(async () => {
      this.assertState('sealed', 'commit');
      await this.closeFiles();
      const gen = await this.host.commit(this.record.server, this.log);
      this.state = 'committed';
      await this.lock.release();
      return gen;
    });
  }

  close(): Promise<void> {
    return this.serial(async () => {
      if (this.state === 'closed' || this.state === 'committed') return;
      if (this.state === 'open') {
        // Keep everything received so far (the last watermarks stay): a sender that resumes
        // learns it from `resumed.staged` and sends less. After a failed write the files may
        // disagree with each other, so a failed delta falls back to its last checkpoint.
        try {
          await this.persist({});
        } catch (e) {
          this.log.warn('could not keep what arrived since the last checkpoint', {
            code: asHavenError(e).code,
          });
        }
      }
      await this.closeFiles();
      this.state = 'closed';
      await this.lock.release();
    });
  }

  discard(): Promise<void> {
    return this.serial(async () => {
      if (this.state === 'sealed' || this.state === 'committed') {
        throw badRequest('STORE_DELTA_STATE', `a ${this.state} delta cannot be discarded`, {
          deltaId: this.deltaId,
        });
      }
      if (this.state === 'closed')
        throw badRequest('STORE_DELTA_STATE', 'the delta is closed', { deltaId: this.deltaId });
      await this.closeFiles();
      this.state = 'closed';
      try {
        await deleteDelta(this.ctx, this.record, this.log);
        this.log.info('partial delta discarded', { deltaId: this.deltaId });
      } finally {
        await this.lock.release();
      }
    });
  }

  /** Closes every file (a resume that failed, or the end of the delta). */
  async closeFiles(): Promise<void> {
    await this.writes.drain().catch(() => {});
    await this.writeBehind.wait();
    await this.kind.close(this.disks);
    await Promise.all(this.disks.map((d) => d.sums.close().catch(() => {})));
  }

  // ---- state and checks ----

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private assertState(want: State, op: string): void {
    if (this.state === 'failed') {
      throw storeError(
        'STORE_DELTA_FAILED',
        this.failure?.kind ?? 'io',
        `${op}: an earlier write failed (${this.failure?.code})`,
        {
          hint: 'Close this delta and open it again: it resumes from its last checkpoint.',
          details: { deltaId: this.deltaId, cause: this.failure?.code },
        },
      );
    }
    if (this.state !== want) {
      throw badRequest('STORE_DELTA_STATE', `${op} is not allowed: the delta is ${this.state}`, {
        deltaId: this.deltaId,
        state: this.state,
      });
    }
  }

  /** Runs `fn`; a failure other than a refused request fails the delta (close and reopen to resume). */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const he = asHavenError(e);
      if (he.kind !== 'protocol') {
        this.state = 'failed';
        this.failure = he;
      }
      throw he;
    }
  }

  private disk(name: string): DeltaDisk<K> {
    const d = this.disks.find((x) => x.name === name);
    if (!d)
      throw badRequest('STORE_UNKNOWN_DISK', `disk ${JSON.stringify(name)} is not part of this delta`, {
        disk: name,
      });
    return d;
  }

  /** STORE_SUMMARY_MISMATCH unless the sender's counts equal what was staged, disk by disk. */
  private checkSummary(summary: DeltaSummary): void {
    const mismatches: Record<string, unknown>[] = [];
    for (const name of Object.keys(summary?.disks ?? {})) {
      if (!this.disks.some((d) => d.name === name)) mismatches.push({ disk: name, problem: 'unknown disk' });
    }
    for (const d of this.disks) {
      const sent = summary?.disks?.[d.name] ?? { dataBytes: 0, zeroBytes: 0 };
      if (sent.dataBytes !== d.dataBytes || sent.zeroBytes !== d.zeroBytes) {
        mismatches.push({ disk: d.name, sent, staged: { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes } });
      }
    }
    if (!mismatches.length) return;
    throw storeError(
      'STORE_SUMMARY_MISMATCH',
      'integrity',
      'the delta summary does not match what was staged',
      {
        hint: 'Frames were lost or duplicated between sender and store; the delta stays partial and resumes from its last checkpoint.',
        details: { deltaId: this.deltaId, mismatches },
      },
    );
  }

  // ---- durability ----

  /** Makes everything staged durable and records it with these watermarks merged in. */
  private async persist(watermarks: Record<string, number>): Promise<void> {
    await this.syncAll();
    const r = this.record;
    Object.assign(r.watermarks, watermarks);
    for (const d of this.disks) {
      // Writes after this checkpoint ascend from where this attempt got to (or start
      // anywhere on a disk it has not touched yet: the first one lowers the floor).
      const w = r.watermarks[d.name] ?? 0;
      d.floor = d.attemptHi > 0 ? Math.max(w, d.attemptHi) : d.size;
    }
    this.snapshot();
    await writeDeltaRecord(this.ctx, r);
  }

  /** Copies the in-memory staged state into the record (written by the caller). */
  private snapshot(): void {
    const r = this.record;
    this.kind.snapshot(r, this.disks);
    for (const d of this.disks) {
      r.counts[d.name] = { dataBytes: d.dataBytes, zeroBytes: d.zeroBytes };
      r.floors[d.name] = d.floor;
    }
  }

  private async syncAll(): Promise<void> {
    await this.writes.drain();
    await this.writeBehind.settle();
    await this.kind.flush(this.disks);
    const dirty = this.disks.filter((d) => d.dirty);
    await this.kind.sync(dirty);
    for (const d of dirty) {
      await io('delta digests', () => d.sums.sync());
      d.dirty = false;
    }
  }
}
