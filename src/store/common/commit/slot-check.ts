/**
 * Bit rot must not spread (issue 13.5). The new slot starts from an existing generation — the
 * recycled oldest, or the newest when it is copied or cloned — and keeps every chunk that no delta
 * rewrites. Its digests are derived from the base's without reading it back (digests.ts), so a
 * flipped bit in a kept chunk would become part of the newest generation under a digest it does
 * not match. Before anything changes (planCommit), that generation's images are therefore read
 * and compared with its own digests. A damaged chunk is repaired in place from another generation
 * holding the same chunk (same digest, bytes that match it: unchanged chunks are the same in every
 * generation); one that cannot be is harmless when the deltas the slot gets rewrite it. Any other
 * refuses the commit (STORE_RESEND_NEEDED) and is marked to be sent again from the source
 * (resend.ts): the damage is never copied into a new generation, and the next attempt repairs it.
 *
 * Cost: one read of the slot's source images, in 4 MiB blocks (bounded memory), except ranges
 * stored as zero chunks (never written, or sent as zero ranges: holes of the image), so a disk
 * declared huge and barely written costs what it holds, not its size (issue 13.2). Not on every
 * commit: a source checked whole within the store's recheck window (checked.ts, default a day) is
 * not read again, so the cost of a commit follows its change (issue 19); damage younger than the
 * window is found by the first check after it (a commit, `haven verify`, a scrub) and repaired
 * then from another generation or the source, its digests never having changed.
 */
import { open } from 'node:fs/promises';
import { alignedBuffer } from '../../../core/aligned-memory.ts';
import { chunkDigests, DIGEST_BYTES } from '../../../core/digest.ts';
import { exec } from '../../../core/exec.ts';
import type { Logger } from '../../../core/log.ts';
import { storeError } from '../../errors.ts';
import type { Generation } from '../../types.ts';
import { CHUNK_SIZE } from '../../types.ts';
import { checkedAt, forgetChecked, needsRecheck, recordChecked } from '../checked.ts';
import type { StoreContext } from '../context.ts';
import { deleteDelta, stagedFiles } from '../deltas.ts';
import { io } from '../files.ts';
import type { ReadableImage } from '../images.ts';
import { imageName } from '../names.ts';
import type { DeltaRecord } from '../records.ts';
import { addResendMarks } from '../resend.ts';
import type { RotationPlan } from '../rotation-plan.ts';
import { expandZeroEntries, isUnstaged, openGenerationSums, readSums, SUMS_BLOCK_CHUNKS } from '../sums.ts';

const READ_CHUNKS = 64;
const NO_DIGESTS = Buffer.alloc(READ_CHUNKS * DIGEST_BYTES);

/** A generation that may lend a chunk: where its images are now, and its digests. */
interface Donor {
  generation: Generation;
  seq: number;
}

/** When each disk of the new generation was last known to match its digests (ISO times). */
export type CheckedTimes = Record<string, string>;

/**
 * Checks (and repairs) the generation the planned slot starts from; throws when it cannot.
 * A disk whose whole image was checked within the store's recheck window (checked.ts) is not read
 * again, unless the delta is a checksum resync (`haven protect --resync` asks for a full pass).
 * Returns when each disk of the new generation was last checked: its oldest chunk's check.
 */
export async function checkSlotSource(
  ctx: StoreContext,
  delta: DeltaRecord,
  generations: Generation[],
  plan: RotationPlan,
  log: Logger,
): Promise<CheckedTimes> {
  const now = Date.now();
  const times: CheckedTimes = Object.fromEntries(
    delta.meta.disks.map((d) => [d.name, new Date(now).toISOString()]),
  );
  const slot = plan.slot;
  if (slot.kind === 'fresh') return times;
  const sourceId = slot.kind === 'recycle' ? slot.generationId : slot.fromGenerationId;
  const index = generations.findIndex((g) => g.id === sourceId);
  const source = generations[index];
  if (!source) return times;
  // Before the renames, generation i is at `_i+1`.
  const donors: Donor[] = generations
    .map((g, i) => ({ generation: g, seq: i + 1 }))
    .filter((d) => d.seq !== index + 1);
  const unrepaired: string[] = [];
  for (const d of source.disks) {
    if (!delta.meta.disks.some((x) => x.name === d.name)) continue;
    const at = await checkedAt(ctx, delta.server, source.id, d.name);
    if (at !== null && delta.meta.mode !== 'resync' && !needsRecheck(ctx, at, now)) {
      times[d.name] = new Date(at).toISOString();
      log.info('the generation the new slot starts from was checked recently; not read again', {
        server: delta.server,
        generationId: source.id,
        disk: d.name,
        checkedAt: times[d.name],
        recheckAfterS: ctx.recheckAfterMs / 1000,
      });
      continue;
    }
    const self = { generation: source, seq: index + 1 };
    const left = await checkDisk(ctx, delta, self, d.name, donors, slot.kind, log);
    if (!left.chunks.length) {
      // A copied-from newest stays a generation: its check counts for the next commit too.
      if (slot.kind === 'copy') await recordChecked(ctx, delta.server, source.id, d.name, now, log);
      continue;
    }
    await forgetChecked(ctx, delta.server, source.id, d.name, log);
    const shown = left.chunks.slice(0, 8).join(', ') + (left.chunks.length > 8 || left.more ? ', …' : '');
    unrepaired.push(`${imageName(delta.server, d.name, index + 1)} chunks ${shown}`);
    await addResendMarks(ctx, delta.server, d.name, left.chunks, d.size, left.more, log);
  }
  if (unrepaired.length) await refuseForResend(ctx, delta, source, unrepaired, log);
  return times;
}

