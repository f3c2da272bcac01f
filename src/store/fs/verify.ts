/**
 * `verify`: structure (manifest ↔ files, sizes, digest file lengths, leftovers) and, when asked,
 * every chunk of every image re-read and compared with its stored digest. Bounded memory: one
 * 4 MiB read buffer and its 64 digests at a time.
 */
import { open, stat } from 'node:fs/promises';
import { chunkDigests, DIGEST_BYTES } from '../../core/digest.ts';
import { InterruptedError } from '../../core/errors.ts';
import type { StoreContext } from '../common/context.ts';
import { listDeltaRecords } from '../common/deltas.ts';
import { exists, io, isErrno, listDir, readAllAt } from '../common/files.ts';
import { imageName } from '../common/names.ts';
import type { ServerView } from '../common/reader-view.ts';
import type { ManifestFile } from '../common/records.ts';
import { readSums, sumsLength } from '../common/sums.ts';
import type { Generation, VerifyOptions, VerifyProblem, VerifyReport } from '../types.ts';
import { CHUNK_SIZE } from '../types.ts';
import { type FsLayout, IMAGE_SUFFIX } from './layout.ts';

const READ_CHUNKS = 64;
const MAX_BAD_CHUNKS = 100;

export async function verifyServer(
  ctx: StoreContext,
  layout: FsLayout,
  server: string,
  view: ServerView,
  options: VerifyOptions,
  report: VerifyReport,
  progress: { done: number; total: number },
): Promise<void> {
  const m = view.manifest;
  const problem = (p: Omit<VerifyProblem, 'server'>) => report.problems.push({ server, ...p });
  if (!m || m.generations.length === 0) {
    problem({ code: 'STORE_SERVER_NOT_FOUND', message: `${server} has no committed generation` });
    return;
  }
  report.checkedServers++;
  const gens = m.generations.filter((g) => !options.generationId || g.id === options.generationId);
  if (options.generationId && gens.length === 0) {
    problem({
      code: 'STORE_GENERATION_NOT_FOUND',
      generationId: options.generationId,
      message: 'no such generation',
    });
  }
  if (!(await exists(layout.definition(server)))) {
    problem({ code: 'STORE_DEFINITION_MISSING', message: `${layout.definition(server)} is missing` });
  }

  const readable: { g: Generation; disk: string; size: number; path: string; sums: string }[] = [];
  for (const g of gens) {
    report.checkedGenerations++;
    for (const d of g.disks) {
      const path = layout.image(server, d.name, view.fileSeq(g));
      const sums = layout.sums(server, g.id, d.name);
      const at = { generationId: g.id, seq: g.seq, disk: d.name };
      const st = await stat(path).catch((e) => (isErrno(e, 'ENOENT') ? null : Promise.reject(e)));
      if (!st) {
        problem({ ...at, code: 'STORE_IMAGE_MISSING', message: `${path} is missing` });
        continue;
      }
      if (st.size !== d.size) {
        problem({
          ...at,
          code: 'STORE_SIZE_MISMATCH',
          message: `${path} is ${st.size} bytes, the manifest says ${d.size}`,
        });
        continue;
      }
      const ss = await stat(sums).catch((e) => (isErrno(e, 'ENOENT') ? null : Promise.reject(e)));
      if (!ss) {
        problem({ ...at, code: 'STORE_DIGESTS_MISSING', message: `${sums} is missing` });
        continue;
      }
      if (ss.size !== sumsLength(d.size)) {
        problem({
          ...at,
          code: 'STORE_DIGESTS_SIZE',
          message: `${sums} is ${ss.size} bytes, expected ${sumsLength(d.size)}`,
        });
        continue;
      }
      readable.push({ g, disk: d.name, size: d.size, path, sums });
    }
  }

  await checkLeftovers(ctx, layout, server, m, view, problem);

  if (options.readImages === false) return;
  // Images that failed the structural checks are not read; count them as done.
  const skipped =
    gens.reduce((n, g) => n + g.disks.reduce((m, d) => m + d.size, 0), 0) -
    readable.reduce((n, r) => n + r.size, 0);
  progress.done += skipped;
  options.onProgress?.(progress.done, progress.total);
  for (const r of readable) {
    const bad = await compareImage(ctx, r.path, r.sums, r.size, options, progress, report);
    if (bad.count) {
      problem({
        generationId: r.g.id,
        seq: r.g.seq,
        disk: r.disk,
        code: 'STORE_DIGEST_MISMATCH',
        message: `${imageName(server, r.disk, view.fileSeq(r.g))}: ${bad.count} chunk(s) differ from their digests (first at byte ${(bad.chunks[0] ?? 0) * CHUNK_SIZE})`,
        badChunks: bad.chunks,
      });
    }
  }
}

