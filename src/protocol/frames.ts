/**
 * The frames of the Haven replication stream, version 1 (docs/stream-protocol.md is the
 * specification; docs/design.md §5 the requirements). This module holds only definitions: type codes,
 * limits and the shape of each frame's body. codec.ts turns them into bytes and back.
 */
import type { DigestAlgorithm } from '../core/digest.ts';
import type { HostFileMeta, HostGeneration, HostManifest } from '../store/host/types.ts';
import type {
  DeltaMeta,
  DeltaSummary,
  Generation,
  JournalInfo,
  ResumeState,
  SegmentMeta,
  SegmentRecord,
  StoreDescriptor,
} from '../store/types.ts';

/** First two bytes of every frame: "HV". */
export const MAGIC = 0x4856;
export const HEADER_BYTES = 8;
export const PROTOCOL_NAME = 'haven-stream';
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** Largest uncompressed data extent in one EXTENT frame (and its largest payload). */
export const MAX_EXTENT_BYTES = 4 * 1024 * 1024;
/** Largest body of a JSON control frame (OPEN carries the source domain XML). */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;
/** Largest digest request: 65536 chunks of 64 KiB = 4 GiB of disk, a 2 MiB answer. */
export const MAX_DIGESTS_PER_REQUEST = 65536;
/** Disks per server (OPEN), bounded so that STAGED and per-disk tables stay small. */
export const MAX_DISKS = 256;

/**
 * Features a peer may offer beyond version 1 (HELLO and WELCOME `features`; §4.1). A sender uses
 * one only when WELCOME lists it: an older receiver ignores the key and lists none.
 * - `journal`: journal segments (continuous replication, §5.5).
 * - `host-files`: hosts' rescue media and backup archives (HOST_QUERY, FILE_*; §4.7).
 */
export const FEATURES = ['journal', 'host-files'] as const;
export type Feature = (typeof FEATURES)[number];

/** Bytes of an EXTENT body before the digest: disk, kind, encoding, offset, length. */
export const EXTENT_FIXED_BYTES = 20;
/** Bytes of a data EXTENT body before the payload. */
export const EXTENT_DATA_HEADER_BYTES = EXTENT_FIXED_BYTES + 32;
/** Bytes of a FILE_DATA body before the payload: the u64 offset. */
export const FILE_DATA_HEADER_BYTES = 8;

export const FRAME = {
  HELLO: 0x01,
  WELCOME: 0x02,
  QUERY: 0x03,
  QUERY_REPLY: 0x04,
  OPEN: 0x05,
  OPENED: 0x06,
  DIGESTS_REQ: 0x07,
  DIGESTS: 0x08,
  EXTENT: 0x09,
  MARK: 0x0a,
  STAGED: 0x0b,
  END_DELTA: 0x0c,
  DELTA_DURABLE: 0x0d,
  COMMIT: 0x0e,
  COMMITTED: 0x0f,
  ABORT: 0x10,
  ABORTED: 0x11,
  ERROR: 0x12,
  BYE: 0x13,
  // Host files (rescue media, backup archives): §4.7, with the `host-files` feature.
  HOST_QUERY: 0x14,
  HOST_REPLY: 0x15,
  FILE_OPEN: 0x16,
  FILE_OPENED: 0x17,
  FILE_DATA: 0x18,
  FILE_END: 0x19,
  FILE_COMMITTED: 0x1a,
} as const;

/** The feature that carries host files (FEATURES). */
export const FEATURE_HOST_FILES: Feature = 'host-files';

export type FrameName = keyof typeof FRAME;
export const FRAME_NAMES = Object.keys(FRAME) as FrameName[];
const NAME_BY_CODE = new Map<number, FrameName>(FRAME_NAMES.map((n) => [FRAME[n], n]));

export function frameName(code: number): FrameName | undefined {
  return NAME_BY_CODE.get(code);
}

/** Who may send each frame. */
export const DIRECTION: Record<FrameName, 'sender' | 'receiver' | 'both'> = {
  HELLO: 'sender',
  WELCOME: 'receiver',
  QUERY: 'sender',
  QUERY_REPLY: 'receiver',
  OPEN: 'sender',
  OPENED: 'receiver',
  DIGESTS_REQ: 'sender',
  DIGESTS: 'receiver',
  EXTENT: 'sender',
  MARK: 'sender',
  STAGED: 'receiver',
  END_DELTA: 'sender',
  DELTA_DURABLE: 'receiver',
  COMMIT: 'sender',
  COMMITTED: 'receiver',
  ABORT: 'sender',
  ABORTED: 'receiver',
  ERROR: 'both',
  BYE: 'both',
  HOST_QUERY: 'sender',
  HOST_REPLY: 'receiver',
  FILE_OPEN: 'sender',
  FILE_OPENED: 'receiver',
  FILE_DATA: 'sender',
  FILE_END: 'sender',
  FILE_COMMITTED: 'receiver',
};

