/**
 * The point-in-time journal's part of the store contract (issue 15, docs/continuous.md). Beside
 * its rotating generations, a server replicated continuously has a *journal*: a base image per
 * disk (the state at the oldest point of the window) and an ordered list of *segments*, each a
 * durable staged delta (the store's staged-delta format) applied on top of the previous ones. A
 * segment that ends *consistent* is a *point*: the disks as the source held them at its point in
 * time, bootable and verifiable. Segments of a resync sent in parts end inconsistent; the last
 * consistent point stays the one to boot until the resync completes.
 *
 * Generation identifiers (docs/design.md §7, DRBD's algorithm) say which lineage of writes the journal's
 * data belongs to; the sender decides from them, and from what the store says here, whether a
 * bitmap resync is right, a checksum resync is needed, or the run must refuse.
 */
import type { DeltaMeta, DeltaWriter, DiskSpec } from './types.ts';

/** One segment as the journal records it. */
export interface SegmentRecord {
  /** Stable id (a point's id when consistent). */
  id: string;
  /** 1, 2, 3, … in append order; never reused. */
  seq: number;
  /** The source's point in time (the libvirt checkpoint of the cycle that read it). */
  pointInTime: string;
  takenAt: string;
  committedAt: string;
  /** The disks after this segment equal the source at `pointInTime`. */
  consistent: boolean;
  /** Generation identifier of the source lineage this segment carries. */
  generationId: string;
  disks: DiskSpec[];
  dataBytes: number;
  zeroBytes: number;
  /**
   * The source server was shut off when this point was taken: its disks were quiescent, so the
   * point holds every write the server made before it stopped (what `haven switchover` waits
   * for). Set only on consistent segments.
   */
  sourceOff?: boolean;
}

/** A consistent segment boundary: what `--at` selects. */
export type JournalPoint = Omit<SegmentRecord, 'consistent' | 'dataBytes' | 'zeroBytes'>;

/** Who wrote a replica last (DataKeeper's last owner and previous source). */
export interface LastWriter {
  side: 'primary' | 'dr';
  /** user@host, or the primary's host name as the sender reported it. */
  by?: string;
  at: string;
}

/**
 * DRBD-style generation identifiers of what a replica holds: `current` names the lineage of its
 * data, `history` the lineages it descends from (newest first, bounded).
 */
export interface GenerationIds {
  current: string;
  history: string[];
  lastWriter?: LastWriter;
}

/** What a store tells a sender about a server's journal (answer to QUERY with `journal`). */
export interface JournalInfo {
  /** How long points are kept. */
  windowMs: number;
  /** Segments in the journal (points and the parts of a resync). */
  segments: number;
  points: number;
  /** The oldest point still in the window (the journal base's). */
  oldest: JournalPoint | null;
  /** The newest consistent point. */
  newest: JournalPoint | null;
  /** The newest segment, consistent or not: what the next segment must follow. */
  tail: Pick<SegmentRecord, 'id' | 'seq' | 'pointInTime' | 'consistent' | 'generationId'> | null;
  /** The identifiers of the journal's data; null before the first segment. */
  ids: GenerationIds | null;
  /**
   * Set when a copy that ran at the DR site was failed back to the primary (`haven failback`):
   * the primary's disks now hold that lineage, while the journal still holds the older one.
   */
  failedBack?: { generationId: string; at: string } | undefined;
}

/** The part of an OPEN that makes a delta a journal segment. */
export interface SegmentMeta {
  /** The segment this one follows (the journal's tail); null for a journal's first segment. */
  base: string | null;
  /** The source's generation identifier: the lineage the segment carries. */
  generationId: string;
  /** The identifiers the journal takes once this segment is appended consistent. */
  ids: GenerationIds;
  /** Points older than this are folded into the base (the window). */
  windowMs: number;
  /** Who sends (the primary's host), recorded as the last writer. */
  by?: string;
  /**
   * Cut a generation (`_1`) from this point once the segment is appended consistent: the
   * rotating generations keep the seed's naming on the job's schedule.
   */
  cut?: boolean;
  /** The segment was read from the disks of a shut-off server (SegmentRecord.sourceOff). */
  sourceOff?: boolean;
}

export interface JournalDeltaMeta extends DeltaMeta {
  journal: SegmentMeta;
}

/**
 * Receives one segment: the DeltaWriter path up to seal(), then `append()` records it in the
 * journal (atomic, durable) instead of a rotation commit.
 */
export interface SegmentWriter extends Omit<DeltaWriter, 'commit'> {
  /** Whether the segment ends consistent; set before seal(). */
  setConsistent(consistent: boolean): void;
  /** After seal(): records the segment in the journal and returns it. */
  append(): Promise<SegmentRecord>;
}
