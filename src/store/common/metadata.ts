/**
 * Reading and writing a server's manifest and rotation journal, atomically (files.ts
 * writeFileDurable), and the short manifest lock around manifest updates. Delta records: deltas.ts.
 */
import { storeError } from '../errors.ts';
import type { StoreContext } from './context.ts';
import { listDir, readJson, removeIfExists, writeFileDurable } from './files.ts';
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

export async function readManifest(ctx: StoreContext, server: string): Promise<ManifestFile | null> {
  const path = ctx.layout.manifest(server);
  const m = await readJson(path, parseManifest(path));
  if (m && m.server !== server) {
    throw storeError('STORE_FILE_INVALID', 'integrity', `${path} belongs to server ${m.server}`, {
      hint: 'A manifest was moved between servers; restore it or remove the server directory.',
    });
  }
  return m;
}

export async function writeManifest(ctx: StoreContext, m: ManifestFile): Promise<void> {
  await writeFileDurable(ctx.layout.manifest(m.server), toJson(m));
}

export async function readJournal(ctx: StoreContext, server: string): Promise<Journal | null> {
  const path = ctx.layout.journal(server);
  return readJson(path, parseJournal(path));
}

export async function writeJournal(ctx: StoreContext, j: Journal): Promise<void> {
  await writeFileDurable(ctx.layout.journal(j.server), toJson(j));
}

export async function removeJournal(ctx: StoreContext, server: string): Promise<void> {
  await removeIfExists(ctx.layout.journal(server));
}

/** The servers that have a directory in the store (with or without generations). */
export async function listServerDirs(ctx: StoreContext): Promise<string[]> {
  return listDir(ctx.layout.serversDir);
}