/** Body length bounds per frame, checked from the header before any body byte is buffered. */
export const BODY_LIMITS: Record<FrameName, { min: number; max: number }> = {
  HELLO: { min: 2, max: MAX_JSON_BYTES },
  WELCOME: { min: 2, max: MAX_JSON_BYTES },
  QUERY: { min: 2, max: MAX_JSON_BYTES },
  QUERY_REPLY: { min: 2, max: MAX_JSON_BYTES },
  OPEN: { min: 2, max: MAX_JSON_BYTES },
  OPENED: { min: 2, max: MAX_JSON_BYTES },
  DIGESTS_REQ: { min: 16, max: 16 },
  DIGESTS: { min: 8, max: 8 + MAX_DIGESTS_PER_REQUEST * 32 },
  EXTENT: { min: EXTENT_FIXED_BYTES, max: EXTENT_DATA_HEADER_BYTES + MAX_EXTENT_BYTES },
  MARK: { min: 12, max: 12 },
  STAGED: { min: 4, max: 4 + MAX_DISKS * 8 },
  END_DELTA: { min: 2, max: MAX_JSON_BYTES },
  DELTA_DURABLE: { min: 2, max: MAX_JSON_BYTES },
  COMMIT: { min: 0, max: 0 },
  COMMITTED: { min: 2, max: MAX_JSON_BYTES },
  ABORT: { min: 1, max: 1 },
  ABORTED: { min: 0, max: 0 },
  ERROR: { min: 2, max: MAX_JSON_BYTES },
  BYE: { min: 0, max: 0 },
  HOST_QUERY: { min: 2, max: MAX_JSON_BYTES },
  HOST_REPLY: { min: 2, max: MAX_JSON_BYTES },
  FILE_OPEN: { min: 2, max: MAX_JSON_BYTES },
  FILE_OPENED: { min: 2, max: MAX_JSON_BYTES },
  FILE_DATA: { min: FILE_DATA_HEADER_BYTES + 1, max: FILE_DATA_HEADER_BYTES + MAX_EXTENT_BYTES },
  FILE_END: { min: 2, max: MAX_JSON_BYTES },
  FILE_COMMITTED: { min: 2, max: MAX_JSON_BYTES },
};

export type CompressionAlgorithm = 'zstd' | 'none';

export interface Hello {
  protocol: typeof PROTOCOL_NAME;
  /** Protocol versions the sender speaks. */
  versions: number[];
  /** "haven/<version>" of the sender, for logs. */
  software: string;
  /** Payload encodings the sender may use, preferred first. */
  compression: CompressionAlgorithm[];
  /** zstd level the sender compresses with (informational). */
  compressionLevel?: number;
  /** Digest algorithms the sender can compute; the receiver picks its store's. */
  digests: DigestAlgorithm[];
  /** Shared secret when the receiver requires one (TLS listener with --token-file). */
  token?: string;
  /** Features the sender can use (FEATURES); absent from older senders, unknown ones ignored. */
  features?: string[];
}

/**
 * Space where the store keeps its images (the filesystem of an fs store), as the receiver saw it
 * when it answered: the primary side knows nothing else of a target's capacity (§4.1).
 */
export interface StoreCapacity {
  totalBytes: number;
  /** What an unprivileged writer may still use (statfs f_bavail). */
  freeBytes: number;
}

export interface Welcome {
  version: number;
  software: string;
  /** Encodings the receiver accepts (a subset of what HELLO offered; always includes none). */
  compression: CompressionAlgorithm[];
  /** The store's digest algorithm: every frame digest uses it. */
  digest: DigestAlgorithm;
  store: StoreDescriptor;
  maxExtentBytes: number;
  maxDigestsPerRequest: number;
  /** Features both sides can use (offered in HELLO and supported here); absent: none. */
  features?: string[];
  /** Optional (receivers of Haven 0.1.0 and stores that cannot tell send none). */
  capacity?: StoreCapacity;
}

export interface Query {
  server: string;
  /** Also tell the server's journal (feature `journal`). */
  journal?: boolean;
}

