/**
 * `verify` for every store kind: structure (manifest ↔ images, sizes, digest file lengths,
 * leftovers) and, when asked, every chunk of every image re-read and compared with its stored
 * digest. Bounded memory: one 4 MiB read buffer and its 64 digests at a time.
 *
 * Consistent beside a running rotation (issue 13.6; docs/store-format.md, "Readers during a
 * rotation"): each image is resolved and opened under a fresh reader view, and the view is taken
 * again once it is open — an image whose name moved in between is opened again, so what is read is
 * the generation asked for. A generation the rotation retires while it is being read (the
 * recycled oldest is rewritten in place) is not a problem of the store: a mismatch or a missing
 * file counts only if the generation is still there when the check ends. One server's damage (an
 * unreadable manifest) is reported for that server and the others are still checked (issue 13.7).
 * Damaged chunks of a server's newest generation are marked to be sent again by the next run
 * (resend.ts): what the hint of STORE_DIGEST_MISMATCH promises.
 */
import { alignedBuffer } from '../../core/aligned-memory.ts';
import { chunkDigests, DIGEST_BYTES } from '../../core/digest.ts';
import { asHavenError, InterruptedError } from '../../core/errors.ts';
import type { Generation, VerifyOptions, VerifyProblem, VerifyReport } from '../types.ts';
import { CHUNK_SIZE } from '../types.ts';
import { forgetChecked, recordChecked } from './checked.ts';
import { emptyVerifyReport } from './checks.ts';
import type { StoreContext } from './context.ts';
import { listDeltaRecords } from './deltas.ts';
import { exists } from './files.ts';
import type { ReadableImage } from './images.ts';
import { imageName } from './names.ts';
import { liveIn, openStable, type ServerView } from './reader-view.ts';
import { addResendMarks } from './resend.ts';
import { type GenerationSums, openGenerationSums } from './sums.ts';

const READ_CHUNKS = 64;
const MAX_BAD_CHUNKS = 100;

type ViewOf = (server: string) => Promise<ServerView>;
type Problem = Omit<VerifyProblem, 'server'>;
interface Progress {
  done: number;
  total: number;
}

export async function verifyStore(
  ctx: StoreContext,
  servers: string[],
  viewOf: ViewOf,
  options: VerifyOptions,
): Promise<VerifyReport> {
  const report = emptyVerifyReport();
  const progress: Progress = { done: 0, total: 0 };
  // Views first, so progress has its total from the start.
  const views = new Map<string, ServerView>();
  for (const s of servers) {
    try {
      const v = await viewOf(s);
      views.set(s, v);
      for (const g of selected(v, options)) progress.total += g.disks.reduce((n, d) => n + d.size, 0);
    } catch (e) {
      unreadable(report, s, e);
    }
  }
  if (options.readImages === false) progress.total = 0;
  for (const [s, v] of views) {
    const problem = (p: Problem) => report.problems.push({ server: s, ...p });
    try {
      await verifyServer(ctx, s, v, viewOf, options, report, progress, problem);
    } catch (e) {
      if (e instanceof InterruptedError) throw e;
      unreadable(report, s, e);
    }
  }
  report.ok = report.problems.length === 0;
  return report;
}

function unreadable(report: VerifyReport, server: string, e: unknown): void {
  if (e instanceof InterruptedError) throw e;
  const err = asHavenError(e);
  report.problems.push({
    server,
    code: err.code,
    message: `${server} cannot be checked: ${err.message}`,
    ...(err.hint ? { hint: err.hint } : {}),
  });
}

function selected(v: ServerView, options: VerifyOptions): Generation[] {
  return (v.manifest?.generations ?? []).filter(
    (g) => !options.generationId || g.id === options.generationId,
  );
}