/**
 * Damage only the source can repair: the sealed delta is discarded (it lacks those chunks; the
 * sender still holds its point in time) and the commit refused with STORE_RESEND_NEEDED. The
 * marks make the next attempt a checksum resync that sends the damaged chunks again (resend.ts);
 * the engine makes it within the same run.
 */
async function refuseForResend(
  ctx: StoreContext,
  delta: DeltaRecord,
  source: Generation,
  unrepaired: string[],
  log: Logger,
): Promise<never> {
  await deleteDelta(ctx, delta, log);
  throw storeError(
    'STORE_RESEND_NEEDED',
    'integrity',
    `${delta.server}: damaged chunks no other generation holds intact: ${unrepaired.join('; ')}`,
    {
      hint: `Nothing was committed and the damage was not copied into a new generation. Run \`haven protect ${delta.server}\` again: it sends those chunks again from the source (checksum resync).`,
      details: { server: delta.server, generationId: source.id, deltaId: delta.id },
    },
  );
}

/** Damaged chunks listed per disk before the whole disk is marked for sending again. */
const LISTED_CHUNKS = 4096;

/** One disk of the source generation: the chunks that stay damaged (`more`: beyond those listed). */
async function checkDisk(
  ctx: StoreContext,
  delta: DeltaRecord,
  source: Donor,
  disk: string,
  donors: Donor[],
  slotKind: 'recycle' | 'copy',
  log: Logger,
): Promise<{ chunks: number[]; more: boolean }> {
  const server = delta.server;
  const size = source.generation.disks.find((x) => x.name === disk)?.size ?? 0;
  const image = await ctx.images.openRead(server, disk, source.seq);
  const sums = await openGenerationSums(ctx, server, source.generation.id, disk);
  if (!image || !sums) {
    await image?.close();
    await sums?.close();
    return { chunks: [], more: false };
  }
  const total = Math.ceil(size / CHUNK_SIZE);
  const left: number[] = [];
  let more = false;
  let count = 0;
  try {
    const buf = alignedBuffer(READ_CHUNKS * CHUNK_SIZE);
    for (const range of await storedRanges(sums.path, total, log)) {
      for (let first = range.from; first < range.to; first += SUMS_BLOCK_CHUNKS) {
        const stored = await sums.readStored(first, Math.min(SUMS_BLOCK_CHUNKS, range.to - first));
        for (let i = 0; i * DIGEST_BYTES < stored.length; i += READ_CHUNKS) {
          const entries = stored.subarray(i * DIGEST_BYTES, (i + READ_CHUNKS) * DIGEST_BYTES);
          // Ranges never written or sent as zero ranges are holes of the image: nothing to rot.
          if (entries.equals(NO_DIGESTS.subarray(0, entries.length))) continue;
          const at = first + i;
          const n = Math.min((entries.length / DIGEST_BYTES) * CHUNK_SIZE, size - at * CHUNK_SIZE);
          await image.read(buf, n, at * CHUNK_SIZE);
          const got = chunkDigests(ctx.descriptor.digest, buf.subarray(0, n), CHUNK_SIZE);
          const want = expandZeroEntries(Buffer.from(entries), at, size, ctx.descriptor.digest);
          for (let k = 0; k * DIGEST_BYTES < got.length; k++) {
            const a = k * DIGEST_BYTES;
            if (got.compare(want, a, a + DIGEST_BYTES, a, a + DIGEST_BYTES) === 0) continue;
            count++;
            const c = at + k;
            log.warn('a damaged chunk in the generation the new slot starts from', {
              server,
              generationId: source.generation.id,
              disk,
              chunk: c,
            });
            // Repaired first where possible: a copied-from newest stays a generation after the rotation.
            if (await repair(ctx, server, source, disk, c, size, donors, log)) continue;
            if (await rewritten(ctx, delta, source, disk, c, donors, slotKind)) continue;
            if (left.length < LISTED_CHUNKS) left.push(c);
            else more = true;
          }
        }
      }
    }
  } finally {
    await image.close();
    await sums.close();
  }
  if (count) log.warn('damaged chunks checked', { server, disk, damaged: count, unrepaired: left.length });
  return { chunks: left, more };
}