export interface QueryReply {
  server: string;
  newest: Generation | null;
  /** Asked for with `journal`: the server's journal, null when it has none. */
  journal?: JournalInfo | null;
  /** Optional: every generation of the server, newest first (its restore points, §4.1). */
  generations?: Generation[];
  capacity?: StoreCapacity;
  /**
   * Optional: the newest generation holds damaged chunks only the source can repair; the next
   * delta should be a checksum resync (its expected digests for them match nothing, §4.2).
   */
  resync?: boolean;
}

export interface Opened {
  deltaId: string;
  newest: Generation | null;
  resume: ResumeState | null;
  /** Optional: as QUERY_REPLY's `resync`, for this delta's base. */
  resync?: boolean;
}

export interface DigestsRequest {
  /** Sender-chosen id, echoed in the answer. */
  id: number;
  disk: number;
  fromChunk: number;
  count: number;
}

export interface DigestsReply {
  id: number;
  /** count × 32 bytes. */
  digests: Buffer;
}

export type ExtentEncoding = 'raw' | 'zstd';

export interface ExtentFrame {
  disk: number;
  kind: 'data' | 'zero';
  encoding: ExtentEncoding;
  offset: number;
  /** Uncompressed length. */
  length: number;
  /** Data only: rootDigest over the chunk digests of the uncompressed bytes. */
  digest?: Buffer;
  /** Data only: the bytes as encoded. */
  payload?: Buffer;
}

export interface Mark {
  disk: number;
  offset: number;
}

export interface Staged {
  /** Durable sender positions, one per disk in OPEN order. */
  watermarks: number[];
}

/** What this connection sent of the delta (the receiver counts the same and compares). */
export interface AttemptTotals {
  disks: Record<string, { frames: number; dataBytes: number; zeroBytes: number }>;
  /** Hex digest over every EXTENT record of this connection (docs/stream-protocol.md §5.4). */
  digest: string;
}

export interface EndDelta {
  /** Totals of the whole delta, including earlier attempts: checked by DeltaWriter.seal(). */
  summary: DeltaSummary;
  attempt: AttemptTotals;
  /**
   * Optional, per disk: hex rootDigest over the chunk digests of the whole disk as the source
   * holds it. Sent when the sender read every chunk (full copy, checksum resync); the receiver
   * checks the generation-to-be against it before sealing.
   */
  imageDigests?: Record<string, string>;
  /** Journal segments only: the segment ends consistent (a point; §5.5). */
  consistent?: boolean;
}

export interface DeltaDurable {
  deltaId: string;
}

export interface Committed {
  /** The new generation; absent when a journal segment was appended. */
  generation?: Generation;
  /** The journal segment appended (§5.5). */
  segment?: SegmentRecord;
  /** Optional: the store's space after the commit. */
  capacity?: StoreCapacity;
}

export interface Abort {
  /** true: throw the partial delta away; false: keep what was staged for a later resume. */
  discard: boolean;
}

export interface ErrorBody {
  code: string;
  kind: string;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
  /** The session cannot continue: the sender of this frame closes the connection after it. */
  fatal: boolean;
}

export interface HostQuery {
  host: string;
}

export interface HostReply {
  host: string;
  manifest: HostManifest | null;
}

export interface FileOpened {
  fileId: string;
}

export interface FileData {
  /** Where the payload starts in the file: every byte before it has been sent. */
  offset: number;
  payload: Buffer;
}

export interface FileEnd {
  size: number;
  /** Hex digest of the whole file (the session's algorithm). */
  digest: string;
}

export interface FileCommitted {
  generation: HostGeneration;
}

export interface FrameBodies {
  HELLO: Hello;
  WELCOME: Welcome;
  QUERY: Query;
  QUERY_REPLY: QueryReply;
  /** A journal segment when `journal` is set (feature `journal`). */
  OPEN: DeltaMeta & { journal?: SegmentMeta };
  OPENED: Opened;
  DIGESTS_REQ: DigestsRequest;
  DIGESTS: DigestsReply;
  EXTENT: ExtentFrame;
  MARK: Mark;
  STAGED: Staged;
  END_DELTA: EndDelta;
  DELTA_DURABLE: DeltaDurable;
  COMMIT: null;
  COMMITTED: Committed;
  ABORT: Abort;
  ABORTED: null;
  ERROR: ErrorBody;
  BYE: null;
  HOST_QUERY: HostQuery;
  HOST_REPLY: HostReply;
  FILE_OPEN: HostFileMeta;
  FILE_OPENED: FileOpened;
  FILE_DATA: FileData;
  FILE_END: FileEnd;
  FILE_COMMITTED: FileCommitted;
}

export type Frame = { [K in FrameName]: { type: K; body: FrameBodies[K] } }[FrameName];
export type FrameOf<K extends FrameName> = { type: K; body: FrameBodies[K] };
