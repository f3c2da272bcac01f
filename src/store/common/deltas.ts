/**
 * A delta as stored, underneath the three steps that use it (docs/design.md §4.2: receiving, committing,
 * applying): its record (`delta.json`), where its staged files are, reading its index, whether
 * its staged data is still there (a cache drive may be gone), and removing it with everything it
 * owns.
 */
import type { FileHandle } from 'node:fs/promises';
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { invalidFile, storeError } from '../errors.ts';
import type { DeltaMeta } from '../types.ts';
import type { StoreContext } from './context.ts';
import { checkIndexHeader, INDEX_HEADER_BYTES, IndexDecoder, type IndexEntry } from './delta-log.ts';
import { isErrno, listDir, readAllAt, readJson, removeTree, writeFileDurable } from './files.ts';
import { isId } from './names.ts';
import { type DeltaRecord, parseDeltaRecord, toJson } from './records.ts';

const READ_BLOCK = 1 << 20;
const STAGING_FOLDER = 'haven-staging';

export async function readDeltaRecord(
  ctx: StoreContext,
  server: string,
  id: string,
): Promise<DeltaRecord | null> {
  const path = ctx.layout.deltaRecord(server, id);
  const record = await readJson(path, parseDeltaRecord(path));
  if (record && (record.id !== id || record.server !== server)) {
    throw storeError('STORE_FILE_INVALID', 'integrity', `${path} describes another delta`, {
      hint: 'Remove the delta directory; the sender will send the delta again.',
    });
  }
  return record;
}

export async function writeDeltaRecord(ctx: StoreContext, record: DeltaRecord): Promise<void> {
  record.updatedAt = new Date().toISOString();
  const path = ctx.layout.deltaRecord(record.server, record.id);
  await writeFileDurable(path, toJson(record));
  await ctx.mirror?.saved(path);
}

/** Every delta record of a server, oldest first. Directories without a record are skipped. */
export async function listDeltaRecords(ctx: StoreContext, server: string): Promise<DeltaRecord[]> {
  const out: DeltaRecord[] = [];
  for (const name of await listDir(ctx.layout.deltasDir(server))) {
    if (!isId(name)) continue;
    const record = await readDeltaRecord(ctx, server, name);
    if (record) out.push(record);
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Where a store's staged data goes on a cache drive: `<stagingDir>/haven-staging/<storeId>`. */
export function stagingRoot(stagingDir: string, storeId: string): string {
  return join(stagingDir, STAGING_FOLDER, storeId);
}

/** The staged files of a delta (its `dataDir`): data, index, and the per-disk digest cache. */
export function stagedFiles(dataDir: string) {
  return {
    data: join(dataDir, 'data'),
    index: join(dataDir, 'index'),
    sums: (disk: string) => join(dataDir, `${disk}.sums`),
  };
}

/** Whether two deltas describe the same disks with the same sizes, in the same order. */
export function sameDisks(a: DeltaMeta['disks'], b: DeltaMeta['disks']): boolean {
  return a.length === b.length && a.every((d, i) => d.name === b[i]?.name && d.size === b[i]?.size);
}

/** Removes a delta and everything it owns. `dataDir` is only removed where Haven would have put it. */
export async function deleteDelta(ctx: StoreContext, record: DeltaRecord, log: Logger): Promise<void> {
  const recordDir = ctx.layout.deltaDir(record.server, record.id);
  if (record.kind === 'direct' && record.state !== 'committed') {
    // A first run's partial owns the `_incomplete` images it was writing.
    for (const d of record.meta.disks) await ctx.images.remove(record.server, d.name, 'incomplete');
  }
  if (record.dataDir !== recordDir) {
    const own = dirname(record.dataDir);
    const isOwn =
      basename(record.dataDir) === record.id &&
      basename(own) === record.server &&
      basename(dirname(own)) === ctx.descriptor.id &&
      basename(dirname(dirname(own))) === STAGING_FOLDER;
    if (isOwn) await removeTree(record.dataDir);
    else
      log.warn('delta data directory is not where Haven stages deltas; left in place', {
        dataDir: record.dataDir,
      });
  }
  await removeTree(recordDir);
  await ctx.mirror?.removed(recordDir);
}

/** True when a staged delta's data and index are where its record says (a cache drive may be gone). */
export async function deltaDataPresent(record: DeltaRecord): Promise<boolean> {
  // A first run's delta has no replayable data: its images became the generation.
  if (record.kind === 'direct') return false;
  const files = stagedFiles(record.dataDir);
  try {
    const [data, index] = await Promise.all([stat(files.data), stat(files.index)]);
    return data.size >= record.dataLength && index.size >= record.indexLength;
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ENOTDIR')) return false;
    throw e;
  }
}

/** Streams the entries of a delta index up to `length` bytes. */
export async function* readIndexEntries(
  fh: FileHandle,
  length: number,
  path: string,
): AsyncGenerator<IndexEntry> {
  const header = Buffer.alloc(INDEX_HEADER_BYTES);
  await readAllAt(fh, header, INDEX_HEADER_BYTES, 0);
  checkIndexHeader(header, path);
  const decoder = new IndexDecoder(path);
  const buf = Buffer.allocUnsafe(READ_BLOCK);
  for (let pos = INDEX_HEADER_BYTES; pos < length; ) {
    const n = Math.min(READ_BLOCK, length - pos);
    const { bytesRead } = await fh.read(buf, 0, n, pos);
    if (bytesRead === 0) throw invalidFile(path, `index shorter than its recorded ${length} bytes`);
    yield* decoder.push(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  decoder.finish();
}
