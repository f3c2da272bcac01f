/**
 * Planning a commit (docs/design.md §4.2 steps 2–4): from the sealed delta, the manifest and what is
 * still on disk, the rotation plan (rotation-plan.ts), the deltas the new slot must replay, a
 * check that everything needed is there and fits, and the journal that drives the rest
 * (roll-forward.ts). Nothing is renamed here: a refusal leaves the store as it was.
 */
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { startOverHint, storeError } from '../../errors.ts';
import type { Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { deltaDataPresent, listDeltaRecords } from '../deltas.ts';
import type { RotationRoom } from '../images.ts';
import { writeJournal } from '../metadata.ts';
import type { DeltaRecord, Journal, ManifestFile } from '../records.ts';
import { settleResendMarks } from '../resend.ts';
import { planRotation, type RotationPlan, type Seq } from '../rotation-plan.ts';
import { type CheckedTimes, checkSlotSource } from './slot-check.ts';

/** What the store holds that the plan depends on. */
interface Holdings {
  /** Generations, newest first. */
  generations: Generation[];
  /** Committed deltas by the generation they produced, and whether their data is still there. */
  producers: Map<string, { delta: DeltaRecord; present: boolean }>;
  /** Every image of the generation a rotation would recycle exists (true when none is recycled). */
  recycledComplete: boolean;
  /** The new slot is cloned from the newest generation rather than recycled (reflinks). */
  cloneNewest: boolean;
}

/** Plans the commit of sealed delta `delta` and writes the journal (phase `planned`). */
export async function planCommit(
  ctx: StoreContext,
  delta: DeltaRecord,
  manifest: ManifestFile | null,
  log: Logger,
): Promise<Journal> {
  const generations = manifest?.generations ?? [];
  const newestId = generations[0]?.id ?? null;
  if (delta.meta.baseGenerationId !== newestId) {
    throw storeError(
      'STORE_BASE_MISMATCH',
      'integrity',
      `sealed delta ${delta.id} of ${delta.server} does not apply to the newest generation`,
      {
        hint: 'Remove the delta directory named in the details; the next run sends a checksum resync.',
        details: { deltaId: delta.id, base: delta.meta.baseGenerationId, newest: newestId },
      },
    );
  }
  const records = await listDeltaRecords(ctx, delta.server);
  const holdings = await survey(ctx, delta, generations, records, log);
  const plan = planRotation({
    generations: generations.map((g) => ({ id: g.id, disks: g.disks.map((d) => d.name) })),
    copies: delta.meta.copies,
    cloneNewest: holdings.cloneNewest,
    producerAvailable: (id) => holdings.recycledComplete && producerUsable(holdings, id),
  });
  await refuseMissingImages(ctx, delta, holdings, plan, log);
  const checked = await checkSlotSource(ctx, delta, generations, plan, log);
  const apply =
    generations.length === 0
      ? []
      : [...plan.applyProducersOf.map((id) => producerOf(holdings, id).id), delta.id];
  await checkRoom(ctx, delta, holdings, plan, records, apply);
  const journal = newJournal(delta, plan, apply, newestId, checked);
  await writeJournal(ctx, journal);
  crashPoint('after-journal');
  // The journal makes this commit certain (roll-forward completes it): what it resent is done.
  await settleResendMarks(ctx, delta, log);
  return journal;
}

async function survey(
  ctx: StoreContext,
  delta: DeltaRecord,
  generations: Generation[],
  records: DeltaRecord[],
  log: Logger,
): Promise<Holdings> {
  const producers = new Map<string, { delta: DeltaRecord; present: boolean }>();
  for (const r of records) {
    if (r.state === 'committed') producers.set(r.generationId, { delta: r, present: false });
  }
  for (const p of producers.values()) p.present = await deltaDataPresent(p.delta);
  const { copies } = delta.meta;
  // A recycled generation must have all its images, or replaying deltas onto it means nothing.
  const recycled = generations.length >= copies ? generations[copies - 1] : undefined;
  const recycledComplete = recycled ? await imagesPresent(ctx, delta.server, copies, recycled.disks) : true;
  // Where the storage clones images, the new slot is a clone of the newest generation plus the
  // new delta; the recycled oldest is simply removed. That needs the newest images present.
  const newest = generations[0];
  const cloneNewest =
    generations.length >= copies &&
    newest !== undefined &&
    (await ctx.images.rotationClones(copies, log)) &&
    (await imagesPresent(ctx, delta.server, 1, newest.disks));
  return { generations, producers, recycledComplete, cloneNewest };
}

async function imagesPresent(ctx: StoreContext, server: string, seq: Seq, disks: { name: string }[]) {
  for (const d of disks) if (!(await ctx.images.exists(server, d.name, seq))) return false;
  return true;
}

/** The delta that produced generation `id` is kept, readable, and applies to the next older one. */
function producerUsable(holdings: Holdings, id: string): boolean {
  const producer = holdings.producers.get(id);
  const i = holdings.generations.findIndex((g) => g.id === id);
  const older = holdings.generations[i + 1]?.id ?? null;
  return producer?.present === true && producer.delta.meta.baseGenerationId === older;
}

function producerOf(holdings: Holdings, id: string): DeltaRecord {
  const producer = holdings.producers.get(id);
  if (!producer) {
    throw storeError('STORE_DELTA_MISSING', 'internal', `the plan replays a delta no generation ${id} has`, {
      hint: 'This is a bug in Haven; please report it with the log file of this run.',
    });
  }
  return producer.delta;
}

/** STORE_IMAGE_MISSING before anything changes, when the images the plan starts from are gone. */
async function refuseMissingImages(
  ctx: StoreContext,
  delta: DeltaRecord,
  holdings: Holdings,
  plan: RotationPlan,
  log: Logger,
): Promise<void> {
  const server = delta.server;
  if (!holdings.recycledComplete && plan.slot.kind === 'recycle') {
    throw storeError(
      'STORE_IMAGE_MISSING',
      'integrity',
      `an image of ${server}'s only generation is missing`,
      {
        hint: `With copies 1 the missing image cannot be rebuilt from deltas, and nothing was changed. ${startOverHint(server)}`,
      },
    );
  }
  const missing = (what: string) =>
    storeError('STORE_IMAGE_MISSING', 'integrity', `an image of ${what} of ${server} is missing`, {
      hint: `Nothing was changed. ${startOverHint(server)}`,
    });
  if (plan.slot.kind === 'fresh' && !(await imagesPresent(ctx, server, 'incomplete', delta.meta.disks))) {
    throw missing('the first run');
  }
  if (plan.slot.kind !== 'copy') return;
  const newest = holdings.generations[0];
  if (!newest || !(await imagesPresent(ctx, server, 1, newest.disks))) throw missing('the newest generation');
  if (holdings.generations.length < delta.meta.copies) return;
  if (holdings.cloneNewest)
    log.debug('the new slot is a clone of the newest generation (reflinks, thin or rbd snapshots)', {
      server,
      store: ctx.descriptor.kind,
    });
  else {
    log.info('a delta the oldest generation missed is gone; the new slot starts as a copy of the newest', {
      server,
    });
  }
}

/**
 * Refuses a rotation that cannot finish for lack of room before anything is renamed, so the store
 * is never left mid-rotation by a predictable NO_SPACE (the image storage judges: images.ts).
 */
async function checkRoom(
  ctx: StoreContext,
  delta: DeltaRecord,
  holdings: Holdings,
  plan: RotationPlan,
  records: DeltaRecord[],
  apply: string[],
): Promise<void> {
  const { slot } = plan;
  if (slot.kind === 'fresh') return;
  const from = slot.kind === 'copy' ? holdings.generations[0] : holdings.generations[delta.meta.copies - 1];
  if (!from) return;
  const applied = apply.map((id) => (id === delta.id ? delta : records.find((r) => r.id === id)));
  const room: RotationRoom = {
    server: delta.server,
    slot: slot.kind === 'recycle' ? 'recycle' : holdings.cloneNewest ? 'clone' : 'copy',
    fromSeq: from.seq,
    disks: delta.meta.disks.map((d) => ({
      name: d.name,
      size: d.size,
      dataBytes: applied.reduce((n, r) => n + (r?.counts[d.name]?.dataBytes ?? 0), 0),
      inSource: from.disks.some((x) => x.name === d.name),
    })),
  };
  await ctx.images.checkRoom(room);
}

function newJournal(
  delta: DeltaRecord,
  plan: RotationPlan,
  apply: string[],
  baseGenerationId: string | null,
  checked: CheckedTimes,
): Journal {
  return {
    format: 'haven-journal',
    version: 1,
    server: delta.server,
    deltaId: delta.id,
    generationId: delta.generationId,
    createdAt: new Date().toISOString(),
    kind: baseGenerationId === null ? 'first' : 'rotate',
    baseGenerationId,
    copies: delta.meta.copies,
    phase: 'planned',
    dropped: plan.dropped.map((g) => ({ id: g.id, seq: g.seq, disks: g.disks })),
    recycled: plan.recycled
      ? { id: plan.recycled.id, seq: plan.recycled.seq, disks: plan.recycled.disks }
      : null,
    survivors: plan.survivors,
    renames: plan.renames,
    slot: plan.slot,
    apply,
    droppedDone: false,
    renamedGroups: 0,
    slotReady: false,
    appliedDeltas: 0,
    digestsDone: false,
    checked,
  };
}
