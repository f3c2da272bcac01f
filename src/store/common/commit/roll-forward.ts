/**
 * Committing a sealed delta: docs/design.md §4.2 steps 2–4, driven by a journal so that a crash anywhere
 * is rolled forward by running the same code again (`rollForward`, from commit(), recover(),
 * openDelta and readers).
 *
 * The journal (`.haven/servers/<server>/journal.json`) holds the whole rotation plan (plan.ts)
 * plus progress counters, and moves through three phases:
 * - `planned`: generations dropped and renamed (rename.ts);
 * - `renamed`: names are stable; the slot gets its content and the deltas it missed (slot.ts),
 *   the new generation's digests are written (digests.ts), the definition if missing;
 * - `committing`: manifest, final rename, cleanup (publish.ts).
 */
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { storeError } from '../../errors.ts';
import type { Generation } from '../../types.ts';
import type { StoreContext } from '../context.ts';
import { listDeltaRecords, readDeltaRecord } from '../deltas.ts';
import { readJournal, readManifest, writeJournal } from '../metadata.ts';
import type { DeltaRecord, Journal } from '../records.ts';
import { ensureDefinition } from './definition.ts';
import { writeGenerationDigests } from './digests.ts';
import { planCommit } from './plan.ts';
import { endJournal, markCommitted, publishGeneration } from './publish.ts';
import { renameGenerations } from './rename.ts';
import { bringSlotUpToDate } from './slot.ts';

/**
 * Completes whatever commit of this server is pending: an interrupted rotation (journal), or a
 * sealed delta not yet committed. The caller holds the server lock. Returns the generation the
 * last completed commit produced, or null when nothing was pending.
 */
export async function rollForward(
  ctx: StoreContext,
  server: string,
  log: Logger,
): Promise<Generation | null> {
  let result: Generation | null = null;
  for (;;) {
    let journal = await readJournal(ctx, server);
    if (!journal) {
      const sealed = (await listDeltaRecords(ctx, server)).find((r) => r.state === 'sealed');
      if (!sealed) return result;
      const manifest = await readManifest(ctx, server);
      const done = manifest?.generations.find((g) => g.id === sealed.generationId);
      if (done) {
        await markCommitted(ctx, sealed, log);
        result = done;
        continue;
      }
      journal = await planCommit(ctx, sealed, manifest, log);
    } else {
      log.info('rolling forward an interrupted commit', {
        server,
        deltaId: journal.deltaId,
        phase: journal.phase,
      });
    }
    result = await executeJournal(ctx, journal, log);
  }
}

/** Runs the journal from its phase to the end. */
async function executeJournal(ctx: StoreContext, journal: Journal, log: Logger): Promise<Generation> {
  const delta = await readDeltaRecord(ctx, journal.server, journal.deltaId);
  if (!delta) return finishWithoutDelta(ctx, journal, log);
  if (journal.phase === 'planned') await renameGenerations(ctx, journal, log);
  if (journal.phase === 'renamed') await buildGeneration(ctx, journal, delta, log);
  return publishGeneration(ctx, journal, delta, log);
}

/** Phase `renamed`: the slot brought up to date, the digests, the definition. */
async function buildGeneration(
  ctx: StoreContext,
  journal: Journal,
  delta: DeltaRecord,
  log: Logger,
): Promise<void> {
  const started = performance.now();
  if (journal.kind === 'rotate') await bringSlotUpToDate(ctx, journal, delta, log);
  const applied = performance.now();
  if (!journal.digestsDone) {
    await writeGenerationDigests(ctx, journal, delta);
    log.debug('slot brought forward', {
      server: journal.server,
      applyMs: Math.round(applied - started),
      digestsMs: Math.round(performance.now() - applied),
    });
    journal.digestsDone = true;
    await writeJournal(ctx, journal);
    crashPoint('after-digests');
  }
  await ensureDefinition(ctx, delta, log);
  crashPoint('after-definition');
  journal.phase = 'committing';
  await writeJournal(ctx, journal);
}

/**
 * A first run's record is removed once its generation is committed; a crash right after that
 * leaves only the journal to clear. Any other journal without its delta cannot go on.
 */
async function finishWithoutDelta(ctx: StoreContext, journal: Journal, log: Logger): Promise<Generation> {
  const server = journal.server;
  const done = (await readManifest(ctx, server))?.generations.find((g) => g.id === journal.generationId);
  if (done && journal.phase === 'committing') {
    await endJournal(ctx, server, log);
    return done;
  }
  throw storeError(
    'STORE_DELTA_MISSING',
    'integrity',
    `the journal of ${server} names delta ${journal.deltaId}, which is gone`,
    {
      hint: 'The staged delta was removed by hand; restore it, or remove the journal and run `haven verify`.',
    },
  );
}
