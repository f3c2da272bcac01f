/**
 * Validation of the host-file frames (docs/stream-protocol.md §4.7): the JSON bodies of
 * HOST_QUERY, HOST_REPLY, FILE_OPEN, FILE_OPENED, FILE_END and FILE_COMMITTED. The host facts
 * and generations are checked with the store's own schemas, so what the receiver stores is what
 * it would accept when reading its files back.
 */
import { z } from 'zod';
import { backupGenerationSchema, hostFactsSchema, rescueGenerationSchema } from '../store/host/records.ts';

const hostName = z.string().min(1).max(100);

export const hostQuerySchema = z.object({ host: hostName });

export const hostReplySchema = z.object({
  host: z.string(),
  manifest: z
    .looseObject({
      host: z.string(),
      copies: z.number().int().positive(),
      digest: z.enum(['blake3', 'sha256']),
      rescue: z.array(rescueGenerationSchema),
      backup: z.array(backupGenerationSchema),
    })
    .nullable(),
});

export const fileOpenSchema = z
  .object({
    host: hostName,
    kind: z.enum(['rescue', 'backup']),
    copies: z.number().int().min(1).max(100),
    takenAt: z.string().max(64),
    facts: hostFactsSchema.optional(),
    rescueId: z.string().min(1).max(64).optional(),
    excludes: z.array(z.string().max(4096)).max(10_000).optional(),
  })
  .refine((m) => (m.kind === 'rescue' ? m.facts !== undefined : m.rescueId !== undefined), {
    message: 'rescue media carry facts, backup archives a rescueId',
  });

export const fileOpenedSchema = z.object({ fileId: z.string().min(1).max(64) });

export const fileEndSchema = z.object({
  size: z.number().int().nonnegative(),
  digest: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 hex digits'),
});

export const fileCommittedSchema = z.object({
  generation: z.discriminatedUnion('kind', [rescueGenerationSchema, backupGenerationSchema]),
});
