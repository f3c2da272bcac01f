/**
 * Applying a staged delta to the `_incomplete` images (docs/design.md §4.2 step 3): the index in order,
 * data entries as positioned writes, zero entries as punched holes. Idempotent: applying again
 * after a crash gives the same images. Memory: two read windows and a bounded list of pending
 * holes.
 *
 * Speed: a delta of small scattered extents (a typical incremental: thousands of 64 KiB blocks)
 * used to cost two round trips to the thread pool per entry, one after the other. The staged data
 * lies in index order, so it is read sequentially in large windows, and the image writes from a
 * window run several at a time (window-writer.ts).
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { DigestAlgorithm } from '../../../core/digest.ts';
import type { Logger } from '../../../core/log.ts';
import { crashPoint } from '../../crash.ts';
import { invalidFile, storeError } from '../../errors.ts';
import type { StoreContext } from '../context.ts';
import type { IndexEntry } from '../delta-log.ts';
import { readIndexEntries, stagedFiles } from '../deltas.ts';
import { DirectReads } from '../direct-io.ts';
import { io } from '../files.ts';
import { addRange, type ByteRange } from '../holes.ts';
import type { WritableImage } from '../images.ts';
import type { RangeSet } from '../range-set.ts';
import type { DeltaRecord } from '../records.ts';
import { damagedChunks } from './staged-check.ts';
import { WindowWriter } from './window-writer.ts';

const PUNCH_BATCH = 256;

/** One `_incomplete` image being brought up to date, and the holes still to punch in it. */
interface Target {
  name: string;
  image: WritableImage;
  size: number;
  punches: ByteRange[];
  punchEnd: number;
}

export interface ApplyOptions {
  /** Crash (test hook, crash.ts) after the first entry: this is the last delta applied. */
  crashMidway: boolean;
  log: Logger;
  /** Per disk name: ranges a later delta writes; this delta's bytes there are left out. */
  overwritten?: Map<string, RangeSet>;
  /** Per disk name: filled with every range this delta's entries cover. */
  record?: Map<string, RangeSet>;
  /**
   * Per disk name: filled with the chunks whose staged bytes do not match their digests, which
   * are written all the same. Without it such a chunk stops the apply with STORE_DELTA_DAMAGED.
   */
  damaged?: Map<string, number[]>;
}

/**
 * Applies delta `delta` to the server's `_incomplete` images. Disks the delta lists are created
 * (sparse) if missing and set to the delta's size; `_incomplete` images of `knownDisks` the delta
 * does not list are removed, so after each delta the slot holds exactly that generation's disks.
 */
export async function applyDelta(
  ctx: StoreContext,
  delta: DeltaRecord,
  knownDisks: Iterable<string>,
  options: ApplyOptions,
): Promise<void> {
  const server = delta.server;
  const listed = new Set(delta.meta.disks.map((d) => d.name));
  for (const name of knownDisks) {
    if (!listed.has(name)) await ctx.images.remove(server, name, 'incomplete');
  }
  const targets: Target[] = [];
  const files = stagedFiles(delta.dataDir);
  let data: FileHandle | null = null;
  let dataIn: DirectReads | null = null;
  let index: FileHandle | null = null;
  try {
    for (const d of delta.meta.disks) {
      const image = await ctx.images.openWritable(server, d.name, 'incomplete', {
        create: 'if-missing',
        size: d.size,
        log: options.log,
      });
      targets.push({ name: d.name, image, size: d.size, punches: [], punchEnd: 0 });
    }
    const dataFh = await io(files.data, () => open(files.data, 'r'));
    data = dataFh;
    dataIn = await io(files.data, () => DirectReads.open(files.data, dataFh, ctx.directIo));
    index = await io(files.index, () => open(files.index, 'r'));
    const writer = new WindowWriter(dataIn, files.data, delta.dataLength);
    try {
      await applyEntries(
        ctx.descriptor.digest,
        delta,
        readIndexEntries(index, delta.indexLength, files.index),
        targets,
        writer,
        options,
      );
    } finally {
      await writer.abandon();
    }
    for (const t of targets) {
      await flushPunches(t, options.log);
      await t.image.sync();
    }
  } finally {
    await dataIn?.close();
    await Promise.all(targets.map((t) => t.image.close()));
    await Promise.all([data, index].map((h) => h?.close().catch(() => {})));
  }
}

/** The index entries in order: data through `writer`, zero ranges as holes. */
async function applyEntries(
  alg: DigestAlgorithm,
  delta: DeltaRecord,
  entries: AsyncIterable<IndexEntry>,
  targets: Target[],
  writer: WindowWriter,
  options: ApplyOptions,
): Promise<void> {
  const indexPath = stagedFiles(delta.dataDir).index;
  let first = true;
  for await (const e of entries) {
    const t = targets[e.disk];
    if (
      !t ||
      e.offset + e.length > t.size ||
      (e.kind === 'data' && e.dataPos + e.length > delta.dataLength)
    ) {
      throw invalidFile(indexPath, `entry out of range (disk ${e.disk}, ${e.offset}+${e.length})`);
    }
    options.record?.get(t.name)?.add(e.offset, e.length);
    const later = options.overwritten?.get(t.name);
    const pieces = later ? later.gaps(e.offset, e.length) : [{ offset: e.offset, length: e.length }];
    const check = (offset: number, bytes: Buffer) => {
      const bad = damagedChunks(alg, e, offset, bytes);
      if (bad.length) onDamage(delta, t.name, bad, options);
    };
    for (const p of pieces) {
      if (e.kind === 'data') {
        if (t.punches.length && t.punchEnd > p.offset) {
          // Holes punched before this write, not after it: the index order decides.
          await writer.settle();
          await flushPunches(t, options.log);
        }
        await writer.write(t.image, p.offset, e.dataPos + (p.offset - e.offset), p.length, check);
      } else {
        addRange(t.punches, p.offset, p.length);
        t.punchEnd = Math.max(t.punchEnd, p.offset + p.length);
        if (t.punches.length >= PUNCH_BATCH) {
          await writer.settle();
          await flushPunches(t, options.log);
        }
      }
    }
    if (first && options.crashMidway) {
      await writer.settle();
      crashPoint('mid-apply');
    }
    first = false;
  }
  await writer.settle();
}

/** Damaged staged bytes: collected where the caller asked, otherwise the end of this apply. */
function onDamage(delta: DeltaRecord, disk: string, chunks: number[], options: ApplyOptions): void {
  const into = options.damaged;
  if (into) {
    into.set(disk, [...(into.get(disk) ?? []), ...chunks]);
    return;
  }
  throw storeError(
    'STORE_DELTA_DAMAGED',
    'integrity',
    `the staged data of delta ${delta.id} does not match its digests (disk ${disk}, chunks ${chunks.slice(0, 8).join(', ')}${chunks.length > 8 ? ', …' : ''})`,
    {
      hint: 'The medium that holds the staged deltas returned changed bytes; check it. The next replication copies the newest generation instead of replaying this delta.',
      details: { server: delta.server, deltaId: delta.id, disk, chunks: chunks.slice(0, 64) },
    },
  );
}

async function flushPunches(t: Target, log: Logger): Promise<void> {
  if (!t.punches.length) return;
  await t.image.punch(t.punches, log);
  t.punches = [];
  t.punchEnd = 0;
}
