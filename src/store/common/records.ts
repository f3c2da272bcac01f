/**
 * The JSON files of a filesystem store and their validation: the descriptor, a server's manifest,
 * a staged delta's record and a rotation journal (docs/store-format.md). Everything read from
 * disk goes through these schemas, so a damaged or hand-edited file is a clear STORE_FILE_INVALID
 * instead of undefined behaviour halfway through a rotation.
 */
import { z } from 'zod';
import { DIGEST_ALGORITHMS } from '../../core/digest.ts';
import { invalidFile } from '../errors.ts';
import type { DeltaMeta, ServerManifest, StoreDescriptor } from '../types.ts';

const int = z.number().int().nonnegative();
const seq = z.union([z.number().int().positive(), z.literal('incomplete')]);

const descriptorSchema = z.looseObject({
  format: z.literal('haven-store'),
  version: z.number().int().positive(),
  kind: z.enum(['fs', 'lvm', 'rbd']),
  id: z.string().min(1),
  createdAt: z.string(),
  chunkSize: z.number().int().positive(),
  digest: z.enum(DIGEST_ALGORITHMS as ['blake3', 'sha256']),
  volumeGroups: z.string().min(1).optional(),
  rbd: z.string().min(1).optional(),
});

/** A drill or activation result kept with a generation (server and host manifests alike). */
export const testRecord = z.looseObject({
  at: z.string(),
  kind: z.enum(['drill', 'activation']),
  result: z.enum(['pass', 'fail']),
  seconds: z.number(),
  detail: z.string().optional(),
});

const diskSpec = z.object({ name: z.string(), size: int });
const mode = z.enum(['full', 'incremental', 'resync']);

const generation = z.looseObject({
  id: z.string(),
  seq: z.number().int().positive(),
  pointInTime: z.string(),
  takenAt: z.string(),
  committedAt: z.string(),
  mode,
  job: z.string(),
  disks: z.array(z.looseObject({ name: z.string(), size: int, image: z.string() })),
  deltaBytes: int,
  tests: z.array(testRecord),
});

const manifestSchema = z.looseObject({
  format: z.literal('haven-manifest'),
  version: z.number().int().positive(),
  server: z.string(),
  copies: z.number().int().positive(),
  generations: z.array(generation),
  sourceDefinition: z.string(),
  bootPriority: z.number().int(),
  activeAtDr: z
    .looseObject({
      since: z.string(),
      generationId: z.string(),
      force: z.boolean(),
      by: z.string().optional(),
    })
    .optional(),
});

const metaSchema = z.object({
  server: z.string(),
  job: z.string(),
  copies: z.number().int().positive(),
  disks: z.array(diskSpec),
  sourceDefinition: z.string(),
  pointInTime: z.string(),
  takenAt: z.string(),
  baseGenerationId: z.string().nullable(),
  mode,
});

const counts = z.object({ dataBytes: int, zeroBytes: int });

const deltaRecordSchema = z.object({
  format: z.literal('haven-delta'),
  version: z.literal(1),
  id: z.string(),
  server: z.string(),
  generationId: z.string(),
  kind: z.enum(['direct', 'staged']),
  state: z.enum(['open', 'sealed', 'committed']),
  meta: metaSchema,
  dataDir: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  sealedAt: z.string().optional(),
  committedAt: z.string().optional(),
  watermarks: z.record(z.string(), int),
  counts: z.record(z.string(), counts),
  dataLength: int,
  indexLength: int,
  floors: z.record(z.string(), int),
  dataHigh: z.record(z.string(), int),
});

const planGeneration = z.object({
  id: z.string(),
  seq: z.number().int().positive(),
  disks: z.array(z.string()),
});

const journalSchema = z.object({
  format: z.literal('haven-journal'),
  version: z.literal(1),
  server: z.string(),
  deltaId: z.string(),
  generationId: z.string(),
  createdAt: z.string(),
  kind: z.enum(['first', 'rotate']),
  baseGenerationId: z.string().nullable(),
  copies: z.number().int().positive(),
  phase: z.enum(['planned', 'renamed', 'committing']),
  dropped: z.array(planGeneration),
  recycled: planGeneration.nullable(),
  survivors: z.array(z.object({ id: z.string(), fromSeq: z.number().int(), toSeq: z.number().int() })),
  renames: z.array(z.object({ generationId: z.string(), from: seq, to: seq, disks: z.array(z.string()) })),
  slot: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('fresh') }),
    z.object({ kind: z.literal('recycle'), generationId: z.string() }),
    z.object({
      kind: z.literal('copy'),
      fromGenerationId: z.string(),
      fromSeq: z.number().int().positive(),
      disks: z.array(z.string()),
    }),
  ]),
  /** Delta ids applied to `_incomplete` in order; the new delta last. */
  apply: z.array(z.string()),
  droppedDone: z.boolean(),
  renamedGroups: int,
  slotReady: z.boolean(),
  appliedDeltas: int,
  digestsDone: z.boolean(),
  /** When each disk of the new generation was last known to match its digests (checked.ts). */
  checked: z.record(z.string(), z.string()).optional(),
});

export type ManifestFile = ServerManifest & { format: 'haven-manifest'; version: number };
export type DeltaRecord = z.infer<typeof deltaRecordSchema>;
export type Journal = z.infer<typeof journalSchema>;

function parser<T>(schema: z.ZodType<T>, path: string): (v: unknown) => T {
  return (v) => {
    const r = schema.safeParse(v);
    if (!r.success) throw invalidFile(path, z.prettifyError(r.error).split('\n').slice(0, 3).join('; '));
    return r.data;
  };
}

export const parseDescriptor = (path: string) =>
  parser(descriptorSchema, path) as (v: unknown) => StoreDescriptor;
export const parseManifest = (path: string) => parser(manifestSchema, path) as (v: unknown) => ManifestFile;
export const parseDeltaRecord = (path: string) =>
  parser(deltaRecordSchema, path) as (v: unknown) => DeltaRecord;
export const parseJournal = (path: string) => parser(journalSchema, path) as (v: unknown) => Journal;

export function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Strips the file framing from a manifest for callers of the Store interface. */
export function manifestView(m: ManifestFile): ServerManifest {
  const { format: _f, version: _v, ...rest } = m;
  return rest;
}

export type { DeltaMeta };
