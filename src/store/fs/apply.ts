/**
 * Applying a staged delta to `_incomplete` (DESIGN §4.2 step 3): the index in order, data
 * entries as positioned writes, zero entries as punched holes. Idempotent: applying again after
 * a crash gives the same image. Memory: one read buffer and a bounded list of pending holes.
 */
import type { FileHandle } from 'node:fs/promises';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { crashPoint } from '../crash.ts';
import { invalidFile, storeError } from '../errors.ts';
import { checkIndexHeader, INDEX_HEADER_BYTES, IndexDecoder, type IndexEntry } from './delta-log.ts';
import { io, isErrno, readAllAt, removeIfExists, writeAllAt } from './files.ts';
import { addRange, type ByteRange, punchHoles } from './holes.ts';
import type { DeltaRecord } from './records.ts';
import type { FsContext } from './state.ts';

const READ_BLOCK = 1 << 20;
const COPY_BLOCK = 4 << 20;
const PUNCH_BATCH = 256;

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

/** True when a staged delta's data and index are where its record says (a cache drive may be gone). */
export async function deltaDataPresent(r: DeltaRecord): Promise<boolean> {
  // A first run's delta has no replayable data: its images became the generation.
  if (r.kind === 'direct') return false;
  try {
    const [data, index] = await Promise.all([stat(join(r.dataDir, 'data')), stat(join(r.dataDir, 'index'))]);
    return data.size >= r.dataLength && index.size >= r.indexLength;
  } catch (e) {
    if (isErrno(e, 'ENOENT', 'ENOTDIR')) return false;
    throw e;
  }
}

interface Target {
  path: string;
  fh: FileHandle;
  size: number;
  punches: ByteRange[];
  punchEnd: number;
}

/**
 * Applies delta `r` to the server's `_incomplete` images. Disks the delta lists are created
 * (sparse) if missing and set to the delta's size; `_incomplete` images of `knownDisks` the delta
 * does not list are removed, so after each delta the slot holds exactly that generation's disks.
 */
export async function applyDelta(
  ctx: FsContext,
  r: DeltaRecord,
  knownDisks: Iterable<string>,
  options: { crashMidway: boolean; log: Logger },
): Promise<void> {
  const server = r.server;
  const listed = new Set(r.meta.disks.map((d) => d.name));
  for (const name of knownDisks) {
    if (!listed.has(name)) await removeIfExists(ctx.layout.image(server, name, 'incomplete'));
  }
  const targets: Target[] = [];
  let data: FileHandle | null = null;
  let index: FileHandle | null = null;
  try {
    for (const d of r.meta.disks) {
      const path = ctx.layout.image(server, d.name, 'incomplete');
      const fh = await io(path, () =>
        open(path, 'r+').catch((e) => {
          if (isErrno(e, 'ENOENT')) return open(path, 'w+');
          throw e;
        }),
      );
      targets.push({ path, fh, size: d.size, punches: [], punchEnd: 0 });
      await io(path, () => fh.truncate(d.size));
    }
    const dataPath = join(r.dataDir, 'data');
    const indexPath = join(r.dataDir, 'index');
    data = await io(dataPath, () => open(dataPath, 'r'));
    index = await io(indexPath, () => open(indexPath, 'r'));
    const buf = Buffer.allocUnsafe(COPY_BLOCK);
    let first = true;
    for await (const e of readIndexEntries(index, r.indexLength, indexPath)) {
      const t = targets[e.disk];
      if (!t || e.offset + e.length > t.size || (e.kind === 'data' && e.dataPos + e.length > r.dataLength)) {
        throw invalidFile(indexPath, `entry out of range (disk ${e.disk}, ${e.offset}+${e.length})`);
      }
      if (e.kind === 'data') {
        if (t.punches.length && t.punchEnd > e.offset) await flush(t, options.log);
        for (let done = 0; done < e.length; ) {
          const n = Math.min(COPY_BLOCK, e.length - done);
          const { bytesRead } = await io(dataPath, () => data!.read(buf, 0, n, e.dataPos + done));
          if (bytesRead !== n) {
            // Guarded against above; a short read means the file changed under us.
            throw storeError(
              'STORE_DELTA_MISSING',
              'integrity',
              `${dataPath} is shorter than its index says`,
              {
                hint: 'The staged delta is damaged; remove it and run the job again.',
              },
            );
          }
          await io(t.path, () => writeAllAt(t.fh, buf.subarray(0, n), e.offset + done));
          done += n;
        }
      } else {
        addRange(t.punches, e.offset, e.length);
        t.punchEnd = Math.max(t.punchEnd, e.offset + e.length);
        if (t.punches.length >= PUNCH_BATCH) await flush(t, options.log);
      }
      if (first && options.crashMidway) crashPoint('mid-apply');
      first = false;
    }
    for (const t of targets) {
      await flush(t, options.log);
      await io(t.path, () => t.fh.sync());
    }
  } finally {
    await Promise.all([data, index, ...targets.map((t) => t.fh)].map((h) => h?.close().catch(() => {})));
  }
}

async function flush(t: Target, log: Logger): Promise<void> {
  if (!t.punches.length) return;
  await punchHoles(t.fh, t.path, t.punches, log);
  t.punches = [];
  t.punchEnd = 0;
}