async function compareImage(
  ctx: StoreContext,
  path: string,
  sumsPath: string,
  size: number,
  options: VerifyOptions,
  progress: { done: number; total: number },
  report: VerifyReport,
): Promise<{ count: number; chunks: number[] }> {
  const bad = { count: 0, chunks: [] as number[] };
  const img = await io(path, () => open(path, 'r'));
  const sums = await io(sumsPath, () => open(sumsPath, 'r'));
  const buf = Buffer.allocUnsafe(READ_CHUNKS * CHUNK_SIZE);
  try {
    for (let off = 0; off < size; ) {
      if (options.signal?.aborted) throw new InterruptedError('verify cancelled');
      const n = Math.min(buf.length, size - off);
      await readAllAt(img, buf, n, off);
      const got = chunkDigests(ctx.descriptor.digest, buf.subarray(0, n), CHUNK_SIZE);
      const first = off / CHUNK_SIZE;
      const want = await readSums(sums, first, got.length / DIGEST_BYTES);
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
      progress.done += n;
      report.checkedBytes += n;
      options.onProgress?.(progress.done, progress.total);
    }
  } finally {
    await img.close();
    await sums.close();
  }
  return bad;
}

/**
 * `_incomplete` images outside a rotation or a first-run partial, and numbered images of this
 * server that no generation names. Name collisions are refused at openDelta, so a file named
 * `<server>_<disk>_…` with a disk this server uses belongs to this server.
 */
async function checkLeftovers(
  ctx: StoreContext,
  layout: FsLayout,
  server: string,
  m: ManifestFile,
  view: ServerView,
  problem: (p: Omit<VerifyProblem, 'server'>) => void,
): Promise<void> {
  const disks = new Set(m.generations.flatMap((g) => g.disks.map((d) => d.name)));
  const partials = await listDeltaRecords(ctx, server);
  for (const r of partials) for (const d of r.meta.disks) disks.add(d.name);
  const legitIncomplete = new Set<string>();
  if (view.journal) for (const d of disks) legitIncomplete.add(d);
  for (const r of partials) {
    if (r.kind === 'direct' && r.state !== 'committed')
      for (const d of r.meta.disks) legitIncomplete.add(d.name);
  }
  const named = new Set(
    m.generations.flatMap((g) => g.disks.map((d) => imageName(server, d.name, view.fileSeq(g)))),
  );
  const files = await listDir(layout.root);
  for (const d of disks) {
    const prefix = `${server}_${d}_`;
    for (const f of files) {
      if (!f.startsWith(prefix) || !f.endsWith(IMAGE_SUFFIX)) continue;
      const seq = f.slice(prefix.length, -IMAGE_SUFFIX.length);
      if (seq === 'incomplete') {
        if (!legitIncomplete.has(d)) {
          problem({
            disk: d,
            code: 'STORE_INCOMPLETE_LEFTOVER',
            message: `${f} exists outside any rotation or partial delta`,
          });
        }
      } else if (/^[1-9]\d*$/.test(seq) && !named.has(f.slice(0, -IMAGE_SUFFIX.length)) && !view.journal) {
        problem({
          disk: d,
          code: 'STORE_IMAGE_ORPHAN',
          message: `${f} belongs to no generation in the manifest`,
        });
      }
    }
  }
}
