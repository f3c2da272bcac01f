/**
 * docs/design.md §4.2 step 3, the first part of the journal's phase `renamed`: the new slot
 * (`_incomplete`) gets its starting content — a copy of the newest generation, or the recycled
 * oldest as it is — and then every delta it missed, in order (each idempotent; the journal's
 * counter advances after each). When a delta the recycled generation missed has vanished since
 * planning (a cache drive removed), or its staged bytes no longer match their digests (it is then
 * dropped: apply/staged-check.ts), the slot starts over as a copy of the newest generation.
 */
import { HavenError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { storeError } from '../../errors.ts';
import { applyDelta } from '../apply/apply.ts';
import { applyMerged, mergeable } from '../apply/merged.ts';
import type { StoreContext } from '../context.ts';
import { deleteDelta, deltaDataPresent, readDeltaRecord } from '../deltas.ts';
import { readManifest, writeJournal } from '../metadata.ts';
import type { DeltaRecord, Journal } from '../records.ts';
import { addResendMarks } from '../resend.ts';

/** Brings the slot up to date with the deltas the journal lists; `delta` is the new one. */
export async function bringSlotUpToDate(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
  log: Logger,
): Promise<void> {
  for (;;) {
    const deltas = await deltasToApply(ctx, journal, delta);
    if (deltas.length === journal.apply.length) {
      await fillSlot(ctx, journal, delta, log);
      try {
        await applyInOrder(ctx, journal, deltas, log);
      } catch (e) {
        const damaged = damagedKeptDelta(e, deltas, delta);
        if (!damaged) throw e;
        // Its bytes must not reach the new generation, and no later rotation can use it: the
        // loop finds it gone and copies the newest generation instead.
        log.warn('a kept delta no longer matches its digests; dropped, the slot is copied instead', {
          server: journal.server,
          deltaId: damaged.id,
          err: e,
        });
        await deleteDelta(ctx, damaged, log);
        continue;
      }
      crashPoint('after-apply');
      return;
    }
    await startOverAsCopy(ctx, journal, delta, log);
  }
}

/** The older delta `e` (STORE_DELTA_DAMAGED) names, if it is one of `deltas` and not the new one. */
function damagedKeptDelta(e: unknown, deltas: DeltaRecord[], delta: DeltaRecord): DeltaRecord | undefined {
  if (!(e instanceof HavenError) || e.code !== 'STORE_DELTA_DAMAGED') return undefined;
  const id = e.details?.deltaId;
  return id === delta.id ? undefined : deltas.find((r) => r.id === id);
}

/** The journal's deltas that are still readable, up to the first that is not. */
async function deltasToApply(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
): Promise<DeltaRecord[]> {
  const deltas: DeltaRecord[] = [];
  for (const id of journal.apply) {
    const r = id === delta.id ? delta : await readDeltaRecord(ctx, journal.server, id);
    if (r && (await deltaDataPresent(r))) deltas.push(r);
    else if (id === delta.id) {
      throw storeError('STORE_DELTA_MISSING', 'integrity', `the staged data of delta ${id} is missing`, {
        hint: `Mount the cache drive that holds ${delta.dataDir}; the next replication (or \`haven verify --store PATH\` on the target) completes the commit.`,
        details: { dataDir: delta.dataDir },
      });
    } else break;
  }
  return deltas;
}

/** The slot's starting content: a copy of the newest generation's disks this delta keeps. */
async function fillSlot(ctx: StoreContext, journal: Journal, delta: DeltaRecord, log: Logger): Promise<void> {
  if (journal.slotReady) return;
  const { slot, server } = journal;
  if (slot.kind === 'copy') {
    const wanted = new Set(delta.meta.disks.map((d) => d.name));
    for (const disk of slot.disks) {
      if (!wanted.has(disk)) continue;
      const how = await ctx.images.copy(server, disk, slot.fromSeq, 'incomplete', log);
      log.debug('slot copied from the newest generation', { server, disk, how });
    }
    await ctx.images.syncNames();
  }
  journal.slotReady = true;
  await writeJournal(ctx, journal);
  crashPoint('after-slot');
}

/** Every delta the slot missed, in order (merged into one pass where they allow it). */
async function applyInOrder(
  ctx: StoreContext,
  journal: Journal,
  deltas: DeltaRecord[],
  log: Logger,
): Promise<void> {
  const knownDisks = new Set<string>([
    ...(journal.recycled?.disks ?? []),
    ...(journal.slot.kind === 'copy' ? journal.slot.disks : []),
    ...deltas.flatMap((r) => r.meta.disks.map((d) => d.name)),
  ]);
  if (journal.appliedDeltas === 0 && mergeable(deltas)) {
    const damaged = new Map<string, number[]>();
    await applyMerged(ctx, deltas, knownDisks, log, damaged);
    await markNewDeltaDamage(ctx, journal, deltas, damaged, log);
    journal.appliedDeltas = deltas.length;
    await writeJournal(ctx, journal);
  }
  for (const [i, delta] of deltas.entries()) {
    if (i < journal.appliedDeltas) continue;
    const last = i === deltas.length - 1;
    const damaged = new Map<string, number[]>();
    await applyDelta(ctx, delta, knownDisks, { crashMidway: last, log, ...(last ? { damaged } : {}) });
    await markNewDeltaDamage(ctx, journal, deltas, damaged, log);
    journal.appliedDeltas = i + 1;
    await writeJournal(ctx, journal);
  }
}

/**
 * The new delta's own staged bytes no longer match the digests they arrived with (damage at rest
 * between receiving and committing, as for a delta resumed days later). The commit cannot be
 * undone at this point, and only the source holds those bytes: they are marked to be sent again
 * (resend.json), and the new generation gets no check time for those disks, so its digests (the
 * source's) and its bytes disagree exactly where the marks say — the state `haven verify` leaves
 * after finding damage in a newest generation. The next run's checksum resync repairs it. The
 * caller writes the journal after this: a crash before that applies the delta and marks again.
 */
async function markNewDeltaDamage(
  ctx: StoreContext,
  journal: Journal,
  deltas: DeltaRecord[],
  damaged: Map<string, number[]>,
  log: Logger,
): Promise<void> {
  const delta = deltas[deltas.length - 1];
  if (!delta || !damaged.size) return;
  for (const [disk, chunks] of damaged) {
    const size = delta.meta.disks.find((d) => d.name === disk)?.size ?? 0;
    log.warn("the new delta's staged data no longer matches its digests; marked to be sent again", {
      server: journal.server,
      deltaId: delta.id,
      disk,
      chunks: chunks.length,
    });
    await addResendMarks(ctx, journal.server, disk, chunks, size, false, log);
    if (journal.checked) delete journal.checked[disk];
  }
}

/** A delta the recycled generation missed is gone: copy the newest generation (now `_2`) instead. */
async function startOverAsCopy(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
  log: Logger,
): Promise<void> {
  const server = journal.server;
  const newest = journal.survivors.find((s) => s.toSeq === 2);
  if (!newest) {
    throw storeError('STORE_DELTA_MISSING', 'integrity', `a staged delta of ${server} is missing`, {
      hint: 'Mount the cache drive that holds it; the next replication (or `haven verify --store PATH` on the target) completes the commit.',
    });
  }
  const manifest = await readManifest(ctx, server);
  const generation = manifest?.generations.find((g) => g.id === newest.id);
  log.warn('a delta needed to update the oldest generation is gone; copying the newest instead', { server });
  journal.slot = {
    kind: 'copy',
    fromGenerationId: newest.id,
    fromSeq: 2,
    disks: generation?.disks.map((d) => d.name) ?? [],
  };
  journal.apply = [delta.id];
  journal.slotReady = false;
  journal.appliedDeltas = 0;
  // The check times were the recycled generation's, which the slot no longer starts from; the
  // newest was not read before this commit, so the new generation gets no check time and the
  // next commit building on it reads it whole (checked.ts).
  delete journal.checked;
  await writeJournal(ctx, journal);
}
