/**
 * Validation of the JSON control frames. Binary frames are checked field by field in codec.ts;
 * JSON bodies (handshake, OPEN, END_DELTA, answers) go through these schemas so a peer can never
 * hand the store or the engine a value of the wrong shape. Unknown keys are dropped, which lets a
 * later minor version add optional fields.
 */
import { z } from 'zod';
import { MAX_DISKS, PROTOCOL_NAME } from './frames.ts';

const count = z.number().int().nonnegative();
const positive = z.number().int().positive();
const digestAlg = z.enum(['blake3', 'sha256']);
const compression = z.enum(['zstd', 'none']);
const text = (max: number) => z.string().min(1).max(max);
const hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 hex digits');

export const storeDescriptorSchema = z.object({
  format: z.literal('haven-store'),
  version: positive,
  kind: z.enum(['fs', 'lvm', 'rbd']),
  id: text(200),
  createdAt: z.string(),
  chunkSize: positive,
  digest: digestAlg,
});

const testRecordSchema = z.looseObject({
  at: z.string(),
  kind: z.enum(['drill', 'activation']),
  result: z.enum(['pass', 'fail']),
  seconds: z.number(),
  detail: z.string().optional(),
});

export const generationSchema = z.looseObject({
  id: text(200),
  seq: positive,
  pointInTime: z.string(),
  takenAt: z.string(),
  committedAt: z.string(),
  mode: z.enum(['full', 'incremental', 'resync']),
  job: z.string(),
  disks: z.array(z.looseObject({ name: text(100), size: count, image: z.string() })),
  deltaBytes: count,
  tests: z.array(testRecordSchema),
});

const totals = z.object({ dataBytes: count, zeroBytes: count });

export const resumeStateSchema = z.object({
  deltaId: text(200),
  pointInTime: z.string(),
  watermarks: z.record(z.string(), count),
  stagedBytes: count,
  staged: z.record(z.string(), totals).optional(),
});

const features = z.array(z.string().max(64)).max(32);

const diskSpecs = z
  .array(z.object({ name: text(100), size: positive }))
  .min(1)
  .max(MAX_DISKS)
  .refine((d) => new Set(d.map((x) => x.name)).size === d.length, 'disk names must be unique');

const generationIdsSchema = z.object({
  current: text(100),
  history: z.array(text(100)).max(64),
  lastWriter: z
    .object({ side: z.enum(['primary', 'dr']), by: z.string().max(300).optional(), at: z.string().max(64) })
    .optional(),
});

export const segmentRecordSchema = z.looseObject({
  id: text(200),
  seq: positive,
  pointInTime: text(256),
  takenAt: z.string().max(64),
  committedAt: z.string().max(64),
  consistent: z.boolean(),
  generationId: text(100),
  disks: diskSpecs,
  dataBytes: count,
  zeroBytes: count,
  sourceOff: z.boolean().optional(),
});

const journalPointSchema = segmentRecordSchema.omit({ consistent: true, dataBytes: true, zeroBytes: true });

export const journalInfoSchema = z.looseObject({
  windowMs: count,
  segments: count,
  points: count,
  oldest: journalPointSchema.nullable(),
  newest: journalPointSchema.nullable(),
  tail: z
    .object({
      id: text(200),
      seq: positive,
      pointInTime: text(256),
      consistent: z.boolean(),
      generationId: text(100),
    })
    .nullable(),
  ids: generationIdsSchema.nullable(),
  failedBack: z.object({ generationId: text(100), at: z.string().max(64) }).optional(),
});
const capacitySchema = z.object({ totalBytes: count, freeBytes: count }).optional();

export const helloSchema = z.object({
  protocol: z.literal(PROTOCOL_NAME),
  versions: z.array(positive).min(1).max(64),
  software: z.string().max(200),
  compression: z.array(compression).min(1).max(8),
  compressionLevel: z.number().int().min(-131072).max(22).optional(),
  digests: z.array(digestAlg).min(1).max(8),
  token: z.string().max(4096).optional(),
  features: features.optional(),
});

export const welcomeSchema = z.object({
  version: positive,
  software: z.string().max(200),
  compression: z.array(compression).min(1).max(8),
  digest: digestAlg,
  store: storeDescriptorSchema,
  maxExtentBytes: positive,
  maxDigestsPerRequest: positive,
  features: features.optional(),
  capacity: capacitySchema,
});

export const querySchema = z.object({ server: text(100), journal: z.boolean().optional() });

export const queryReplySchema = z.object({
  server: z.string(),
  newest: generationSchema.nullable(),
  journal: journalInfoSchema.nullable().optional(),
  generations: z.array(generationSchema).max(1000).optional(),
  capacity: capacitySchema,
  resync: z.boolean().optional(),
});

export const deltaMetaSchema = z.object({
  server: text(100),
  job: text(200),
  copies: z.number().int().min(1).max(1000),
  disks: diskSpecs,
  sourceDefinition: z.string(),
  pointInTime: text(256),
  takenAt: z.string().max(64),
  baseGenerationId: text(200).nullable(),
  mode: z.enum(['full', 'incremental', 'resync']),
  /** A journal segment (feature `journal`, docs/stream-protocol.md §5.5). */
  journal: z
    .object({
      base: text(200).nullable(),
      generationId: text(100),
      ids: generationIdsSchema,
      windowMs: count,
      by: z.string().max(300).optional(),
      cut: z.boolean().optional(),
      sourceOff: z.boolean().optional(),
    })
    .optional(),
});

export const openedSchema = z.object({
  deltaId: text(200),
  newest: generationSchema.nullable(),
  resume: resumeStateSchema.nullable(),
  resync: z.boolean().optional(),
});

export const endDeltaSchema = z.object({
  summary: z.object({ disks: z.record(z.string(), totals) }),
  attempt: z.object({
    disks: z.record(z.string(), totals.extend({ frames: count })),
    digest: hex32,
  }),
  imageDigests: z.record(z.string(), hex32).optional(),
  consistent: z.boolean().optional(),
});

export const deltaDurableSchema = z.object({ deltaId: text(200) });

export const committedSchema = z
  .object({
    generation: generationSchema.optional(),
    segment: segmentRecordSchema.optional(),
    capacity: capacitySchema,
  })
  .refine((c) => (c.generation === undefined) !== (c.segment === undefined), 'a generation or a segment');

export const errorSchema = z.object({
  code: z.string().regex(/^[A-Z][A-Z0-9_]{1,63}$/),
  kind: z.string().max(32),
  message: z.string().max(8192),
  hint: z.string().max(4096).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
  fatal: z.boolean(),
});
