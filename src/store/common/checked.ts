/**
 * When a generation's chunks were last known to match their digests, per disk: the record the slot
 * check (commit/slot-check.ts) uses to read a generation only when part of it was last checked
 * longer ago than the store's recheck window (docs/store-format.md, "Bit rot never spreads";
 * docs/decisions.md). A file `<disk>.checked` beside the generation's `<disk>.sums`:
 * `{"format": "haven-checked", "at": "<ISO time>"}`.
 *
 * Who writes it: a commit, for the generation it creates (the time its oldest chunk was last
 * checked: now when the slot check read the source, else the source's own record); `haven verify`
 * for each generation disk it read whole without finding damage. Damage found removes it. A
 * missing, unreadable or future-dated record counts as never checked, so losing one only costs a
 * read: every failure here is safe in the direction of checking more.
 */
import { z } from 'zod';
import type { Logger } from '../../core/log.ts';
import type { StoreContext } from './context.ts';
import { readJson, removeIfExists, writeFileDurable } from './files.ts';

const recordSchema = z.object({ format: z.literal('haven-checked'), at: z.iso.datetime() });

/** When `disk` of generation `generationId` was last checked whole (ms since the epoch), or null. */
export async function checkedAt(
  ctx: StoreContext,
  server: string,
  generationId: string,
  disk: string,
): Promise<number | null> {
  try {
    const r = await readJson(ctx.layout.checked(server, generationId, disk), (v) => recordSchema.parse(v));
    const at = r ? Date.parse(r.at) : Number.NaN;
    // A record from the future (a clock set back, a copied store) proves nothing about now.
    return Number.isFinite(at) && at <= Date.now() ? at : null;
  } catch {
    return null;
  }
}

/**
 * Whether a generation disk last checked at `at` must be read again before a commit builds on
 * it: never checked, or longer ago than the window (0: always).
 */
export function needsRecheck(ctx: StoreContext, at: number | null, now = Date.now()): boolean {
  return at === null || ctx.recheckAfterMs === 0 || now - at > ctx.recheckAfterMs;
}

/** Records that `disk` of the generation matched its digests at `at`. Best effort (readers, full disks). */
export async function recordChecked(
  ctx: StoreContext,
  server: string,
  generationId: string,
  disk: string,
  at: number,
  log: Logger,
): Promise<void> {
  const path = ctx.layout.checked(server, generationId, disk);
  try {
    await writeFileDurable(
      path,
      `${JSON.stringify({ format: 'haven-checked', at: new Date(at).toISOString() })}\n`,
    );
  } catch (e) {
    log.debug('could not record when a generation was checked; the next commit reads it again', {
      server,
      generationId,
      disk,
      err: e,
    });
  }
}

/** Forgets the record of a generation disk found damaged: the next commit building on it reads it whole. */
export async function forgetChecked(
  ctx: StoreContext,
  server: string,
  generationId: string,
  disk: string,
  log: Logger,
): Promise<void> {
  try {
    await removeIfExists(ctx.layout.checked(server, generationId, disk));
  } catch (e) {
    log.warn('could not forget when a damaged generation was checked', {
      server,
      generationId,
      disk,
      err: e,
    });
  }
}
