/**
 * Reading and writing a server's metadata files (manifest, journal, delta records), all
 * atomically (files.ts writeFileDurable), plus the context every part of the fs store shares.
 */
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { Logger } from '../../core/log.ts';
import { storeError } from '../errors.ts';
import type { StoreDescriptor } from '../types.ts';
import { listDir, readJson, removeIfExists, writeFileDurable } from './files.ts';
import type { FsLayout } from './layout.ts';
import { isId } from './layout.ts';
import {
  type DeltaRecord,
  type Journal,
  type ManifestFile,
  parseDeltaRecord,
  parseJournal,
  parseManifest,
  toJson,
} from './records.ts';

export const MANIFEST_VERSION = 1;

export interface FsContext {
  layout: FsLayout;
  descriptor: StoreDescriptor;
  log: Logger;
  /** Directory for staged delta data (a cache drive), or undefined for the store's own area. */
  stagingDir: string | undefined;
  /** Write image and staged data with O_DIRECT where the filesystem allows it (direct-io.ts). */
  directIo: boolean;
  /** Rotate by cloning the newest generation where the filesystem can (commit.ts). */
  reflinks: boolean;
  /** The DR host's settings for definitions, asked for when one is written (definition.ts). */
  definitionRules?: () => Promise<DefinitionRules>;
}

export async function readManifest(ctx: FsContext, server: string): Promise<ManifestFile | null> {
  const path = ctx.layout.manifest(server);
  const m = await readJson(path, parseManifest(path));
  if (m && m.server !== server) {
    throw storeError('STORE_FILE_INVALID', 'integrity', `${path} belongs to server ${m.server}`, {
      hint: 'A manifest was moved between servers; restore it or remove the server directory.',
    });
  }
  return m;
}

export async function writeManifest(ctx: FsContext, m: ManifestFile): Promise<void> {
  await writeFileDurable(ctx.layout.manifest(m.server), toJson(m));
}

export async function readJournal(ctx: FsContext, server: string): Promise<Journal | null> {
  const path = ctx.layout.journal(server);
  return readJson(path, parseJournal(path));
}

export async function writeJournal(ctx: FsContext, j: Journal): Promise<void> {
  await writeFileDurable(ctx.layout.journal(j.server), toJson(j));
}

export async function removeJournal(ctx: FsContext, server: string): Promise<void> {
  await removeIfExists(ctx.layout.journal(server));
}

export async function readDeltaRecord(
  ctx: FsContext,
  server: string,
  id: string,
): Promise<DeltaRecord | null> {
  const path = ctx.layout.deltaRecord(server, id);
  const r = await readJson(path, parseDeltaRecord(path));
  if (r && (r.id !== id || r.server !== server)) {
    throw storeError('STORE_FILE_INVALID', 'integrity', `${path} describes another delta`, {
      hint: 'Remove the delta directory; the sender will send the delta again.',
    });
  }
  return r;
}

export async function writeDeltaRecord(ctx: FsContext, r: DeltaRecord): Promise<void> {
  r.updatedAt = new Date().toISOString();
  await writeFileDurable(ctx.layout.deltaRecord(r.server, r.id), toJson(r));
}

/** Every delta record of a server, oldest first. Directories without a record are skipped. */
export async function listDeltaRecords(ctx: FsContext, server: string): Promise<DeltaRecord[]> {
  const out: DeltaRecord[] = [];
  for (const name of await listDir(ctx.layout.deltasDir(server))) {
    if (!isId(name)) continue;
    const r = await readDeltaRecord(ctx, server, name);
    if (r) out.push(r);
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** The servers that have a directory in the store (with or without generations). */
export async function listServerDirs(ctx: FsContext): Promise<string[]> {
  return listDir(ctx.layout.serversDir);
}
