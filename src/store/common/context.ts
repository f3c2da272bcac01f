/** What every part of the shared write path is given: the store's files, its images, its settings. */
import { resolve } from 'node:path';
import type { DefinitionRules } from '../../core/definition-context.ts';
import { DEFAULT_RECHECK_AFTER_MS } from '../../core/integrity.ts';
import type { Logger } from '../../core/log.ts';
import type { StoreDescriptor } from '../types.ts';
import { ensureDir } from './files.ts';
import type { ImageVolumes } from './images.ts';
import type { MetadataLayout } from './metadata-layout.ts';
import type { MetadataMirror } from './mirror.ts';

export interface StoreContext {
  /** The store's own plain files: manifests, journals, delta records, digests, locks. */
  layout: MetadataLayout;
  /** The images (fs/images.ts for files). */
  images: ImageVolumes;
  descriptor: StoreDescriptor;
  log: Logger;
  /** Directory for staged delta data (a cache drive), or undefined for the store's own area. */
  stagingDir: string | undefined;
  /** Write images and staged data with O_DIRECT where the storage allows it (direct-io.ts). */
  directIo: boolean;
  /** The DR host's settings for definitions, asked for when one is written (commit/definition.ts). */
  definitionRules?: () => Promise<DefinitionRules>;
  /** Where the metadata files are copied as they change (rbd: the pool); none for the other kinds. */
  mirror?: MetadataMirror;
  /**
   * How long a generation's check stays good: a commit reads the generation its slot starts from
   * only when part of it was last checked longer ago (0: on every commit). checked.ts.
   */
  recheckAfterMs: number;
}

/**
 * A store kind's context from its parts and the options every kind shares: the staging directory
 * (made if missing) and the DR host's definition rules.
 */
export async function storeContext(
  parts: Pick<StoreContext, 'layout' | 'images' | 'descriptor' | 'log' | 'directIo'> & {
    mirror?: MetadataMirror;
  },
  options: {
    stagingDir?: string;
    definitionRules?: () => Promise<DefinitionRules>;
    recheckAfterMs?: number;
  },
): Promise<StoreContext> {
  const stagingDir = options.stagingDir ? resolve(options.stagingDir) : undefined;
  if (stagingDir) await ensureDir(stagingDir);
  return {
    ...parts,
    stagingDir,
    recheckAfterMs: options.recheckAfterMs ?? DEFAULT_RECHECK_AFTER_MS,
    ...(options.definitionRules ? { definitionRules: options.definitionRules } : {}),
  };
}
