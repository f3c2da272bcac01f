/**
 * Generation identifiers (docs/design.md §7), after DRBD's (anvil-drbd-datakeeper.md §2): every replica
 * says which lineage of writes its data belongs to (`current`) and which lineages it descends
 * from (`history`). A lineage is minted when a side starts writing on its own: a server's first
 * continuous protection, an activation at the DR site, the end of a switchover. When a lane
 * connects, the primary's identifiers, the lane's record (what its pending set is relative to)
 * and the target's journal decide, from these alone, what happens next (`decide`):
 *
 * | what the target holds                                   | decision                          |
 * | ------------------------------------------------------- | --------------------------------- |
 * | nothing of the server                                   | full copy                         |
 * | generations but no journal                              | from that generation's checkpoint, else checksum |
 * | our lineage, and the lane's bitmap is relative to it    | bitmap resync (the normal case)   |
 * | our lineage, bitmap not relative to it (catalog lost)   | checksum resync                   |
 * | an older lineage of ours (in our history)               | checksum resync                   |
 * | a lineage failed back to us (`haven failback`)          | adopt it, checksum resync         |
 * | a newer lineage that descends from ours (DR wrote)      | refuse: CONTINUOUS_DR_NEWER       |
 * | diverged lineages with a common ancestor                | refuse: CONTINUOUS_SPLIT_BRAIN    |
 * | nothing shared                                          | refuse: CONTINUOUS_UNRELATED      |
 *
 * A server that runs at the DR site is refused before any of this (STORE_ACTIVE_AT_DR, made
 * into CONTINUOUS_DR_NEWER by the lane). A refusal is lifted only by the operator's explicit
 * choice (`--overwrite-target`), never automatically. A primary that knows no identifiers (a
 * transient domain restarted, its metadata lost) adopts the target's with a checksum resync: it
 * can prove nothing, so it compares everything.
 */
import { randomBytes } from 'node:crypto';
import type { GenerationIds, JournalInfo } from '../../store/types.ts';

/** How many lineages a replica remembers (DRBD keeps 32). */
export const HISTORY_LENGTH = 32;

export function mintGenerationId(): string {
  return randomBytes(8).toString('hex');
}

/** New identifiers for a side that starts writing on its own: the old current goes into history. */
export function nextGeneration(
  ids: GenerationIds | null,
  writer?: GenerationIds['lastWriter'],
): GenerationIds {
  const history = ids ? [ids.current, ...ids.history].slice(0, HISTORY_LENGTH) : [];
  return { current: mintGenerationId(), history, ...(writer ? { lastWriter: writer } : {}) };
}

/** Identifiers that adopt `current` (a sync target taking its source's lineage). */
export function adopt(ids: GenerationIds | null, current: string): GenerationIds {
  if (ids?.current === current) return ids;
  const history = ids ? [ids.current, ...ids.history.filter((h) => h !== current)] : [];
  return { current, history: history.slice(0, HISTORY_LENGTH) };
}

export type RefusalCode = 'CONTINUOUS_DR_NEWER' | 'CONTINUOUS_SPLIT_BRAIN' | 'CONTINUOUS_UNRELATED';

export type SyncDecision =
  | { kind: 'full'; ids: GenerationIds }
  | { kind: 'bitmap'; ids: GenerationIds }
  | { kind: 'checkpoint'; ids: GenerationIds; checkpoint: string }
  | { kind: 'checksum'; ids: GenerationIds; reason: string }
  | { kind: 'refuse'; code: RefusalCode; reason: string };

/** What the lane recorded: what its pending set is relative to. */
export interface LaneBaseline {
  /** The target lineage the pending set is relative to. */
  generationId: string | null;
  /** The journal segment the pending set is relative to (the tail when it was last acked). */
  tail: string | null;
  /**
   * The point in time of a segment sent but not acknowledged: if the target appended it, the
   * pending set (which still holds its chunks) is a superset of what the target lacks.
   */
  inflight: string | null;
}

export interface DecideInput {
  /** The primary's identifiers; null when it has none (never protected, or lost). */
  primary: GenerationIds | null;
  lane: LaneBaseline | null;
  /** The target's journal for the server; null when it has none. */
  journal: JournalInfo | null;
  /** The point in time of the target's newest generation, when it has generations. */
  newestGeneration: string | null;
  /** The operator chose to overwrite whatever the target holds (`--overwrite-target`). */
  overwrite?: boolean;
}

export function decide(i: DecideInput): SyncDecision {
  const target = i.journal?.ids ?? null;
  if (!target) {
    const ids = i.primary ?? nextGeneration(null);
    if (i.newestGeneration) return { kind: 'checkpoint', ids, checkpoint: i.newestGeneration };
    return { kind: 'full', ids };
  }
  if (!i.primary) {
    return {
      kind: 'checksum',
      ids: adopt(null, target.current),
      reason: 'this host knows no identifiers for the server',
    };
  }
  const failedBack = i.journal?.failedBack;
  if (failedBack && failedBack.generationId !== i.primary.current) {
    return {
      kind: 'checksum',
      ids: adopt(i.primary, failedBack.generationId),
      reason: `the DR copy was failed back to this host at ${failedBack.at}`,
    };
  }
  if (target.current === i.primary.current) {
    const tail = i.journal?.tail ?? null;
    const lane = i.lane;
    const relative =
      lane !== null &&
      lane.generationId === target.current &&
      (lane.tail === (tail?.id ?? null) || (tail !== null && lane.inflight === tail.pointInTime));
    if (relative) {
      return { kind: 'bitmap', ids: i.primary };
    }
    return {
      kind: 'checksum',
      ids: i.primary,
      reason: 'the pending set is not relative to what the target holds',
    };
  }
  if (i.overwrite) {
    return { kind: 'checksum', ids: i.primary, reason: 'the operator chose to overwrite the target' };
  }
  if (i.primary.history.includes(target.current)) {
    return { kind: 'checksum', ids: i.primary, reason: 'the target holds an older lineage of this server' };
  }
  if (target.history.includes(i.primary.current)) {
    return {
      kind: 'refuse',
      code: 'CONTINUOUS_DR_NEWER',
      reason: 'the target holds writes made after this host’s lineage (it was written at the DR site)',
    };
  }
  const ours = new Set([i.primary.current, ...i.primary.history]);
  if (target.history.some((h) => ours.has(h))) {
    return {
      kind: 'refuse',
      code: 'CONTINUOUS_SPLIT_BRAIN',
      reason: 'both sides wrote after they parted (split brain)',
    };
  }
  return {
    kind: 'refuse',
    code: 'CONTINUOUS_UNRELATED',
    reason: 'the target’s copy shares no history with this server',
  };
}
