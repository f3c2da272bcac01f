/**
 * The rotation of docs/design.md §4.2 as a pure plan: which generation is dropped, which becomes
 * `_incomplete`, which are renamed `_k` → `_k+1` (in what order), where the new slot's starting
 * content comes from, and which staged deltas bring it up to date. Shared by every store kind, so
 * the filesystem and LVM stores rotate names identically; the stores only execute the plan.
 *
 * Naming (docs/design.md §4.1, the Anvil! DR convention): with N copies `_1` is the newest and `_N` the
 * oldest. A run renames the oldest `_N` to `_incomplete`, every other `_k` to `_k+1` (oldest
 * first, so no name is ever taken twice), brings `_incomplete` up to date and renames it `_1`.
 * All disks of a generation move together.
 */

export type Seq = number | 'incomplete';

export interface PlanGeneration {
  id: string;
  disks: string[];
}

export interface RenameGroup {
  generationId: string;
  from: Seq;
  to: Seq;
  /** Every disk of the generation; they move together. */
  disks: string[];
}

export type SlotPlan =
  /** First run: the images were written straight into `_incomplete`. */
  | { kind: 'fresh' }
  /** The oldest generation's images, renamed `_incomplete`, are brought up to date by deltas. */
  | { kind: 'recycle'; generationId: string }
  /**
   * The slot starts as a copy of the newest generation (found at `fromSeq` once renamed): fewer
   * than N generations exist, a delta the recycled generation missed is gone, or the store
   * clones images (reflinks) more cheaply than it replays deltas.
   */
  | { kind: 'copy'; fromGenerationId: string; fromSeq: number; disks: string[] };

export interface RotationPlan {
  /** Generations deleted outright because `copies` shrank (all older than the recycled one). */
  dropped: (PlanGeneration & { seq: number })[];
  /** The generation whose images become `_incomplete`, or null. */
  recycled: (PlanGeneration & { seq: number }) | null;
  /** Generations that stay, with their sequence number before and after the rotation. */
  survivors: { id: string; fromSeq: number; toSeq: number }[];
  /** Renames of step 2, in the order they must happen. */
  renames: RenameGroup[];
  slot: SlotPlan;
  /**
   * Generations whose producing deltas are applied to `_incomplete`, oldest first; the new delta
   * follows them. Empty unless the slot is recycled.
   */
  applyProducersOf: string[];
}

export interface PlanInput {
  /** Current generations, newest first (index 0 is `_1`). */
  generations: PlanGeneration[];
  /** Copies to keep after this run (the job's setting now; it may differ from the last run). */
  copies: number;
  /** True when the staged delta that produced this generation from the next older one is kept and readable. */
  producerAvailable: (generationId: string) => boolean;
  /**
   * The store can clone the newest generation instead of replaying deltas onto the oldest
   * (docs/design.md §4.2: "where the filesystem supports reflinks, the store may clone instead of
   * replaying"): a clone shares every unchanged block, so only the new delta is written.
   */
  cloneNewest?: boolean;
}

export function planRotation(input: PlanInput): RotationPlan {
  const { generations: gens, copies } = input;
  if (!Number.isInteger(copies) || copies < 1)
    throw new RangeError(`copies must be a positive integer, got ${copies}`);
  const [newest] = gens;
  if (!newest) {
    return {
      dropped: [],
      recycled: null,
      survivors: [],
      renames: [],
      slot: { kind: 'fresh' },
      applyProducersOf: [],
    };
  }
  const keep = Math.min(gens.length, copies - 1);
  const survivorGens = gens.slice(0, keep);
  // Undefined while fewer than `copies` generations exist.
  const recycledGen = gens[copies - 1];
  const dropped = gens.slice(copies).map((g, i) => ({ ...g, seq: copies + 1 + i }));
  const recycled = recycledGen ? { ...recycledGen, seq: copies } : null;

  const renames: RenameGroup[] = [];
  if (recycled) {
    renames.push({ generationId: recycled.id, from: recycled.seq, to: 'incomplete', disks: recycled.disks });
  }
  // Oldest first, so no name is ever taken twice.
  for (const [i, g] of [...survivorGens.entries()].reverse()) {
    renames.push({ generationId: g.id, from: i + 1, to: i + 2, disks: g.disks });
  }

  // The recycled generation catches up through the deltas that produced each survivor, oldest
  // first; with copies 1 there are none and only the new delta applies.
  const chain = survivorGens.map((g) => g.id).reverse();
  const chainUsable = recycled !== null && chain.every((id) => input.producerAvailable(id));
  let slot: SlotPlan;
  // With copies 1 the newest generation is the recycled one: replaying the new delta onto it is
  // already the least there is to write, and nothing else exists to clone from.
  const clone = input.cloneNewest === true && copies >= 2;
  if (recycled && chainUsable && !clone) {
    slot = { kind: 'recycle', generationId: recycled.id };
  } else {
    // The newest generation is a survivor (at `_2` after the renames) unless copies is 1, where
    // it is the recycled one, the chain is always usable and no clone is planned.
    slot = { kind: 'copy', fromGenerationId: newest.id, fromSeq: 2, disks: newest.disks };
  }

  return {
    dropped,
    recycled,
    survivors: survivorGens.map((g, i) => ({ id: g.id, fromSeq: i + 1, toSeq: i + 2 })),
    renames,
    slot,
    applyProducersOf: slot.kind === 'recycle' ? chain : [],
  };
}

/**
 * Generations whose producing deltas must be kept after a commit: the next rotation recycles
 * `_N` and replays the deltas of `_N-1` … `_1` (docs/design.md §4.2 step 3: "the last N−1 deltas").
 * A store that clones the newest generation instead (`cloneNewest`) replays none of them.
 */
export function generationsNeedingProducers(
  generationIdsNewestFirst: string[],
  copies: number,
  cloneNewest = false,
): string[] {
  if (cloneNewest && copies >= 2) return [];
  return generationIdsNewestFirst.slice(0, Math.max(0, copies - 1));
}
