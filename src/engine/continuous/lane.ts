/**
 * A lane: one target of a continuously protected server (docs/continuous.md, "Lanes"). It owns
 * its session to the target, its pending set (every chunk changed since what the target holds,
 * persisted by the protector each cycle: the intent log) and its state:
 *
 * - `connecting`: opening a session, asking the target what it holds, deciding (ids.ts);
 * - `resyncing`: sending a pending set larger than a cycle carries, in parts (segments that end
 *   inconsistent), or comparing digests (checksum resync); the target's last point stays the one
 *   to boot until the part that empties the pending set ends consistent;
 * - `syncing`: caught up, a point every cycle;
 * - `behind`: still shipping when a cycle came (pull-ahead: the guest never waits for a lane;
 *   its pending set grows and it catches up when the link allows);
 * - `disconnected`: the session broke or stalled; it reconnects with back-off;
 * - `refused`: the generation identifiers forbid writing the target (asked again every minute,
 *   so a failback or a discarded DR copy lets it resume by itself);
 * - `stopped`.
 *
 * The pending set is cleared only for what the target acknowledged as appended.
 */
import { asHavenError, type HavenError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { StreamSender } from '../../protocol/index.ts';
import type { GenerationIds, JournalInfo, SegmentRecord } from '../../store/types.ts';
import { CHUNK_SIZE } from '../../store/types.ts';
import { TokenBucket } from '../rate-limit.ts';
import { DiskChunks } from './chunk-set.ts';
import { ContinuousError } from './errors.ts';
import { decide, type SyncDecision } from './ids.ts';
import { shipSegment } from './ship.ts';
import type { Spool } from './spool.ts';

export type LaneState =
  | 'connecting'
  | 'resyncing'
  | 'syncing'
  | 'behind'
  | 'disconnected'
  | 'refused'
  | 'stopped';

export interface LaneTarget {
  /** The target's name (configuration) or URL: how status and logs name the lane. */
  name: string;
  /** Where the store is at the DR site, for the commands a refusal names. */
  storePath: string;
  connect: () => Promise<StreamSender>;
  /** Bytes per second on the wire; 0: unlimited. */
  bandwidth: number;
}

export interface LanePoint {
  id: string;
  pointInTime: string;
  takenAt: string;
  committedAt: string;
}

/** What the protector persists for a lane (catalog), each cycle and after each segment. */
export interface LaneRecord {
  target: string;
  storeId: string | null;
  state: LaneState;
  /** The target lineage the pending set is relative to. */
  baseline: string | null;
  /** The journal segment the pending set is relative to. */
  tail: string | null;
  /** The point in time of a segment sent but not acknowledged. */
  inflight: string | null;
  pending: ReturnType<DiskChunks['toJSON']> | null;
  compare: ReturnType<DiskChunks['toJSON']> | null;
  pendingBytes: number;
  lastPoint: LanePoint | null;
  error: { code: string; message: string } | null;
}

/** A cycle as a lane ships it. */
export interface CycleForLane {
  server: string;
  job: string;
  copies: number;
  windowMs: number;
  pointInTime: string;
  takenAt: Date;
  definition: string;
  disks: ReadonlyArray<{ name: string; size: number }>;
  spool: Spool;
  ids: GenerationIds;
  by: string;
  /** Cut a generation from this point when it ends consistent. */
  cut: boolean;
  /** Read from the disks of the shut-off server (SegmentMeta.sourceOff). */
  sourceOff: boolean;
}

export interface LaneOptions {
  server: string;
  target: LaneTarget;
  disks: ReadonlyArray<{ name: string; size: number }>;
  record: LaneRecord | null;
  /** Bytes a stalled session may sit without progress before it is cut. */
  stallMs: number;
  pieceBytes: number;
  overwrite: boolean;
  log: Logger;
  /** After each acknowledged segment and each state change. */
  onChange: (lane: Lane) => void;
}

const BACKOFF_MIN_MS = 1000;

/** The state a lane shows while a connection attempt is under way (see doConnect). */
export function reconnectState(now: LaneState): LaneState {
  return now === 'refused' || now === 'disconnected' ? now : 'connecting';
}
const BACKOFF_MAX_MS = 30_000;
const REFUSED_RETRY_MS = 60_000;

export class Lane {
  state: LaneState = 'connecting';
  storeId: string | null;
  pending: DiskChunks;
  /** Chunks to compare rather than send (a checksum resync in progress). */
  compare: DiskChunks | null;
  /** Sent in the segment being shipped: back into pending if it fails. */
  private sending: DiskChunks | null = null;
  /** What the next capture must add: every allocated chunk (full copy), every chunk (checksum). */
  needs: 'allocated' | 'all' | null = null;
  baseline: string | null;
  tail: string | null;
  inflight: string | null;
  lastPoint: LanePoint | null;
  error: HavenError | null = null;
  session: StreamSender | null = null;
  shipping: Promise<void> | null = null;
  /** Bytes shipped in total (wire), for the bench and status. */
  wireBytes = 0;
  dataBytes = 0;
  private nextConnectAt = 0;
  private backoffMs = BACKOFF_MIN_MS;
  private connecting: Promise<SyncDecision | null> | null = null;
  private readonly bucket: TokenBucket;
  private readonly log: Logger;

  constructor(private readonly o: LaneOptions) {
    const r = o.record;
    this.log = o.log.child({ target: o.target.name });
    this.bucket = new TokenBucket(o.target.bandwidth);
    this.storeId = r?.storeId ?? null;
    this.baseline = r?.baseline ?? null;
    this.tail = r?.tail ?? null;
    this.inflight = r?.inflight ?? null;
    this.lastPoint = r?.lastPoint ?? null;
    const sizes = o.disks.map((d) => [d.name, d.size] as [string, number]);
    this.pending = new DiskChunks(sizes, CHUNK_SIZE);
    this.compare = null;
    if (r?.pending && sameDisks(r.pending, o.disks)) this.pending = DiskChunks.fromJSON(r.pending);
    else if (r) this.baseline = null; // the disks changed: the record cannot be trusted
    if (r?.compare && sameDisks(r.compare, o.disks)) this.compare = DiskChunks.fromJSON(r.compare);
  }

  get name(): string {
    return this.o.target.name;
  }

  /** Connected, decided and not shipping: may take part in the next cycle. */
  get idle(): boolean {
    return this.session !== null && this.shipping === null && this.state !== 'refused' && this.needs === null;
  }

  get pendingBytes(): number {
    return (this.pending.count() + (this.sending?.count() ?? 0)) * CHUNK_SIZE;
  }

  /** Seconds since the newest point the target acknowledged was taken (null before the first). */
  lagMs(now = Date.now()): number | null {
    return this.lastPoint ? Math.max(0, now - Date.parse(this.lastPoint.takenAt)) : null;
  }

  record(): LaneRecord {
    const pending = this.pending.clone();
    if (this.sending) pending.addAll(this.sending);
    return {
      target: this.name,
      storeId: this.storeId,
      state: this.state,
      baseline: this.baseline,
      tail: this.tail,
      inflight: this.inflight,
      pending: pending.toJSON(),
      compare: this.compare?.toJSON() ?? null,
      pendingBytes: this.pendingBytes,
      lastPoint: this.lastPoint,
      error: this.error ? { code: this.error.code, message: this.error.message } : null,
    };
  }

  /** Whether a (re)connection is due now. */
  wantsConnect(now = Date.now()): boolean {
    return (
      this.session === null &&
      this.connecting === null &&
      this.state !== 'stopped' &&
      now >= this.nextConnectAt
    );
  }

  /**
   * Opens a session, asks the target what it holds and decides what the lane owes it. Resolves
   * with the decision (null when the connection failed); the protector adopts identifiers a
   * decision carries.
   */
  connect(primary: GenerationIds | null): Promise<SyncDecision | null> {
    this.connecting ??= this.doConnect(primary).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async doConnect(primary: GenerationIds | null): Promise<SyncDecision | null> {
    // A lane that lost its target stays `disconnected` (refused: `refused`) while it tries again:
    // over a dead link an attempt lasts until the transport's connect timeout (30 s for TLS), and
    // `connecting` for all that time would hide from status and alerts that the link is down.
    // `connecting` is the first connection only.
    this.setState(reconnectState(this.state));
    let sender: StreamSender | undefined;
    try {
      sender = await this.o.target.connect();
      if (!sender.supports('journal')) throw this.unsupported();
      if (sender.chunkSize !== CHUNK_SIZE) throw this.chunkSizeError(sender.chunkSize);
      const { newest, journal } = await sender.queryJournal(this.o.server);
      const decision = decide({
        primary,
        lane:
          this.storeId === sender.store.id
            ? { generationId: this.baseline, tail: this.tail, inflight: this.inflight }
            : null,
        journal,
        newestGeneration: newest?.pointInTime ?? null,
        overwrite: this.o.overwrite,
      });
      if (decision.kind === 'refuse') throw this.refusal(decision.code, decision.reason, journal, primary);
      this.apply(decision, sender.store.id, journal);
      this.session = sender;
      sender = undefined;
      this.error = null;
      this.backoffMs = BACKOFF_MIN_MS;
      this.log.info('connected', {
        decision: decision.kind,
        tail: this.tail,
        pendingBytes: this.pendingBytes,
      });
      return decision;
    } catch (e) {
      let err = asHavenError(e);
      if (err.code === 'STORE_ACTIVE_AT_DR') err = this.activeAtDr(err, primary);
      this.error = err;
      if (err.kind === 'refused' || err.code.startsWith('CONTINUOUS_')) {
        this.nextConnectAt = Date.now() + REFUSED_RETRY_MS;
        this.setState('refused');
        this.log.error(`refused: ${err.message}`, { code: err.code });
      } else {
        this.nextConnectAt = Date.now() + this.backoffMs;
        this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
        this.setState('disconnected');
        this.log.warn(`cannot reach the target: ${err.message}`, { code: err.code });
      }
      return null;
    } finally {
      await sender?.close().catch(() => {});
    }
  }

  private apply(d: SyncDecision, storeId: string, journal: JournalInfo | null): void {
    this.storeId = storeId;
    this.baseline = journal?.ids?.current ?? null;
    this.tail = journal?.tail?.id ?? null;
    this.inflight = null;
    if (journal?.newest) this.lastPoint = pointOf(journal.newest);
    switch (d.kind) {
      case 'bitmap':
        this.setState(this.pending.isEmpty() ? 'syncing' : 'resyncing');
        return;
      case 'full':
        this.needs = 'allocated';
        this.compare = null;
        break;
      default:
        // checksum, or a periodic store's generation: compare every chunk with what it holds.
        this.needs = 'all';
        break;
    }
    this.setState('resyncing');
  }

  /** Folds a cycle's changes into the pending set. */
  addDirty(dirty: DiskChunks): void {
    this.pending.addAll(dirty);
  }

  /** A full copy's or a checksum resync's chunks, from the capture (see `needs`). */
  fill(chunks: DiskChunks, compare: boolean): void {
    this.pending.addAll(chunks);
    this.compare = compare ? chunks.clone() : null;
    this.needs = null;
  }

  /** The part of the pending set the next segment carries (at most `maxChunks`). */
  plan(maxChunks: number): { part: DiskChunks; consistent: boolean } {
    const part = this.pending.head(maxChunks);
    return { part, consistent: part.count() === this.pending.count() };
  }

  /** Ships `part` of `cycle` as one segment, in the background. */
  ship(cycle: CycleForLane, part: DiskChunks, consistent: boolean): void {
    const sender = this.session;
    if (!sender || this.shipping) throw new Error(`lane ${this.name} cannot ship now`);
    this.pending.removeAll(part);
    this.sending = part;
    this.inflight = cycle.pointInTime;
    if (!consistent) this.setState('resyncing');
    const spool = cycle.spool.retain();
    this.shipping = this.shipOnce(sender, cycle, part, consistent).finally(async () => {
      await spool.release();
      this.shipping = null;
    });
  }

  private async shipOnce(
    sender: StreamSender,
    cycle: CycleForLane,
    part: DiskChunks,
    consistent: boolean,
  ): Promise<void> {
    let lastMove = Date.now();
    let seen = sender.bytesOnWire + sender.bytesReceived;
    const watchdog = setInterval(() => {
      const now = sender.bytesOnWire + sender.bytesReceived;
      if (now !== seen) {
        seen = now;
        lastMove = Date.now();
      } else if (Date.now() - lastMove > this.o.stallMs) {
        sender.cut(`nothing moved on the link for ${Math.round(this.o.stallMs / 1000)} s`);
      }
    }, 1000);
    watchdog.unref();
    try {
      const r = await shipSegment({
        sender,
        meta: {
          server: cycle.server,
          job: cycle.job,
          copies: cycle.copies,
          disks: [...cycle.disks],
          sourceDefinition: cycle.definition,
          pointInTime: cycle.pointInTime,
          takenAt: cycle.takenAt.toISOString(),
          baseGenerationId: null,
          mode: this.compare ? 'resync' : 'incremental',
          journal: {
            base: this.tail,
            generationId: cycle.ids.current,
            ids: cycle.ids,
            windowMs: cycle.windowMs,
            by: cycle.by,
            ...(cycle.cut && consistent ? { cut: true } : {}),
            ...(cycle.sourceOff ? { sourceOff: true } : {}),
          },
        },
        spool: cycle.spool,
        part,
        compare: this.compare,
        consistent,
        bucket: this.bucket,
        pieceBytes: this.o.pieceBytes,
      });
      this.acknowledged(r.segment, part);
      this.wireBytes += r.wireBytes;
      this.dataBytes += r.dataBytes;
    } catch (e) {
      this.failed(asHavenError(e), part);
    } finally {
      clearInterval(watchdog);
    }
  }

  private acknowledged(segment: SegmentRecord, part: DiskChunks): void {
    this.sending = null;
    this.compare?.removeAll(part);
    if (this.compare?.isEmpty()) this.compare = null;
    this.tail = segment.id;
    this.inflight = null;
    this.baseline = segment.generationId;
    if (segment.consistent) this.lastPoint = pointOf(segment);
    // A consistent segment makes the target equal the source at its point: caught up with it.
    this.setState(segment.consistent ? 'syncing' : 'resyncing');
    this.o.onChange(this);
  }

  private failed(err: HavenError, part: DiskChunks): void {
    this.pending.addAll(part);
    this.sending = null;
    this.error = err;
    const session = this.session;
    this.session = null;
    void session?.close().catch(() => {});
    this.nextConnectAt = Date.now() + this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.log.warn(`segment not delivered: ${err.message}`, { code: err.code });
    this.setState('disconnected');
  }

  /** Marks the lane as skipped by a cycle while it ships (pull-ahead). */
  skipped(): void {
    if (this.shipping && this.state !== 'behind') this.setState('behind');
  }

  async stop(): Promise<void> {
    await this.shipping?.catch(() => {});
    this.setState('stopped');
    const s = this.session;
    this.session = null;
    await s?.close().catch(() => {});
  }

  private setState(s: LaneState): void {
    if (this.state === s) return;
    this.state = s;
    this.o.onChange(this);
  }

  /** The store refused because the server runs at the DR site: name both sides. */
  private activeAtDr(err: HavenError, primary: GenerationIds | null): ContinuousError {
    const a = (err.details?.activeAtDr ?? {}) as { since?: string; by?: string; generationId?: string };
    return refusalError('CONTINUOUS_DR_NEWER', {
      server: this.o.server,
      target: this.name,
      storePath: this.o.target.storePath,
      reason: `the server runs at the DR site since ${a.since ?? 'an unknown time'}, activated${a.by ? ` by ${a.by}` : ''} and written there`,
      dr: { side: 'dr', ...(a.by ? { by: a.by } : {}), at: a.since ?? 'unknown' },
      primaryLastPoint: this.lastPoint,
      ids: { primary, activatedGeneration: a.generationId ?? null },
    });
  }

  private unsupported(): ContinuousError {
    return new ContinuousError(
      'CONTINUOUS_TARGET_UNSUPPORTED',
      `the receiver of ${this.name} keeps no point-in-time journal (an older Haven)`,
      {
        kind: 'unavailable',
        hint: 'Upgrade Haven on the target host; meanwhile protect this server with scheduled runs (`haven protect` without --continuous).',
        details: { target: this.name },
      },
    );
  }

  private chunkSizeError(size: number): ContinuousError {
    return new ContinuousError(
      'CONTINUOUS_CHUNK_SIZE',
      `the store of ${this.name} uses ${size}-byte chunks`,
      {
        kind: 'unavailable',
        hint: 'Continuous protection needs a store with 64 KiB chunks (every store Haven creates).',
        details: { target: this.name, chunkSize: size },
      },
    );
  }

  private refusal(
    code: 'CONTINUOUS_DR_NEWER' | 'CONTINUOUS_SPLIT_BRAIN' | 'CONTINUOUS_UNRELATED',
    reason: string,
    journal: JournalInfo | null,
    primary: GenerationIds | null,
  ): ContinuousError {
    return refusalError(code, {
      server: this.o.server,
      target: this.name,
      storePath: this.o.target.storePath,
      reason,
      dr: journal?.ids?.lastWriter ?? null,
      primaryLastPoint: this.lastPoint,
      ids: { primary, target: journal?.ids ?? null },
    });
  }
}

/**
 * A refusal that names both sides (DataKeeper's last owner and previous source) and the exact
 * commands that resolve it.
 */
export function refusalError(
  code: 'CONTINUOUS_DR_NEWER' | 'CONTINUOUS_SPLIT_BRAIN' | 'CONTINUOUS_UNRELATED',
  f: {
    server: string;
    target: string;
    storePath: string;
    reason: string;
    dr: { side: string; by?: string; at: string } | null;
    primaryLastPoint: LanePoint | null;
    ids?: Record<string, unknown>;
  },
): ContinuousError {
  const drSide = f.dr
    ? `last written at the ${f.dr.side === 'dr' ? 'DR site' : 'primary'}${f.dr.by ? ` by ${f.dr.by}` : ''} at ${f.dr.at}`
    : 'last writer unknown';
  const primarySide = f.primaryLastPoint
    ? `this primary's newest point there was taken at ${f.primaryLastPoint.takenAt}`
    : 'this primary has delivered no point there';
  const failback = `haven failback ${f.server} --store ${f.storePath} --to <this host>`;
  const discard = `haven deactivate ${f.server} --store ${f.storePath} --destroy`;
  const overwrite = `haven protect ${f.server} --to ${f.target} --continuous --overwrite-target`;
  const hint =
    code === 'CONTINUOUS_UNRELATED'
      ? `If the target's copy is not this server's, overwrite it explicitly: \`${overwrite}\`; otherwise point the job at another store.`
      : `Keep the DR site's writes: run \`${failback}\` at the DR site (the primary's writes since the split are lost). Discard them: run \`${discard}\` at the DR site. Replication then resumes by itself.`;
  return new ContinuousError(
    code,
    `${f.server} → ${f.target}: refused, ${f.reason}; the target was ${drSide}; ${primarySide}`,
    {
      kind: code === 'CONTINUOUS_DR_NEWER' ? 'refused' : 'conflict',
      hint,
      details: {
        server: f.server,
        target: f.target,
        lastWriter: f.dr,
        primaryLastPoint: f.primaryLastPoint,
        commands: code === 'CONTINUOUS_UNRELATED' ? { overwrite } : { failback, discard },
        ...(f.ids ? { ids: f.ids } : {}),
      },
    },
  );
}

function pointOf(p: { id: string; pointInTime: string; takenAt: string; committedAt: string }): LanePoint {
  return { id: p.id, pointInTime: p.pointInTime, takenAt: p.takenAt, committedAt: p.committedAt };
}

function sameDisks(
  json: Record<string, { chunks: number }>,
  disks: ReadonlyArray<{ name: string; size: number }>,
): boolean {
  const names = Object.keys(json);
  return (
    names.length === disks.length &&
    disks.every((d) => json[d.name]?.chunks === Math.ceil(d.size / CHUNK_SIZE))
  );
}
