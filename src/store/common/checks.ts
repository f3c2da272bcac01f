/**
 * Checks of what callers ask of a store (a sender's digest requests, a reader's image reads,
 * recovery/'s bookkeeping), written once for every store kind and the in-memory test store.
 */
import { generationNotFound, storeError } from '../errors.ts';
import type { Generation, GenerationDisk, ServerManifest, VerifyReport } from '../types.ts';
import { MAX_DIGEST_REQUEST_CHUNKS } from './sums.ts';

/** [offset, +length) lies within [0, size): whole numbers, none negative. */
export function isWithin(offset: number, length: number, size: number): boolean {
  return (
    Number.isSafeInteger(offset) &&
    Number.isSafeInteger(length) &&
    offset >= 0 &&
    length >= 0 &&
    offset + length <= size
  );
}

/** Chunks [fromChunk, +count) lie within a disk of `chunks` chunks, and are not too many at once. */
export function isChunkRange(fromChunk: number, count: number, chunks: number): boolean {
  return count <= MAX_DIGEST_REQUEST_CHUNKS && isWithin(fromChunk, count, chunks);
}

/** A verify report before anything is checked. */
export function emptyVerifyReport(): VerifyReport {
  return {
    ok: true,
    checkedServers: 0,
    checkedGenerations: 0,
    checkedPoints: 0,
    checkedBytes: 0,
    problems: [],
    journals: [],
  };
}

export function checkBootPriority(priority: number): void {
  if (!Number.isInteger(priority) || priority < 0 || priority > 100_000) {
    throw storeError(
      'STORE_BAD_PRIORITY',
      'usage',
      `boot priority must be a whole number from 0 to 100000, got ${priority}`,
      { hint: 'Lower numbers boot first; the default is 100.' },
    );
  }
}

/** A generation's disk in `manifest`; STORE_GENERATION_NOT_FOUND or STORE_DISK_NOT_FOUND. */
export function findGenerationDisk(
  manifest: ServerManifest,
  generationId: string,
  disk: string,
): { generation: Generation; disk: GenerationDisk } {
  const { server } = manifest;
  const generation = manifest.generations.find((x) => x.id === generationId);
  if (!generation) throw generationNotFound(server, generationId);
  const found = generation.disks.find((x) => x.name === disk);
  if (!found) {
    throw storeError(
      'STORE_DISK_NOT_FOUND',
      'not-found',
      `generation ${generationId} of ${server} has no disk ${disk}`,
      {
        hint: "List the generation's disks with `haven images <server> --store PATH --json`.",
        details: { server, generationId, disk },
      },
    );
  }
  return { generation, disk: found };
}
