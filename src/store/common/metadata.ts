/**
 * Reading and writing a server's manifest and rotation journal, atomically (files.ts
 * writeFileDurable), and the short manifest lock around manifest updates. Delta records: deltas.ts.
 */
import { HavenError } from '../../core/errors.ts';
import { storeError } from '../errors.ts';
import type { StoreContext } from './context.ts';
import { exists, listDir, readJson, removeIfExists, writeFileDurable } from './files.ts';
import { acquireLock } from './lock.ts';
import { type Journal, type ManifestFile, parseJournal, parseManifest, toJson } from './records.ts';

export const MANIFEST_VERSION = 1;

/** Runs `fn` while holding the server's manifest lock (short; waits for other holders). */
export async function withManifestLock<T>(
  ctx: StoreContext,
  server: string,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await acquireLock(ctx.layout.manifestLock(server), {
    purpose: 'manifest',
    log: ctx.log,
    waitMs: 30_000,
    locked: (h) =>
      storeError('STORE_BUSY', 'conflict', `the manifest of ${server} stayed locked by pid ${h.pid}`, {
        hint: 'Another Haven process is updating this server; try again.',
      }),
  });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * The server's manifest, from `manifest.json` or, when that is damaged or gone, from its copy
 * (issue 13.7: one damaged file must not make every generation unreachable). Null when neither
 * exists. Both damaged: STORE_FILE_INVALID with the way forward in its hint.
 */
export async function readManifest(ctx: StoreContext, server: string): Promise<ManifestFile | null> {
  const path = ctx.layout.manifest(server);
  const copy = ctx.layout.manifestCopy(server);
  try {
    const m = await readManifestFile(path, server);
    if (m) return m;
  } catch (e) {
    if (!(e instanceof HavenError && e.code === 'STORE_FILE_INVALID')) throw e;
    const second = await readManifestFile(copy, server).catch(() => null);
    if (!second) throw bothDamaged(server, path, e);
    ctx.log.warn('the manifest is damaged; using its copy (the next commit rewrites both)', {
      server,
      path,
      error: e.message,
    });
    return second;
  }
  // A copy without the manifest: a crash between removing and writing cannot leave that, an
  // operator's `rm` can.
  const second = await readManifestFile(copy, server).catch(() => null);
  if (second) ctx.log.warn('the manifest is missing; using its copy', { server, path });
  return second;
}

async function readManifestFile(path: string, server: string): Promise<ManifestFile | null> {
  const m = await readJson(path, parseManifest(path));
  if (m && m.server !== server) {
    throw storeError('STORE_FILE_INVALID', 'integrity', `${path} belongs to server ${m.server}`, {
      hint: 'A manifest was moved between servers; restore it or remove the server directory.',
    });
  }
  return m;
}

function bothDamaged(server: string, path: string, cause: HavenError): HavenError {
  return storeError('STORE_FILE_INVALID', 'integrity', `${path} and its copy are damaged: ${cause.message}`, {
    hint: `Restore ${path} from a backup of the store. Without one, the images of ${server} cannot be told apart: remove the server's directory under .haven/servers and its images, and the next \`haven protect ${server}\` sends a full copy.`,
    details: { server, path },
    cause,
  });
}

/** Whether the server has a manifest (or its copy). */
export async function manifestExists(ctx: StoreContext, server: string): Promise<boolean> {
  return (await exists(ctx.layout.manifest(server))) || (await exists(ctx.layout.manifestCopy(server)));
}

/** The manifest and then its copy, each replaced atomically: at every instant one of them is whole. */
export async function writeManifest(ctx: StoreContext, m: ManifestFile): Promise<void> {
  const text = toJson(m);
  await writeFileDurable(ctx.layout.manifest(m.server), text);
  await ctx.mirror?.saved(ctx.layout.manifest(m.server));
  await writeFileDurable(ctx.layout.manifestCopy(m.server), text);
  await ctx.mirror?.saved(ctx.layout.manifestCopy(m.server));
}

export async function readJournal(ctx: StoreContext, server: string): Promise<Journal | null> {
  const path = ctx.layout.journal(server);
  return readJson(path, parseJournal(path));
}

export async function writeJournal(ctx: StoreContext, j: Journal): Promise<void> {
  const path = ctx.layout.journal(j.server);
  await writeFileDurable(path, toJson(j));
  await ctx.mirror?.saved(path);
}

export async function removeJournal(ctx: StoreContext, server: string): Promise<void> {
  const path = ctx.layout.journal(server);
  await removeIfExists(path);
  await ctx.mirror?.removed(path);
}

/** The servers that have a directory in the store (with or without generations). */
export async function listServerDirs(ctx: StoreContext): Promise<string[]> {
  return listDir(ctx.layout.serversDir);
}
