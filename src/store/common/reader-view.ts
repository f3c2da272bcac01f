/**
 * What a reader of a server may rely on while a rotation may be running (docs/store-format.md,
 * "Readers during a rotation"): the manifest, minus the generations a running rotation is
 * retiring, and the sequence number each generation's images carry right now. An interrupted
 * rotation is rolled forward first; during a live rotation's short renaming steps it waits.
 */
import { asHavenError } from '../../core/errors.ts';
import { checkName } from '../../core/names.ts';
import { storeError } from '../errors.ts';
import type { Generation } from '../types.ts';
import { rollForward } from './commit/roll-forward.ts';
import type { StoreContext } from './context.ts';
import { exists } from './files.ts';
import { liveHolder } from './lock.ts';
import { readJournal, readManifest } from './metadata.ts';
import { imageName } from './names.ts';
import type { Journal, ManifestFile } from './records.ts';
import { tryLockServer } from './server-lock.ts';

export interface ServerView {
  manifest: ManifestFile | null;
  journal: Journal | null;
  /** The sequence number in a generation's image names right now. */
  fileSeq: (g: Generation) => number;
}

/** Waits at most `busyWaitMs` for a live rotation's renaming steps (then STORE_BUSY). */
export async function readerView(ctx: StoreContext, server: string, busyWaitMs: number): Promise<ServerView> {
  checkName('server', server);
  const deadline = Date.now() + busyWaitMs;
  for (;;) {
    const journal = await readJournal(ctx, server);
    if (!journal) {
      const manifest = await readManifest(ctx, server);
      if (!(await exists(ctx.layout.journal(server))))
        return { manifest, journal: null, fileSeq: (g) => g.seq };
      continue;
    }
    if (!(await liveHolder(ctx.layout.serverLock(server)))) {
      try {
        if (await rollForwardIfIdle(ctx, server)) continue;
      } catch (e) {
        // Could not finish it (no space, a cache drive missing): serve the survivors while the
        // rotation waits in its stable phase, as a live one would.
        if (journal.phase !== 'renamed') throw e;
        ctx.log.warn('an interrupted commit cannot be completed yet', {
          server,
          error: asHavenError(e).code,
        });
        return rotatingView(await readManifest(ctx, server), journal);
      }
      continue;
    }
    if (journal.phase === 'renamed') {
      const manifest = await readManifest(ctx, server);
      const again = await readJournal(ctx, server);
      if (again && again.deltaId === journal.deltaId && again.phase === 'renamed')
        return rotatingView(manifest, journal);
      continue;
    }
    if (Date.now() > deadline) {
      throw storeError('STORE_BUSY', 'conflict', `${server} is in the middle of a rotation`, {
        hint: "A replication is renaming this server's images right now; try again in a moment.",
        details: { server, phase: journal.phase },
      });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rolls forward an interrupted commit of `server` if no live writer holds it. */
async function rollForwardIfIdle(ctx: StoreContext, server: string): Promise<boolean> {
  const taken = await tryLockServer(ctx, server, 'recover');
  if ('busy' in taken) return false;
  try {
    await rollForward(ctx, server, ctx.log);
    return true;
  } finally {
    await taken.lock.release();
  }
}

/** The manifest as a live rotation in its long phase leaves it readable. */
function rotatingView(manifest: ManifestFile | null, journal: Journal): ServerView {
  if (!manifest) return { manifest: null, journal, fileSeq: (g) => g.seq };
  const retired = new Set([
    ...journal.dropped.map((g) => g.id),
    ...(journal.recycled ? [journal.recycled.id] : []),
  ]);
  const moved = new Map(journal.survivors.map((s) => [s.id, s.toSeq]));
  const fileSeq = (g: Generation) => moved.get(g.id) ?? g.seq;
  const generations = manifest.generations
    .filter((g) => !retired.has(g.id))
    .map((g) => ({
      ...g,
      disks: g.disks.map((d) => ({ ...d, image: imageName(manifest.server, d.name, fileSeq(g)) })),
    }));
  return { manifest: { ...manifest, generations }, journal, fileSeq };
}

/** The generation as the view has it, unless it left (or a running rotation is retiring it). */
export function liveIn(v: ServerView, id: string): Generation | undefined {
  return v.manifest?.generations.find((g) => g.id === id);
}

/** Times a generation's images are opened again because a rotation renamed them meanwhile. */
const REOPEN_TRIES = 50;

/**
 * Opens what belongs to generation `id` (`open` gets the sequence number its images carry now)
 * under a view that still names it the same way once it is open: a rotation renaming images
 * between the view and the open would otherwise hand over another generation's image. What is
 * open stays that generation's even if it is renamed later (a file descriptor). Null when the
 * generation left meanwhile.
 */
export async function openStable<T>(
  viewOf: (server: string) => Promise<ServerView>,
  server: string,
  id: string,
  open: (seq: number) => Promise<T>,
  close: (opened: T) => Promise<void>,
): Promise<{ value: T; seq: number } | null> {
  for (let i = 0; i < REOPEN_TRIES; i++) {
    const before = await viewOf(server);
    const g = liveIn(before, id);
    if (!g) return null;
    const seq = before.fileSeq(g);
    const value = await open(seq);
    const after = await viewOf(server);
    const still = liveIn(after, id);
    if (still && after.fileSeq(still) === seq) return { value, seq };
    await close(value);
    if (!still) return null;
  }
  throw storeError('STORE_BUSY', 'conflict', `${server}: its images kept moving while they were opened`, {
    hint: "Replications keep rotating this server's images; try again in a moment.",
    details: { server, generationId: id },
  });
}
