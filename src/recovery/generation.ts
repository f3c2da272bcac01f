/**
 * Choosing the generation a recovery operation uses and checking it before anything boots from
 * it. The quick check is structural (every image present with its manifest size, digest files
 * complete, the definition present) and always runs; the full check re-reads every chunk and
 * compares it with its digest, and is asked for (`--verify`). A check never changes the store.
 */
import { readFile } from 'node:fs/promises';
import { DomainXml } from '../core/domain-xml.ts';
import type { Generation, ServerManifest, Store, VerifyProblem } from '../store/types.ts';
import { recoveryError, unknownServer } from './errors.ts';

export interface Chosen {
  manifest: ServerManifest;
  generation: Generation;
}

/** The generation with sequence number `seq` (1 = newest, the default) of a server. */
export async function chooseGeneration(store: Store, server: string, seq = 1): Promise<Chosen> {
  const manifest = await store.manifest(server);
  if (!manifest || manifest.generations.length === 0) {
    throw unknownServer(server, store.location, await store.listServers());
  }
  const generation = manifest.generations.find((g) => g.seq === seq);
  if (!generation) {
    throw recoveryError(
      'RECOVERY_NO_GENERATION',
      'not-found',
      `${server} has no generation _${seq} (it has _1 to _${manifest.generations.length})`,
      {
        hint: 'Pick one of the generations `haven images` lists; 1 is the newest.',
        details: { server, seq, generations: manifest.generations.length },
      },
    );
  }
  return { manifest, generation };
}

export interface CheckOptions {
  /** Re-read every chunk and compare it with its digest. */
  full?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

function describe(problems: readonly VerifyProblem[]): string {
  return problems
    .slice(0, 5)
    .map((p) => `${p.disk ? `${p.disk}: ` : ''}${p.message}`)
    .join('; ');
}

/**
 * Throws RECOVERY_GENERATION_INCOMPLETE when the generation's files are not all there as the
 * manifest describes them (or the definition is missing), RECOVERY_GENERATION_DAMAGED when a
 * chunk differs from its digest (full check only).
 */
export async function checkGeneration(
  store: Store,
  server: string,
  generation: Generation,
  options: CheckOptions = {},
): Promise<void> {
  const report = await store.verify(server, {
    generationId: generation.id,
    readImages: options.full === true,
    onProgress: options.onProgress,
    signal: options.signal,
  });
  const mine = report.problems.filter(
    (p) => p.generationId === generation.id || p.code === 'STORE_DEFINITION_MISSING',
  );
  const damaged = mine.filter((p) => p.code === 'STORE_DIGEST_MISMATCH');
  const incomplete = mine.filter((p) => p.code !== 'STORE_DIGEST_MISMATCH');
  const details = {
    server,
    generation: generation.id,
    seq: generation.seq,
    problems: mine.map((p) => ({ code: p.code, disk: p.disk, message: p.message, badChunks: p.badChunks })),
  };
  if (incomplete.length) {
    throw recoveryError(
      'RECOVERY_GENERATION_INCOMPLETE',
      'integrity',
      `generation _${generation.seq} of ${server} is incomplete: ${describe(incomplete)}`,
      {
        hint: 'Use another generation (--generation K), or run `haven verify` and replicate again.',
        details,
      },
    );
  }
  if (damaged.length) {
    throw recoveryError(
      'RECOVERY_GENERATION_DAMAGED',
      'integrity',
      `generation _${generation.seq} of ${server} is damaged: ${describe(damaged)}`,
      {
        hint: 'Use another generation (--generation K). The next replication repairs damaged chunks from another generation that holds them intact, and has the source send again those of the newest generation no other holds (a checksum resync); `haven verify --store PATH` lists what is damaged.',
        details,
      },
    );
  }
}

/** The DR definition (`definitions/<server>.xml`), parsed. */
export async function readDefinition(store: Store, server: string): Promise<DomainXml> {
  const path = store.definitionPath(server);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw recoveryError(
      'RECOVERY_DEFINITION_MISSING',
      'integrity',
      `${path} cannot be read: ${(e as Error).message}`,
      {
        hint: 'The store writes it at the first replication; restore it from a copy, or write it from the manifest’s source definition.',
        details: { server, path },
        cause: e,
      },
    );
  }
  return DomainXml.parse(text);
}

/** Paths of a generation's images, by store disk name. */
export async function imagePaths(
  store: Store,
  server: string,
  generation: Generation,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const d of generation.disks) out.set(d.name, await store.imagePath(server, generation.id, d.name));
  return out;
}

/** Takes the server's writer lock for a long reader (see Store.holdServer). */
export async function holdServer(store: Store, server: string, purpose: string, waitMs: number) {
  if (!store.holdServer) {
    throw recoveryError(
      'RECOVERY_STORE_UNSUPPORTED',
      'unavailable',
      `the ${store.kind} store cannot pin a server for ${purpose}`,
      {
        hint: 'Upgrade Haven on this host.',
      },
    );
  }
  return store.holdServer(server, purpose, { waitMs });
}