async function verifyServer(
  ctx: StoreContext,
  server: string,
  view: ServerView,
  viewOf: ViewOf,
  options: VerifyOptions,
  report: VerifyReport,
  progress: Progress,
  problem: (p: Problem) => void,
): Promise<void> {
  const m = view.manifest;
  if (!m || m.generations.length === 0) {
    problem({ code: 'STORE_SERVER_NOT_FOUND', message: `${server} has no committed generation` });
    return;
  }
  report.checkedServers++;
  const gens = selected(view, options);
  if (options.generationId && gens.length === 0) {
    problem({
      code: 'STORE_GENERATION_NOT_FOUND',
      generationId: options.generationId,
      message: 'no such generation',
    });
  }
  if (!(await exists(ctx.layout.definition(server)))) {
    problem({ code: 'STORE_DEFINITION_MISSING', message: `${ctx.layout.definition(server)} is missing` });
  }
  for (const g of gens) {
    report.checkedGenerations++;
    for (const d of g.disks) {
      const found = await checkDisk(ctx, server, g, d.name, d.size, viewOf, options, report, progress);
      if (found) problem({ generationId: g.id, seq: g.seq, disk: d.name, ...found });
    }
  }
  await checkLeftovers(ctx, server, viewOf, problem);
}

/**
 * One disk of one generation; a problem, or null when it is fine or the generation left while it
 * was checked. The image is counted as done in progress whatever happens.
 */
async function checkDisk(
  ctx: StoreContext,
  server: string,
  g: Generation,
  disk: string,
  size: number,
  viewOf: ViewOf,
  options: VerifyOptions,
  report: VerifyReport,
  progress: Progress,
): Promise<Omit<Problem, 'generationId' | 'seq' | 'disk'> | null> {
  const counted = progress.done;
  const finish = () => {
    if (options.readImages === false) return;
    progress.done = counted + size;
    options.onProgress?.(progress.done, progress.total);
  };
  const opened = await openStableDisk(ctx, server, g.id, disk, viewOf);
  if (!opened) {
    finish();
    return null;
  }
  const { image, sums } = opened.value;
  const seq = opened.seq;
  try {
    const found = await structure(ctx, server, g.id, disk, size, image, sums);
    if (found || options.readImages === false || !image || !sums) {
      finish();
      return found;
    }
    const started = Date.now();
    const bad = await compareImage(ctx, image, sums, size, options, progress, report);
    finish();
    // The recycled oldest generation is rewritten in place once a rotation retires it.
    const now = await viewOf(server);
    if (!liveIn(now, g.id)) return null;
    // What a commit's slot check would have read: it need not read it again within the window.
    if (!bad.count) {
      await recordChecked(ctx, server, g.id, disk, started, ctx.log);
      return null;
    }
    await forgetChecked(ctx, server, g.id, disk, ctx.log);
    // Damage in the newest generation: the next run sends those chunks again from the source. An
    // older one is repaired from another generation when a rotation builds on it (slot-check.ts).
    if (now.manifest?.generations[0]?.id === g.id) {
      await addResendMarks(ctx, server, disk, bad.chunks, size, bad.count > bad.chunks.length, ctx.log);
    }
    return {
      code: 'STORE_DIGEST_MISMATCH',
      message: `${imageName(server, disk, seq)}: ${bad.count} chunk(s) differ from their digests (first at byte ${(bad.chunks[0] ?? 0) * CHUNK_SIZE})`,
      badChunks: bad.chunks,
    };
  } finally {
    await image?.close();
    await sums?.close();
  }
}

/** The image and digest file of a generation's disk, as they are now (reader-view.ts openStable). */
function openStableDisk(ctx: StoreContext, server: string, id: string, disk: string, viewOf: ViewOf) {
  return openStable(
    viewOf,
    server,
    id,
    async (seq) => ({
      image: await ctx.images.openRead(server, disk, seq),
      sums: await openGenerationSums(ctx, server, id, disk),
    }),
    async (o) => {
      await o.image?.close();
      await o.sums?.close();
    },
  );
}

async function structure(
  ctx: StoreContext,
  server: string,
  id: string,
  disk: string,
  size: number,
  image: ReadableImage | null,
  sums: GenerationSums | null,
): Promise<Omit<Problem, 'generationId' | 'seq' | 'disk'> | null> {
  if (!image) return { code: 'STORE_IMAGE_MISSING', message: `the image of disk ${disk} is missing` };
  if (image.size !== size) {
    return {
      code: 'STORE_SIZE_MISMATCH',
      message: `${image.path} is ${image.size} bytes, the manifest says ${size}`,
    };
  }
  const path = ctx.layout.sums(server, id, disk);
  if (!sums) return { code: 'STORE_DIGESTS_MISSING', message: `${path} is missing` };
  const problem = await sums.checkLength(size);
  return problem ? { code: 'STORE_DIGESTS_SIZE', message: problem } : null;
}

