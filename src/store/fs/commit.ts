/**
 * Committing a sealed delta: DESIGN §4.2 steps 2–4, driven by a journal so that a crash anywhere
 * is rolled forward by running the same code again (`rollForward`, from commit(), recover(),
 * openDelta and readers).
 *
 * The journal (`.haven/servers/<server>/journal.json`) holds the whole rotation plan
 * (rotation-plan.ts) plus progress counters, and moves through three phases:
 * - `planned`: dropped generations (copies shrank) are deleted, then the rename groups run in
 *   order (`_N` → `_incomplete`, `_k` → `_k+1`), the counter advancing after each group; a group
 *   is redone only if its source name still exists, which is unambiguous within a group.
 * - `renamed`: names are stable. The slot gets its starting content (copy of the newest when
 *   fewer than N generations exist), the deltas it missed are applied in order (each one
 *   idempotent; the counter advances after each fsync), the new generation's digests are written,
 *   the definition is created if missing.
 * - `committing`: the manifest is written, `_incomplete` → `_1`, the delta is marked committed
 *   (or removed), the journal removed, unneeded deltas and digests pruned.
 * Order of durability: data, delta record (seal), manifest, rename (DESIGN §4.2).
 */
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { copyFile, open, rename, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { digest } from '../../core/digest.ts';
import type { Logger } from '../../core/log.ts';
import { crashPoint } from '../crash.ts';
import { storeError } from '../errors.ts';
import { generationsNeedingProducers, planRotation, type Seq } from '../rotation-plan.ts';
import { CHUNK_SIZE, type Generation } from '../types.ts';
import { applyDelta, deltaDataPresent, readIndexEntries } from './apply.ts';
import { clonesImages, copyImage } from './copy.ts';
import { deleteDelta } from './delta-writer.ts';
import {
  createFileOnce,
  ensureDir,
  exists,
  fsyncDir,
  io,
  listDir,
  readAllAt,
  removeIfExists,
  removeTree,
  tmpName,
} from './files.ts';
import { imageName } from './layout.ts';
import { acquireLock } from './lock.ts';
import { RangeSet } from './range-set.ts';
import type { DeltaRecord, Journal, ManifestFile } from './records.ts';
import {
  type FsContext,
  listDeltaRecords,
  MANIFEST_VERSION,
  readDeltaRecord,
  readJournal,
  readManifest,
  removeJournal,
  writeDeltaRecord,
  writeJournal,
  writeManifest,
} from './state.ts';
import {
  chunkCount,
  chunkLength,
  fillUnstaged,
  SumsOverlay,
  sumsLength,
  writeSums,
  writeZeroSums,
} from './sums.ts';

/** Runs `fn` while holding the server's manifest lock (short; waits for other holders). */
export async function withManifestLock<T>(ctx: FsContext, server: string, fn: () => Promise<T>): Promise<T> {
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
 * Completes whatever commit of this server is pending: an interrupted rotation (journal), or a
 * sealed delta not yet committed. The caller holds the server lock. Returns the generation the
 * last completed commit produced, or null when nothing was pending.
 */
export async function rollForward(ctx: FsContext, server: string, log: Logger): Promise<Generation | null> {
  let result: Generation | null = null;
  for (;;) {
    let j = await readJournal(ctx, server);
    if (!j) {
      const sealed = (await listDeltaRecords(ctx, server)).filter((r) => r.state === 'sealed');
      const rec = sealed[0];
      if (!rec) return result;
      const m = await readManifest(ctx, server);
      const done = m?.generations.find((g) => g.id === rec.generationId);
      if (done) {
        await markCommitted(ctx, rec, log);
        result = done;
        continue;
      }
      j = await planCommit(ctx, rec, m, log);
    } else {
      log.info('rolling forward an interrupted commit', { server, deltaId: j.deltaId, phase: j.phase });
    }
    result = await executeJournal(ctx, j, log);
  }
}

async function planCommit(
  ctx: FsContext,
  rec: DeltaRecord,
  m: ManifestFile | null,
  log: Logger,
): Promise<Journal> {
  const server = rec.server;
  const gens = m?.generations ?? [];
  const newest = gens[0]?.id ?? null;
  if (rec.meta.baseGenerationId !== newest) {
    throw storeError(
      'STORE_BASE_MISMATCH',
      'integrity',
      `sealed delta ${rec.id} of ${server} does not apply to the newest generation`,
      {
        hint: 'Remove the delta directory named in the details; the next run sends a checksum resync.',
        details: { deltaId: rec.id, base: rec.meta.baseGenerationId, newest },
      },
    );
  }
  const records = await listDeltaRecords(ctx, server);
  const producer = new Map<string, DeltaRecord>();
  for (const r of records) if (r.state === 'committed') producer.set(r.generationId, r);
  const present = new Map<string, boolean>();
  for (const r of producer.values()) present.set(r.id, await deltaDataPresent(r));

  const imagesPresent = async (seq: Seq, disks: { name: string }[]) => {
    for (const d of disks) if (!(await exists(ctx.layout.image(server, d.name, seq)))) return false;
    return true;
  };
  // A recycled generation must have all its images, or replaying deltas onto it means nothing.
  const recycledOk =
    gens.length >= rec.meta.copies
      ? await imagesPresent(rec.meta.copies, gens[rec.meta.copies - 1]!.disks)
      : true;
  // Where the filesystem clones files, the new slot is a clone of the newest generation plus
  // the new delta; the recycled oldest is simply removed. That needs the newest images present.
  const cloneNewest =
    gens.length >= rec.meta.copies &&
    (await rotationClones(ctx, rec.meta.copies, log)) &&
    (await imagesPresent(1, gens[0]!.disks));
  const plan = planRotation({
    generations: gens.map((g) => ({ id: g.id, disks: g.disks.map((d) => d.name) })),
    copies: rec.meta.copies,
    cloneNewest,
    producerAvailable: (id) => {
      if (!recycledOk) return false;
      const p = producer.get(id);
      const i = gens.findIndex((g) => g.id === id);
      return !!p && present.get(p.id) === true && p.meta.baseGenerationId === (gens[i + 1]?.id ?? null);
    },
  });
  if (!recycledOk && plan.slot.kind === 'recycle') {
    throw storeError(
      'STORE_IMAGE_MISSING',
      'integrity',
      `an image of ${server}'s only generation is missing`,
      {
        hint: 'Run `haven verify`; with copies 1 the missing image cannot be rebuilt from deltas. Discard the server and replicate it again.',
      },
    );
  }
  const missing = (what: string) =>
    storeError('STORE_IMAGE_MISSING', 'integrity', `an image of ${what} of ${server} is missing`, {
      hint: 'Run `haven verify`; nothing was changed. Restore the image, or discard the server and replicate it again.',
    });
  if (plan.slot.kind === 'fresh' && !(await imagesPresent('incomplete', rec.meta.disks))) {
    throw missing('the first run');
  }
  if (plan.slot.kind === 'copy' && !(await imagesPresent(1, gens[0]!.disks)))
    throw missing('the newest generation');
  if (plan.slot.kind === 'copy' && gens.length >= rec.meta.copies) {
    if (cloneNewest) log.debug('the new slot is a clone of the newest generation (reflinks)', { server });
    else {
      log.info('a delta the oldest generation missed is gone; the new slot starts as a copy of the newest', {
        server,
      });
    }
  }
  const apply = gens.length === 0 ? [] : [...plan.applyProducersOf.map((id) => producer.get(id)!.id), rec.id];

  if (plan.slot.kind === 'copy') {
    const kind = cloneNewest ? 'clone' : 'copy';
    await checkSpace(ctx, rec, { kind, from: gens[0]! }, apply, records);
  }
  if (plan.slot.kind === 'recycle') {
    const recycled = gens[rec.meta.copies - 1]!;
    await checkSpace(ctx, rec, { kind: 'recycle', from: recycled }, apply, records);
  }

  const j: Journal = {
    format: 'haven-journal',
    version: 1,
    server,
    deltaId: rec.id,
    generationId: rec.generationId,
    createdAt: new Date().toISOString(),
    kind: gens.length ? 'rotate' : 'first',
    baseGenerationId: newest,
    copies: rec.meta.copies,
    phase: 'planned',
    dropped: plan.dropped.map((g) => ({ id: g.id, seq: g.seq, disks: g.disks })),
    recycled: plan.recycled
      ? { id: plan.recycled.id, seq: plan.recycled.seq, disks: plan.recycled.disks }
      : null,
    survivors: plan.survivors,
    renames: plan.renames,
    slot: plan.slot,
    apply,
    droppedDone: false,
    renamedGroups: 0,
    slotReady: false,
    appliedDeltas: 0,
    digestsDone: false,
  };
  await writeJournal(ctx, j);
  crashPoint('after-journal');
  return j;
}

/**
 * Whether this store's rotations clone the newest generation instead of replaying deltas onto
 * the oldest: it keeps at least two copies, cloning is not turned off, and the filesystem clones.
 */
async function rotationClones(ctx: FsContext, copies: number, log: Logger): Promise<boolean> {
  return copies >= 2 && ctx.reflinks && (await clonesImages(ctx.layout.root, log));
}

/**
 * Refuses a rotation that cannot finish for lack of space before anything is renamed, so the
 * store is never left mid-rotation by a predictable NO_SPACE. Per disk of the new generation,
 * applying can only allocate blocks where the slot image has holes, and at most as many as the
 * applied deltas carry data for it; a copied slot first needs the source's allocated blocks. A
 * cloned slot shares the source's blocks, but every block the delta writes is copied on write.
 */
async function checkSpace(
  ctx: FsContext,
  rec: DeltaRecord,
  slot: { kind: 'recycle' | 'copy' | 'clone'; from: Generation },
  apply: string[],
  records: DeltaRecord[],
): Promise<void> {
  const deltas = apply.map((id) => (id === rec.id ? rec : records.find((x) => x.id === id)));
  let need = 1 << 20;
  for (const d of rec.meta.disks) {
    const data = deltas.reduce((n, r) => n + (r?.counts[d.name]?.dataBytes ?? 0), 0);
    const src = slot.from.disks.find((x) => x.name === d.name);
    const st = src ? await stat(ctx.layout.image(rec.server, d.name, slot.from.seq)).catch(() => null) : null;
    const allocated = st ? st.blocks * 512 : 0;
    if (slot.kind === 'copy') need += allocated;
    need +=
      (slot.kind === 'clone' ? data : Math.min(data, Math.max(0, d.size - allocated))) + sumsLength(d.size);
  }
  const fs = await io(ctx.layout.root, () => statfs(ctx.layout.root));
  const free = fs.bavail * fs.bsize;
  if (free < need) {
    throw storeError(
      'NO_SPACE',
      'resource',
      `not enough space in ${ctx.layout.root} to commit ${rec.server}`,
      {
        hint: 'Free space on the target filesystem, then run the replication again: the durable delta is committed first. Stored generations are intact.',
        details: { needBytes: need, freeBytes: free },
      },
    );
  }
}

async function executeJournal(ctx: FsContext, j: Journal, log: Logger): Promise<Generation> {
  const { layout } = ctx;
  const server = j.server;
  const rec = await readDeltaRecord(ctx, server, j.deltaId);
  if (!rec) {
    // A first run's record is removed once its generation is committed; a crash right after
    // that leaves only the journal to clear.
    const done = (await readManifest(ctx, server))?.generations.find((g) => g.id === j.generationId);
    if (done && j.phase === 'committing') {
      await removeJournal(ctx, server);
      await fsyncDir(layout.serverDir(server));
      await prune(ctx, server, log);
      return done;
    }
    throw storeError(
      'STORE_DELTA_MISSING',
      'integrity',
      `the journal of ${server} names delta ${j.deltaId}, which is gone`,
      {
        hint: 'The staged delta was removed by hand; restore it, or remove the journal and run `haven verify`.',
      },
    );
  }

  if (j.phase === 'planned') {
    if (!j.droppedDone) {
      for (const g of j.dropped)
        for (const d of g.disks) await removeIfExists(layout.image(server, d, g.seq));
      await fsyncDir(layout.root);
      j.droppedDone = true;
      await writeJournal(ctx, j);
    }
    for (let i = j.renamedGroups; i < j.renames.length; i++) {
      const g = j.renames[i]!;
      for (const d of g.disks) {
        const from = layout.image(server, d, g.from);
        const to = layout.image(server, d, g.to);
        if (await exists(from)) await io(from, () => rename(from, to));
        else if (!(await exists(to)))
          log.warn('image missing during rotation', { image: imageName(server, d, g.from) });
      }
      await fsyncDir(layout.root);
      j.renamedGroups = i + 1;
      await writeJournal(ctx, j);
      if (i === 0) crashPoint('mid-rename');
    }
    j.phase = 'renamed';
    await writeJournal(ctx, j);
    if (j.kind === 'rotate') crashPoint('after-renames');
  }

  if (j.phase === 'renamed') {
    const t0 = performance.now();
    if (j.kind === 'rotate') await prepareAndApply(ctx, j, rec, log);
    const t1 = performance.now();
    if (!j.digestsDone) {
      await writeGenerationDigests(ctx, j, rec);
      log.debug('slot brought forward', {
        server,
        applyMs: Math.round(t1 - t0),
        digestsMs: Math.round(performance.now() - t1),
      });
      j.digestsDone = true;
      await writeJournal(ctx, j);
      crashPoint('after-digests');
    }
    await ensureDefinition(ctx, rec, log);
    crashPoint('after-definition');
    j.phase = 'committing';
    await writeJournal(ctx, j);
  }

  const gen = await withManifestLock(ctx, server, async () => {
    const cur = await readManifest(ctx, server);
    const done = cur?.generations.find((g) => g.id === j.generationId);
    if (done) return done;
    const m = buildManifest(j, rec, cur);
    await writeManifest(ctx, m);
    return m.generations[0]!;
  });
  crashPoint('after-manifest');

  for (const d of rec.meta.disks) {
    const from = layout.image(server, d.name, 'incomplete');
    const to = layout.image(server, d.name, 1);
    if (await exists(from)) await io(from, () => rename(from, to));
    else if (!(await exists(to))) {
      throw storeError(
        'STORE_IMAGE_MISSING',
        'integrity',
        `${imageName(server, d.name, 'incomplete')} vanished before it became _1`,
        {
          hint: 'Run `haven verify`; the previous generations are intact.',
        },
      );
    }
  }
  await fsyncDir(layout.root);
  crashPoint('after-final-rename');

  await markCommitted(ctx, rec, log);
  await removeJournal(ctx, server);
  await fsyncDir(layout.serverDir(server));
  await prune(ctx, server, log);
  log.info('generation committed', { server, generationId: gen.id, deltaBytes: gen.deltaBytes });
  return gen;
}

async function markCommitted(ctx: FsContext, rec: DeltaRecord, log: Logger): Promise<void> {
  if (rec.kind === 'direct') {
    // A first run's delta has nothing to replay later: its images became the generation.
    rec.state = 'committed';
    await deleteDelta(ctx, rec, log);
    return;
  }
  if (rec.state !== 'committed') {
    rec.state = 'committed';
    rec.committedAt = new Date().toISOString();
    await writeDeltaRecord(ctx, rec);
  }
  // The positional digest cache only served expectedDigests while the delta was open.
  for (const d of rec.meta.disks) await removeIfExists(join(rec.dataDir, `${d.name}.sums`));
}

/** Step 2½ and 3: the slot's starting content, then every delta it missed, in order. */
async function prepareAndApply(ctx: FsContext, j: Journal, rec: DeltaRecord, log: Logger): Promise<void> {
  const server = j.server;
  for (;;) {
    const deltas: DeltaRecord[] = [];
    for (const id of j.apply) {
      const r = id === rec.id ? rec : await readDeltaRecord(ctx, server, id);
      if (r && (await deltaDataPresent(r))) deltas.push(r);
      else if (id === rec.id) {
        throw storeError('STORE_DELTA_MISSING', 'integrity', `the staged data of delta ${id} is missing`, {
          hint: `Mount the cache drive that holds ${rec.dataDir}; the next replication (or \`haven verify --store PATH\` on the target) completes the commit.`,
          details: { dataDir: rec.dataDir },
        });
      } else break;
    }
    if (deltas.length === j.apply.length) {
      if (!j.slotReady) {
        if (j.slot.kind === 'copy') {
          const wanted = new Set(rec.meta.disks.map((d) => d.name));
          for (const d of j.slot.disks) {
            if (!wanted.has(d)) continue;
            const to = ctx.layout.image(server, d, 'incomplete');
            await removeIfExists(to);
            const how = await copyImage(ctx.layout.image(server, d, j.slot.fromSeq), to, {
              directIo: ctx.directIo,
              reflink: ctx.reflinks,
              log,
            });
            log.debug('slot copied from the newest generation', { server, disk: d, how });
          }
          await fsyncDir(ctx.layout.root);
        }
        j.slotReady = true;
        await writeJournal(ctx, j);
        crashPoint('after-slot');
      }
      const known = new Set<string>([
        ...(j.recycled?.disks ?? []),
        ...(j.slot.kind === 'copy' ? j.slot.disks : []),
        ...deltas.flatMap((r) => r.meta.disks.map((d) => d.name)),
      ]);
      if (j.appliedDeltas === 0 && mergeable(deltas)) {
        await applyMerged(ctx, deltas, known, log);
        j.appliedDeltas = deltas.length;
        await writeJournal(ctx, j);
      }
      for (let i = j.appliedDeltas; i < deltas.length; i++) {
        await applyDelta(ctx, deltas[i]!, known, { crashMidway: i === deltas.length - 1, log });
        j.appliedDeltas = i + 1;
        await writeJournal(ctx, j);
      }
      crashPoint('after-apply');
      return;
    }
    // A delta the recycled generation missed vanished after planning (a cache drive removed):
    // start the slot over as a copy of the newest generation, which sits at `_2` now.
    const newest = j.survivors.find((s) => s.toSeq === 2);
    if (!newest) {
      throw storeError('STORE_DELTA_MISSING', 'integrity', `a staged delta of ${server} is missing`, {
        hint: 'Mount the cache drive that holds it; the next replication (or `haven verify --store PATH` on the target) completes the commit.',
      });
    }
    const m = await readManifest(ctx, server);
    const g = m?.generations.find((x) => x.id === newest.id);
    log.warn('a delta needed to update the oldest generation is gone; copying the newest instead', {
      server,
    });
    j.slot = {
      kind: 'copy',
      fromGenerationId: newest.id,
      fromSeq: 2,
      disks: g?.disks.map((d) => d.name) ?? [],
    };
    j.apply = [rec.id];
    j.slotReady = false;
    j.appliedDeltas = 0;
    await writeJournal(ctx, j);
  }
}

/** Index entries above which deltas are applied one after the other: the merge holds their ranges (~25 MB at most). */
const MERGE_MAX_ENTRIES = 1 << 18;

/**
 * Whether several deltas can be applied in one merged pass: more than one, the same disks with
 * the same sizes in each (a resize or a disk set change replays one by one, where truncation
 * order matters), and indexes small enough for their ranges to be held (an entry takes at least
 * 64 bytes of index).
 */
function mergeable(deltas: DeltaRecord[]): boolean {
  if (deltas.length < 2) return false;
  const shape = (r: DeltaRecord) => r.meta.disks.map((d) => `${d.name}:${d.size}`).join('/');
  const first = shape(deltas[0]!);
  if (!deltas.every((r) => shape(r) === first)) return false;
  return deltas.reduce((n, r) => n + r.indexLength / 64, 0) <= MERGE_MAX_ENTRIES;
}

/**
 * Step 3 for a recycled slot in one pass: the newest delta first, whole; then each older one
 * without the ranges a newer one writes. The result is what replaying them in order gives (every
 * byte ends as the newest delta that touches it left it), but a block the guest rewrote in each
 * run is written once, not once per delta. Interrupted, it is simply run again: it only writes
 * final contents.
 */
async function applyMerged(
  ctx: FsContext,
  deltas: DeltaRecord[],
  known: Set<string>,
  log: Logger,
): Promise<void> {
  const names = deltas[0]!.meta.disks.map((d) => d.name);
  const later = new Map(names.map((n) => [n, new RangeSet()]));
  for (let i = deltas.length - 1; i >= 0; i--) {
    const record = new Map(names.map((n) => [n, new RangeSet()]));
    // `later` is empty for the newest delta: it is applied whole.
    await applyDelta(ctx, deltas[i]!, known, {
      crashMidway: i === deltas.length - 1,
      log,
      overwritten: later,
      record,
    });
    for (const n of names) later.get(n)!.addAll(record.get(n)!);
  }
}

/**
 * The new generation's digests, without reading images back (except one chunk per resized
 * disk): first run: the delta's own sums, unstaged chunks filled with zero digests; later runs:
 * the base's digests, resized, overlaid with the delta's chunk digests in index order.
 */
async function writeGenerationDigests(ctx: FsContext, j: Journal, rec: DeltaRecord): Promise<void> {
  const { layout, descriptor } = ctx;
  const server = j.server;
  const alg = descriptor.digest;
  const dir = layout.digestsDir(server, j.generationId);
  await ensureDir(dir);
  await fsyncDir(layout.digestsRoot(server));
  if (rec.kind === 'direct') {
    for (const d of rec.meta.disks) {
      const src = join(rec.dataDir, `${d.name}.sums`);
      const dst = layout.sums(server, j.generationId, d.name);
      if (await exists(src)) await io(src, () => rename(src, dst));
      await io(dst, async () => {
        const fh = await open(dst, 'r+');
        try {
          await fh.truncate(sumsLength(d.size));
          await fillUnstaged(fh, alg, d.size);
          await fh.sync();
        } finally {
          await fh.close();
        }
      });
    }
    await fsyncDir(dir);
    await fsyncDir(rec.dataDir);
    return;
  }

  const m = await readManifest(ctx, server);
  const base = m?.generations.find((g) => g.id === j.baseGenerationId);
  const files = new Map<number, { fh: FileHandle; tmp: string; dst: string; overlay: SumsOverlay }>();
  const boundary = new Map<number, number>();
  try {
    for (const [i, d] of rec.meta.disks.entries()) {
      const dst = layout.sums(server, j.generationId, d.name);
      const tmp = tmpName(dst);
      const bd = base?.disks.find((x) => x.name === d.name);
      if (bd) {
        const src = layout.sums(server, base!.id, d.name);
        await io(src, () => copyFile(src, tmp, fsConstants.COPYFILE_FICLONE));
      }
      const fh = await io(tmp, () => open(tmp, bd ? 'r+' : 'w+'));
      files.set(i, { fh, tmp, dst, overlay: new SumsOverlay(fh) });
      await io(tmp, () => fh.truncate(sumsLength(d.size)));
      const oldChunks = bd ? chunkCount(bd.size) : 0;
      if (oldChunks < chunkCount(d.size)) await writeZeroSums(fh, alg, d.size, oldChunks, chunkCount(d.size));
      if (bd && bd.size !== d.size && Math.min(bd.size, d.size) % CHUNK_SIZE !== 0) {
        boundary.set(i, Math.floor(Math.min(bd.size, d.size) / CHUNK_SIZE));
      }
    }
    const indexPath = join(rec.dataDir, 'index');
    const index = await io(indexPath, () => open(indexPath, 'r'));
    try {
      for await (const e of readIndexEntries(index, rec.indexLength, indexPath)) {
        const f = files.get(e.disk);
        const d = rec.meta.disks[e.disk];
        if (!f || !d) continue;
        const first = e.offset / CHUNK_SIZE;
        const end = chunkCount(e.offset + e.length);
        if (e.kind === 'data') await f.overlay.add(first, e.digests);
        else {
          // A zero range may span millions of chunks: written directly, after what came before.
          await f.overlay.flush();
          await writeZeroSums(f.fh, alg, d.size, first, end);
        }
        const b = boundary.get(e.disk);
        if (b !== undefined && b >= first && b < end) boundary.delete(e.disk);
      }
      for (const f of files.values()) await io(f.tmp, () => f.overlay.flush());
    } finally {
      await index.close();
    }
    for (const [i, c] of boundary) {
      const d = rec.meta.disks[i]!;
      const buf = Buffer.alloc(chunkLength(d.size, c));
      const path = layout.image(server, d.name, 'incomplete');
      await io(path, async () => {
        const fh = await open(path, 'r');
        try {
          await readAllAt(fh, buf, buf.length, c * CHUNK_SIZE);
        } finally {
          await fh.close();
        }
      });
      await writeSums(files.get(i)!.fh, c, digest(alg, buf));
    }
    for (const f of files.values()) {
      await io(f.tmp, () => f.fh.sync());
      await f.fh.close();
      await io(f.tmp, () => rename(f.tmp, f.dst));
    }
    files.clear();
    await fsyncDir(dir);
  } finally {
    for (const f of files.values()) {
      await f.fh.close().catch(() => {});
      await removeIfExists(f.tmp).catch(() => {});
    }
  }
}

/** DESIGN §4.5: written when missing, never overwritten or edited. */
async function ensureDefinition(ctx: FsContext, rec: DeltaRecord, log: Logger): Promise<void> {
  const path = ctx.layout.definition(rec.server);
  if (await exists(path)) return;
  // Imported when needed: the XML parser is not loaded at a receiver's start (fs-store.ts).
  const { buildDrDefinition } = await import('./definition.ts');
  const xml = buildDrDefinition(
    rec.meta.sourceDefinition,
    rec.meta.disks.map((d) => d.name),
    (disk) => ctx.layout.image(rec.server, disk, 1),
    log.child({ server: rec.server }),
    { server: rec.server, storeRoot: ctx.layout.root, rules: await ctx.definitionRules?.() },
  );
  await ensureDir(ctx.layout.definitionsDir);
  if (await createFileOnce(path, xml)) log.info('definition written', { server: rec.server, path });
}

function buildManifest(j: Journal, rec: DeltaRecord, cur: ManifestFile | null): ManifestFile {
  const server = j.server;
  const meta = rec.meta;
  const newGen: Generation = {
    id: j.generationId,
    seq: 1,
    pointInTime: meta.pointInTime,
    takenAt: meta.takenAt,
    committedAt: new Date().toISOString(),
    mode: meta.mode,
    job: meta.job,
    disks: meta.disks.map((d) => ({ name: d.name, size: d.size, image: imageName(server, d.name, 1) })),
    deltaBytes: Object.values(rec.counts).reduce((n, c) => n + c.dataBytes, 0),
    tests: [],
  };
  const survivors = j.survivors.map((s) => {
    const g = cur?.generations.find((x) => x.id === s.id);
    if (!g) {
      throw storeError(
        'STORE_FILE_INVALID',
        'integrity',
        `generation ${s.id} of ${server} vanished from the manifest mid-rotation`,
        {
          hint: 'Run `haven verify`; restore the manifest from a copy if you have one.',
        },
      );
    }
    return {
      ...g,
      seq: s.toSeq,
      disks: g.disks.map((d) => ({ ...d, image: imageName(server, d.name, s.toSeq) })),
    };
  });
  return {
    format: 'haven-manifest',
    version: MANIFEST_VERSION,
    server,
    copies: j.copies,
    generations: [newGen, ...survivors.sort((a, b) => a.seq - b.seq)],
    sourceDefinition: meta.sourceDefinition,
    bootPriority: cur?.bootPriority ?? 100,
    ...(cur?.activeAtDr ? { activeAtDr: cur.activeAtDr } : {}),
  };
}

/**
 * Removes what no generation needs any more: committed deltas other than the producers of
 * `_1` … `_N-1`, digests of generations that left the manifest, delta directories a crash left
 * without a record. The caller holds the server lock and no journal exists.
 */
export async function prune(ctx: FsContext, server: string, log: Logger): Promise<string[]> {
  const done: string[] = [];
  const m = await readManifest(ctx, server);
  const ids = m?.generations.map((g) => g.id) ?? [];
  const copies = m?.copies ?? 1;
  // Kept deltas only serve replays onto the oldest generation, which a cloning store never does.
  const keep = new Set(generationsNeedingProducers(ids, copies, await rotationClones(ctx, copies, log)));
  for (const r of await listDeltaRecords(ctx, server)) {
    if (r.state === 'committed' && !keep.has(r.generationId)) {
      await deleteDelta(ctx, r, log);
      done.push(`${server}: removed delta ${r.id} (no generation needs it)`);
    }
  }
  for (const name of await listDir(ctx.layout.deltasDir(server))) {
    if (!(await exists(join(ctx.layout.deltasDir(server), name, 'delta.json')))) {
      await removeTree(join(ctx.layout.deltasDir(server), name));
      done.push(`${server}: removed delta directory ${name} left without a record`);
    }
  }
  for (const name of await listDir(ctx.layout.digestsRoot(server))) {
    if (!ids.includes(name)) {
      await removeTree(join(ctx.layout.digestsRoot(server), name));
      done.push(`${server}: removed digests of retired generation ${name}`);
    }
  }
  return done;
}
