/**
 * Several deltas applied in one pass (docs/design.md §4.2 step 3 for a recycled slot): the newest delta
 * first, whole; then each older one without the ranges a newer one writes (range-set.ts). The
 * result is what replaying them in order gives (every byte ends as the newest delta that touches
 * it left it), but a block the guest rewrote in each run is written once, not once per delta.
 * Interrupted, it is simply run again: it only writes final contents.
 */
import type { Logger } from '../../../core/log.ts';
import type { StoreContext } from '../context.ts';
import { RangeSet } from '../range-set.ts';
import type { DeltaRecord } from '../records.ts';
import { applyDelta } from './apply.ts';

/** Index entries above which deltas are applied one after the other: the merge holds their ranges (~25 MB at most). */
const MERGE_MAX_ENTRIES = 1 << 18;
/** The smallest index entry (a header and one digest). */
const MIN_ENTRY_BYTES = 64;

function diskShape(delta: DeltaRecord): string {
  return delta.meta.disks.map((d) => `${d.name}:${d.size}`).join('/');
}

/**
 * Whether `deltas` can be applied in one merged pass: more than one, the same disks with the same
 * sizes in each (a resize or a disk set change replays one by one, where truncation order
 * matters), and indexes small enough for their ranges to be held.
 */
export function mergeable(deltas: DeltaRecord[]): boolean {
  const [first, ...rest] = deltas;
  if (!first || rest.length === 0) return false;
  const shape = diskShape(first);
  if (!rest.every((r) => diskShape(r) === shape)) return false;
  return deltas.reduce((n, r) => n + r.indexLength / MIN_ENTRY_BYTES, 0) <= MERGE_MAX_ENTRIES;
}

/**
 * Applies `deltas` (oldest first, mergeable) in one pass, newest first. `newestDamaged` collects
 * the newest delta's damaged chunks (apply.ts `damaged`); an older one's stop the pass.
 */
export async function applyMerged(
  ctx: StoreContext,
  deltas: DeltaRecord[],
  knownDisks: Set<string>,
  log: Logger,
  newestDamaged?: Map<string, number[]>,
): Promise<void> {
  const names = deltas[0]?.meta.disks.map((d) => d.name) ?? [];
  const rangeSets = () => new Map(names.map((n) => [n, new RangeSet()]));
  const writtenLater = rangeSets();
  for (let i = deltas.length - 1; i >= 0; i--) {
    const delta = deltas[i];
    if (!delta) continue;
    const written = rangeSets();
    // `writtenLater` is empty for the newest delta: it is applied whole.
    await applyDelta(ctx, delta, knownDisks, {
      crashMidway: i === deltas.length - 1,
      log,
      overwritten: writtenLater,
      record: written,
      ...(i === deltas.length - 1 && newestDamaged ? { damaged: newestDamaged } : {}),
    });
    for (const [name, ranges] of written) writtenLater.get(name)?.addAll(ranges);
  }
}
