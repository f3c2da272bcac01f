/**
 * The JSON files of host artefacts (a host's manifest and its rotation journal) and their
 * validation: everything read back goes through these schemas, so a damaged or hand-edited file
 * is a clear STORE_FILE_INVALID.
 */
import { z } from 'zod';
import { DIGEST_ALGORITHMS } from '../../core/digest.ts';
import { testRecord } from '../common/records.ts';
import { invalidFile } from '../errors.ts';
import type { HostGeneration, HostManifest } from './types.ts';

const int = z.number().int().nonnegative();
const hex = z.string().regex(/^[0-9a-f]{64}$/);

export const hostDiskSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.!-]{0,63}$/),
  size: z.number().int().positive(),
  label: z.string().max(32).optional(),
});

export const hostFactsSchema = z.looseObject({
  hostname: z.string().max(255),
  os: z.string().max(255),
  kernel: z.string().max(255),
  rearVersion: z.string().max(255),
  firmware: z.enum(['bios', 'uefi']),
  memoryBytes: int,
  disks: z.array(hostDiskSchema).min(1).max(64),
  layout: z.string().max(1024 * 1024),
  layoutDigest: hex,
  rearConfig: z.string().max(256 * 1024),
});

const base = {
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/),
  seq: z.number().int().positive(),
  takenAt: z.string(),
  committedAt: z.string(),
  size: int,
  digest: hex,
  tests: z.array(testRecord),
};

export const rescueGenerationSchema = z.looseObject({
  ...base,
  kind: z.literal('rescue'),
  facts: hostFactsSchema,
});
export const backupGenerationSchema = z.looseObject({
  ...base,
  kind: z.literal('backup'),
  rescueId: base.id,
  excludes: z.array(z.string().max(4096)).max(10_000),
});
const generation = z.discriminatedUnion('kind', [rescueGenerationSchema, backupGenerationSchema]);

const manifestSchema = z.looseObject({
  format: z.literal('haven-host-manifest'),
  version: z.literal(1),
  host: z.string(),
  copies: z.number().int().positive(),
  digest: z.enum(DIGEST_ALGORITHMS as ['blake3', 'sha256']),
  rescue: z.array(rescueGenerationSchema),
  backup: z.array(backupGenerationSchema),
});

/** A rotation in progress: what to delete and rename, in order, and how far it got. */
const journalSchema = z.object({
  format: z.literal('haven-host-journal'),
  /** The new generation, as the manifest will list it (seq 1). */
  generation,
  /** The manifest once the rotation is done. */
  manifest: manifestSchema,
  /** File names (in the hosts directory) to delete, then renames, in this order. */
  deletes: z.array(z.string()),
  renames: z.array(z.tuple([z.string(), z.string()])),
  /** Steps done so far: deletes first, then renames; advanced durably after each one. */
  done: int,
});

export type HostManifestFile = HostManifest & { format: 'haven-host-manifest'; version: 1 };
export interface HostJournal {
  format: 'haven-host-journal';
  generation: HostGeneration;
  manifest: HostManifestFile;
  deletes: string[];
  renames: [string, string][];
  done: number;
}

function parser<T>(schema: z.ZodType<T>, path: string): (v: unknown) => T {
  return (v) => {
    const r = schema.safeParse(v);
    if (!r.success)
      throw invalidFile(path, r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    return r.data;
  };
}

export const parseHostManifest = (path: string) =>
  parser(manifestSchema, path) as (v: unknown) => HostManifestFile;
export const parseHostJournal = (path: string) => parser(journalSchema, path) as (v: unknown) => HostJournal;

export function manifestFile(m: HostManifest): HostManifestFile {
  return { format: 'haven-host-manifest', version: 1, ...m };
}

export function manifestView(m: HostManifestFile): HostManifest {
  const { format: _f, version: _v, ...rest } = m;
  return rest;
}