async function compareImage(
  ctx: StoreContext,
  image: ReadableImage,
  sums: GenerationSums,
  size: number,
  options: VerifyOptions,
  progress: Progress,
  report: VerifyReport,
): Promise<{ count: number; chunks: number[] }> {
  const bad = { count: 0, chunks: [] as number[] };
  const buf = alignedBuffer(READ_CHUNKS * CHUNK_SIZE);
  for (let off = 0; off < size; ) {
    if (options.signal?.aborted) throw new InterruptedError('verify cancelled');
    const n = Math.min(buf.length, size - off);
    await image.read(buf, n, off);
    const got = chunkDigests(ctx.descriptor.digest, buf.subarray(0, n), CHUNK_SIZE);
    const first = off / CHUNK_SIZE;
    const want = await sums.read(first, got.length / DIGEST_BYTES, size);
    if (!got.equals(want)) {
      for (let i = 0; i < got.length / DIGEST_BYTES; i++) {
        const a = i * DIGEST_BYTES;
        if (got.compare(want, a, a + DIGEST_BYTES, a, a + DIGEST_BYTES) !== 0) {
          bad.count++;
          if (bad.chunks.length < MAX_BAD_CHUNKS) bad.chunks.push(first + i);
        }
      }
    }
    off += n;
    report.checkedBytes += n;
    options.onProgress?.(progress.done + off, progress.total);
  }
  return bad;
}

/**
 * `_incomplete` images outside a rotation or a first-run partial, and numbered images of this
 * server that no generation names. Name collisions are refused at openDelta, so an image named
 * `<server>_<disk>_…` with a disk this server uses belongs to this server. Looked at twice when
 * something turns up, so a rotation that started or ended between the view and the listing is
 * not mistaken for a leftover.
 */
async function checkLeftovers(
  ctx: StoreContext,
  server: string,
  viewOf: ViewOf,
  problem: (p: Problem) => void,
): Promise<void> {
  const first = await leftovers(ctx, server, await viewOf(server));
  if (!first.length) return;
  const again = await viewOf(server);
  if (again.journal) return;
  const second = new Set((await leftovers(ctx, server, again)).map((p) => p.message));
  for (const p of first) if (second.has(p.message)) problem(p);
}

async function leftovers(ctx: StoreContext, server: string, view: ServerView): Promise<Problem[]> {
  const m = view.manifest;
  if (!m) return [];
  const out: Problem[] = [];
  const disks = new Set(m.generations.flatMap((g) => g.disks.map((d) => d.name)));
  const partials = await listDeltaRecords(ctx, server);
  for (const r of partials) for (const d of r.meta.disks) disks.add(d.name);
  const legitIncomplete = new Set<string>();
  if (view.journal) for (const d of disks) legitIncomplete.add(d);
  for (const r of partials) {
    if (r.kind === 'direct' && r.state !== 'committed')
      for (const d of r.meta.disks) legitIncomplete.add(d.name);
  }
  const named = new Set(m.generations.flatMap((g) => g.disks.map((d) => `${d.name}_${view.fileSeq(g)}`)));
  for (const d of disks) {
    for (const seq of await ctx.images.list(server, d)) {
      const name = imageName(server, d, seq);
      if (seq === 'incomplete') {
        if (!legitIncomplete.has(d)) {
          out.push({
            disk: d,
            code: 'STORE_INCOMPLETE_LEFTOVER',
            message: `${name} exists outside any rotation or partial delta`,
          });
        }
      } else if (!named.has(`${d}_${seq}`) && !view.journal) {
        out.push({
          disk: d,
          code: 'STORE_IMAGE_ORPHAN',
          message: `${name} belongs to no generation in the manifest`,
        });
      }
    }
  }
  return out;
}
