/**
 * The store contract (docs/design.md §4). Every store (filesystem now, LVM later) implements `Store` and
 * passes test/conformance/store-conformance.ts. The receiver (protocol/) writes through
 * `DeltaWriter`; recovery/ reads manifests and images; nothing else touches store files.
 *
 * Terms: a *generation* is one point-in-time set of all disks of a server, addressed by a stable
 * id and, while it exists, by its sequence number (1 = newest). A *delta* is the set of changed
 * chunks that turns the newest generation into the next one; it is staged durably before any
 * generation is renamed (§4.2).
 */
import type { DigestAlgorithm } from '../core/digest.ts';
import type { NetworkDiskSource } from '../core/domain-xml.ts';
import type { HavenCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { StoreCode } from './errors.ts';
import type {
  JournalDeltaMeta,
  JournalInfo,
  JournalPoint,
  SegmentRecord,
  SegmentWriter,
} from './journal-types.ts';

export type { DigestAlgorithm } from '../core/digest.ts';
export { DIGEST_BYTES } from '../core/digest.ts';
export * from './journal-types.ts';

/** On-disk format version of the store (descriptor, manifests, delta records). */
/**
 * 2: a generation's digest file may hold all-zero entries, which mean "a zero chunk" (ranges never
 * written or sent as zero ranges are holes of the file; issue 13.2). A format 1 store is upgraded
 * when a receiver opens it: every format 1 digest file reads the same under format 2.
 */
export const STORE_FORMAT_VERSION = 2;

/**
 * Digest granularity. Every extent the store accepts starts on a multiple of CHUNK_SIZE and is a
 * whole number of chunks long, except that it may end at the disk's end. 64 KiB equals the
 * default qcow2 cluster and dirty-bitmap granularity, so incremental extents never need widening,
 * and the receiver can compute every chunk digest of a new generation from the bytes it received
 * without reading an image back.
 */
export const CHUNK_SIZE = 64 * 1024;

export type StoreKind = 'fs' | 'lvm' | 'rbd';

/** `haven-store.json` at the store root (or its LVM equivalent). */
export interface StoreDescriptor {
  format: 'haven-store';
  version: number;
  kind: StoreKind;
  id: string;
  createdAt: string;
  chunkSize: number;
  digest: DigestAlgorithm;
  /** An LVM store's volume groups (`vg_dr0,vg_dr1`, `vg_dr/pool0`; docs/store-lvm.md), fixed at creation. */
  volumeGroups?: string;
  /** An rbd store's cluster and pool (`rbd://USER@CLUSTER/POOL`; docs/store-rbd.md), fixed at creation. */
  rbd?: string;
}

export interface DiskSpec {
  /** The `<disk>` part of image names: the source volume's base name (docs/design.md §4.1). */
  name: string;
  /** Virtual size in bytes. */
  size: number;
}

export interface GenerationDisk extends DiskSpec {
  /** Image name without suffix, e.g. `Web01_Web01_0_1`; stays correct only while seq is current. */
  image: string;
}

/** A drill or activation result recorded against a generation ("tested at"). */
export interface TestRecord {
  at: string;
  kind: 'drill' | 'activation';
  result: 'pass' | 'fail';
  /** Seconds from start to the boot marker: the measured RTO. */
  seconds: number;
  detail?: string;
}

/** A drill's record from its outcome: seconds to a tenth, the detail cut to 1,000 characters. */
export function drillRecord(
  startedAt: number,
  r: Pick<TestRecord, 'result' | 'seconds' | 'detail'>,
): TestRecord {
  return {
    at: new Date(startedAt).toISOString(),
    kind: 'drill',
    result: r.result,
    seconds: Math.round(r.seconds * 10) / 10,
    ...(r.detail ? { detail: r.detail.slice(0, 1000) } : {}),
  };
}

export type DeltaMode = 'full' | 'incremental' | 'resync';

export interface Generation {
  /** Stable id (does not change when the generation's sequence number does). */
  id: string;
  /** 1 = newest. */
  seq: number;
  /** Identifier of the source point in time (the libvirt checkpoint name, or another unique id). */
  pointInTime: string;
  /** When the source point in time was taken. */
  takenAt: string;
  committedAt: string;
  mode: DeltaMode;
  job: string;
  disks: GenerationDisk[];
  /** Bytes of changed data that produced this generation from the previous one. */
  deltaBytes: number;
  tests: TestRecord[];
}

/** Per-server manifest: what readers trust (docs/design.md §4.2: "readers trust only manifests"). */
export interface ServerManifest {
  server: string;
  copies: number;
  /** Newest first; generations[i].seq === i + 1. */
  generations: Generation[];
  /** Source domain XML as of the newest generation. */
  sourceDefinition: string;
  /** Boot order at activation: lower first, then by name. Default 100. */
  bootPriority: number;
  /** Set while the server runs at the DR site (activation), cleared by failback. */
  activeAtDr?: ActiveAtDr;
}

/** A server running at the DR site (`haven activate`), as recorded in its manifest. */
export interface ActiveAtDr {
  since: string;
  generationId: string;
  /** The activation went ahead although the primary was known to run the server. */
  force: boolean;
  /** Who activated it (user@host). */
  by?: string;
  /** The libvirt domain the server runs as at the DR site (another name when activated with one). */
  domain?: string;
  /** The checkpoint created on that domain right after it started: where failback's dirty map begins. */
  checkpoint?: string;
  /** libvirt URI of the DR site's hypervisor. */
  uri?: string;
}

/** A server's writer lock held by a long reader (drill, restore, activation); see Store.holdServer. */
export interface ServerHold {
  readonly server: string;
  release(): Promise<void>;
}

/** What the sender needs to know before it plans (answer to opening a delta). */
export interface ResumeState {
  /** Id of the partial delta being continued. */
  deltaId: string;
  /** Point in time the partial delta was taken from. */
  pointInTime: string;
  /**
   * Per disk, the sender position below which everything sent is durable. Only meaningful when
   * the sender's point in time equals `pointInTime`: then it skips everything below.
   */
  watermarks: Record<string, number>;
  /** Bytes already staged (for reporting what a resume saved). */
  stagedBytes: number;
  /**
   * Per disk, what the partial delta holds as received (counted like DeltaSummary). A sender's
   * summary at seal() is these counts plus what it sends in this attempt.
   */
  staged?: Record<string, { dataBytes: number; zeroBytes: number }>;
}

export interface DeltaMeta {
  server: string;
  job: string;
  copies: number;
  disks: DiskSpec[];
  sourceDefinition: string;
  pointInTime: string;
  takenAt: string;
  /**
   * The generation this delta applies to (must be the store's newest), or null when the delta
   * carries whole disks because no generation exists yet.
   */
  baseGenerationId: string | null;
  mode: DeltaMode;
}

export interface DeltaSummary {
  /**
   * Per disk: what the sender sent in this delta (including what an earlier attempt sent): the
   * counts of `ResumeState.staged` plus everything sent since. Bytes sent twice count twice.
   */
  disks: Record<string, { dataBytes: number; zeroBytes: number }>;
}

/**
 * Receives one delta. Writes arrive in ascending offset order per disk, disks in `meta.disks`
 * order; a resumed delta receives only what lies at or above its watermarks (or, for a new point
 * in time, only chunks whose digests differ from `expectedDigests`).
 */
export interface DeltaWriter {
  readonly deltaId: string;
  /** A partial delta of this server existed and is being continued; null for a fresh delta. */
  readonly resumed: ResumeState | null;
  /**
   * Digests (DIGEST_BYTES bytes each, concatenated) of chunks [fromChunk, fromChunk+count) as the
   * target will hold them once this delta, as staged so far, is committed. The sender compares
   * against them in checksum resync and when resuming under a new point in time.
   */
  expectedDigests(disk: string, fromChunk: number, count: number): Promise<Buffer>;
  /**
   * Stages data. `chunkDigests` holds one digest per chunk of `data`, already verified. A caller
   * may call again before the previous write settled (the receiver keeps a few in flight); the
   * writer applies writes in call order, and `data` stays untouched until the promise settles.
   * The caller settles every write before writeZero, checkpoint, seal and close.
   */
  writeData(disk: string, offset: number, data: Buffer, chunkDigests: Buffer): Promise<void>;
  /** Stages a zero range (a hole in the image). */
  writeZero(disk: string, offset: number, length: number): Promise<void>;
  /**
   * Makes everything written so far durable and records these sender positions as the resume
   * watermarks. Returns once both are on stable storage.
   */
  checkpoint(watermarks: Record<string, number>): Promise<void>;
  /**
   * docs/design.md §4.2 step 1: makes the whole delta durable and records it as received. After this
   * returns, the next generation will exist even if the process dies now (roll-forward).
   * Rejects (and keeps the partial for resume) if the summary disagrees with what was staged.
   */
  seal(summary: DeltaSummary): Promise<void>;
  /** docs/design.md §4.2 steps 2–4: rotation, apply, manifest, rename. Only after seal(). */
  commit(): Promise<Generation>;
  /**
   * Stops without sealing; what was checkpointed stays for a later resume. A store may keep
   * more (what arrived since, with the last watermarks); `ResumeState.staged` says what it kept.
   */
  close(): Promise<void>;
  /** Throws the partial delta away (the sender gave up on this point in time). */
  discard(): Promise<void>;
}

export interface VerifyProblem {
  server: string;
  generationId?: string;
  seq?: number;
  disk?: string;
  /**
   * What is wrong: a store code (error-codes.ts says what to do about each), or for a server that
   * cannot be checked at all, the code of the error that stopped it (an I/O error, say).
   */
  code: StoreCode | HavenCode;
  message: string;
  /** The journal segment a journal problem is in (its points from there on are spoiled). */
  pointId?: string;
  /** First chunk indexes that failed, for damaged images. */
  badChunks?: number[];
  /** What to do about it, where the problem has a way forward of its own. */
  hint?: string;
}

/** A server's point-in-time journal as `verify` found it (docs/continuous.md). */
export interface JournalVerdict {
  server: string;
  /** Points in the window, all checked. */
  points: number;
  oldest: string | null;
  newest: string | null;
  /** Ids of the points a damaged piece spoils (the base: every one; segment k: k and after). */
  damaged: string[];
  ok: boolean;
}

export interface VerifyReport {
  ok: boolean;
  checkedServers: number;
  checkedGenerations: number;
  /** Journal points checked (every point in each journal's window). */
  checkedPoints: number;
  checkedBytes: number;
  problems: VerifyProblem[];
  /** Per server with a journal, its verdict. */
  journals: JournalVerdict[];
}

export interface VerifyOptions {
  /** Only this generation (by id); default all generations. */
  generationId?: string;
  /** Re-read images and compare every chunk digest (default true); false checks structure only. */
  readImages?: boolean;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

/** Positional read access to one image, for verify, restore and failback. */
export interface ImageReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** A generation's disk as QEMU reaches it over the network (an rbd store's image). */
export interface NetworkImage {
  /** libvirt's `<source protocol='rbd' name>` with its monitors or configuration file and `<auth>`. */
  source: NetworkDiskSource;
  /** QEMU's filename of the image (qemu-img), with the client's settings. */
  qemuFilename: string;
  /** The libvirt secret the source names by usage, and the cephx key it must hold. */
  secret: { usage: string; key: string };
}

export interface Store {
  readonly kind: StoreKind;
  /** The store's directory (for an LVM or rbd store, its metadata directory), as the operator named it. */
  readonly location: string;
  readonly descriptor: StoreDescriptor;

  /**
   * Rolls forward every interrupted rotation and every sealed but uncommitted delta (docs/design.md
   * §4.2) and removes leftovers no manifest references; only for `server` when given (a receiver
   * does this before telling a sender what the server's newest generation is). Idempotent.
   */
  recover(server?: string): Promise<string[]>;

  /**
   * A hint, after a sender asked about `server`: a delta for it is likely to open soon, while the
   * sender takes its point in time. A store may load or prepare what openDelta needs; it must not
   * change anything stored.
   */
  expectDelta?(server: string): void;

  listServers(): Promise<string[]>;
  manifest(server: string): Promise<ServerManifest | null>;

  /**
   * Whether the server's newest generation holds chunks to be sent again from the source
   * (damage no other generation holds intact; store/common/resend.ts): the next delta should be a
   * checksum resync. Absent: never.
   */
  needsResync?(server: string): Promise<boolean>;

  /**
   * Bytes the store's files take for `server` (allocated blocks of its images and staged deltas;
   * holes are free), or for every server when none is given: what quotas are checked against.
   */
  spaceUsed?(server?: string): Promise<number>;

  /**
   * Opens a delta for a server. Continues the server's partial delta if one exists (see
   * DeltaWriter.resumed); fails with STORE_BASE_MISMATCH when meta.baseGenerationId is not the
   * newest generation, STORE_LOCKED while another writer holds the server, BAD_NAME for names
   * that are not safe, STORE_NAME_COLLISION when an image name would collide with another
   * server's.
   */
  openDelta(meta: DeltaMeta, log?: Logger): Promise<DeltaWriter>;

  /** Where a generation's disk lives: a file path (fs), a block device path (lvm), `rbd:POOL/IMAGE` (rbd). */
  imagePath(server: string, generationId: string, disk: string): Promise<string>;
  /**
   * How QEMU reaches a generation's disk over the network (an rbd store), for the copy-on-write
   * overlays of drills and activations; absent where images are paths.
   */
  networkImage?(server: string, generationId: string, disk: string): Promise<NetworkImage>;
  openImage(server: string, generationId: string, disk: string): Promise<ImageReader>;
  /** Chunk digests of a committed generation, DIGEST_BYTES bytes each. */
  readDigests(
    server: string,
    generationId: string,
    disk: string,
    fromChunk: number,
    count: number,
  ): Promise<Buffer>;

  /** Re-reads images and checks manifests and digests. */
  verify(server?: string, options?: VerifyOptions): Promise<VerifyReport>;

  /** `definitions/<server>.xml`; written once at first replication, never overwritten. */
  definitionPath(server: string): string;

  /**
   * Takes the server's writer lock for a reader that keeps images open for long (a drill booting
   * a generation, a restore copying one): while held, no delta is opened or committed for the
   * server, so no generation is recycled under the reader (writers get STORE_LOCKED, naming
   * `purpose`). An interrupted commit is completed first, unless the server runs at the DR site.
   * Waits up to `waitMs` (default 0) for a writer that holds the lock; STORE_SERVER_NOT_FOUND for
   * a server without a manifest. Optional: recovery/ refuses stores that lack it.
   */
  holdServer?(server: string, purpose: string, options?: { waitMs?: number }): Promise<ServerHold>;

  /**
   * Continuous replication (journal-types.ts, docs/continuous.md): opens a segment of the
   * server's point-in-time journal. Optional: a receiver whose store lacks it does not offer the
   * `journal` feature, and senders refuse to protect continuously to it.
   */
  openSegment?(meta: JournalDeltaMeta, log?: Logger): Promise<SegmentWriter>;
  /** The server's journal as a sender needs to know it; null when the server has none. */
  journalInfo?(server: string): Promise<JournalInfo | null>;
  /** Servers with a point-in-time journal in this store. */
  listJournals?(): Promise<string[]>;
  /** The journal's points, oldest first (the base point, then every consistent segment). */
  journalPoints?(server: string): Promise<JournalPoint[]>;
  /**
   * Writes the disks as they were at a point into new raw images (disk name → path); the
   * journal is only read. Resolves with the point.
   */
  materialisePoint?(
    server: string,
    pointId: string,
    outputs: ReadonlyMap<string, string>,
    signal?: AbortSignal,
  ): Promise<SegmentRecord>;

  /** Recovery bookkeeping, written atomically into the manifest. */
  recordTest(server: string, generationId: string, record: TestRecord): Promise<void>;
  setBootPriority(server: string, priority: number): Promise<void>;
  setActiveAtDr(server: string, active: ServerManifest['activeAtDr'] | null): Promise<void>;

  close(): Promise<void>;
}
