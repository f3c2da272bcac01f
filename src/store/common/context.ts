/** What every part of the shared write path is given: the store's files, its images, its settings. */
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { Logger } from '../../core/log.ts';
import type { StoreDescriptor } from '../types.ts';
import type { ImageVolumes } from './images.ts';
import type { MetadataLayout } from './metadata-layout.ts';

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
}