/**
 * Whether the slot's deltas rewrite chunk `c` anyway: the new delta staged it, or (recycled slot)
 * a newer generation's digest differs, so a delta of the chain the slot replays wrote it.
 */
async function rewritten(
  ctx: StoreContext,
  delta: DeltaRecord,
  source: Donor,
  disk: string,
  c: number,
  donors: Donor[],
  slotKind: 'recycle' | 'copy',
): Promise<boolean> {
  if (delta.kind === 'staged') {
    // Raw entries: all zeros is "not staged" in a delta's own digest file.
    const path = stagedFiles(delta.dataDir).sums(disk);
    const fh = await open(path, 'r').catch(() => null);
    if (fh) {
      try {
        if (!isUnstaged(await io(path, () => readSums(fh, c, 1)), 0)) return true;
      } finally {
        await fh.close();
      }
    }
  }
  if (slotKind !== 'recycle') return false;
  const mine = await digestOf(ctx, delta.server, source, disk, c);
  for (const d of donors) {
    if (d.seq > source.seq) continue;
    const theirs = await digestOf(ctx, delta.server, d, disk, c);
    if (!theirs || !mine || !theirs.equals(mine)) return true;
  }
  return false;
}

async function digestOf(
  ctx: StoreContext,
  server: string,
  g: Donor,
  disk: string,
  c: number,
): Promise<Buffer | null> {
  const size = g.generation.disks.find((x) => x.name === disk)?.size;
  if (size === undefined || c * CHUNK_SIZE >= size) return null;
  const sums = await openGenerationSums(ctx, server, g.generation.id, disk);
  if (!sums) return null;
  try {
    return await sums.read(c, 1, size);
  } finally {
    await sums.close();
  }
}

/** Copies chunk `c` from a generation that holds it intact (same digest, matching bytes). */
async function repair(
  ctx: StoreContext,
  server: string,
  source: Donor,
  disk: string,
  c: number,
  size: number,
  donors: Donor[],
  log: Logger,
): Promise<boolean> {
  const want = await digestOf(ctx, server, source, disk, c);
  if (!want) return false;
  const length = Math.min(CHUNK_SIZE, size - c * CHUNK_SIZE);
  const buf = alignedBuffer(CHUNK_SIZE);
  for (const d of donors) {
    const theirs = await digestOf(ctx, server, d, disk, c);
    if (!theirs?.equals(want)) continue;
    const image = await ctx.images.openRead(server, disk, d.seq);
    if (!image) continue;
    try {
      await readChunk(image, buf, length, c);
    } finally {
      await image.close();
    }
    if (!chunkDigests(ctx.descriptor.digest, buf.subarray(0, length), CHUNK_SIZE).equals(want)) continue;
    const out = await ctx.images.openWritable(server, disk, source.seq, { create: 'never', log });
    try {
      await io(out.path, () => out.out.write(buf.subarray(0, length), c * CHUNK_SIZE));
      await out.sync();
    } finally {
      await out.close();
    }
    log.warn('repaired a damaged chunk from another generation', {
      server,
      disk,
      chunk: c,
      generationId: source.generation.id,
      from: d.generation.id,
    });
    return true;
  }
  return false;
}

function readChunk(image: ReadableImage, buf: Buffer, length: number, c: number): Promise<void> {
  return image.read(buf, length, c * CHUNK_SIZE);
}

/** Digest files up to this size are scanned whole; larger ones only where they hold data. */
const SCAN_WHOLE_BYTES = 16 * 1024 * 1024;

/**
 * The chunk ranges [from, to) of a digest file of `total` entries that hold data: holes are zero
 * chunks, and a disk declared huge and barely written has a digest file that is nearly all hole
 * (issue 13.2), which even reading costs time in proportion to its size. `qemu-img map` asks the
 * filesystem (SEEK_DATA/SEEK_HOLE); where it cannot, the whole file is scanned.
 */
async function storedRanges(
  path: string,
  total: number,
  log: Logger,
): Promise<{ from: number; to: number }[]> {
  const whole = [{ from: 0, to: total }];
  if (total * DIGEST_BYTES <= SCAN_WHOLE_BYTES) return whole;
  try {
    const r = await exec('qemu-img', ['map', '-f', 'raw', '--output=json', path]);
    const map = JSON.parse(r.stdout) as { start: number; length: number; data: boolean }[];
    return map
      .filter((e) => e.data)
      .map((e) => ({
        from: Math.floor(e.start / DIGEST_BYTES),
        to: Math.min(total, Math.ceil((e.start + e.length) / DIGEST_BYTES)),
      }));
  } catch (e) {
    log.debug('no map of the digest file; scanning it whole', { path, err: e });
    return whole;
  }
}
