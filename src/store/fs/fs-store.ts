/**
 * The filesystem store: raw image files named exactly as docs/design.md §4.1, with Haven's metadata
 * beside them in the same directory (docs/store-format.md). What every store kind does alike is
 * common/store-base.ts; here: opening and creating a store directory (its images are files:
 * images.ts).
 */
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { DigestAlgorithm } from '../../core/digest.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { type StoreContext, storeContext } from '../common/context.ts';
import { openDescriptor } from '../common/descriptor.ts';
import { StoreBase } from '../common/store-base.ts';
import { FsImages } from './images.ts';
import { FsLayout } from './layout.ts';

export interface FsStoreOptions {
  /** Initialise the directory as a store if it holds none yet. */
  create?: boolean;
  /** Digest algorithm of a new store (default blake3); must match an existing store's. */
  digest?: DigestAlgorithm;
  /** Where staged deltas go (a target cache drive); default the store's own `.haven` area. */
  stagingDir?: string;
  log?: Logger;
  /**
   * Write images and staged data past the page cache (O_DIRECT) where the filesystem allows it;
   * default true. Off, every write goes through the page cache (common/direct-io.ts says why not).
   */
  directIo?: boolean;
  /**
   * Rotate by cloning the newest generation where the filesystem has reflinks (XFS, btrfs);
   * default true. Off, generations share no blocks and each rotation replays deltas.
   */
  reflinks?: boolean;
  /** How long a reader waits for a running rotation's short renaming steps (default 30 s). */
  busyWaitMs?: number;
  /**
   * The DR host's settings for definitions (config `definitions`), asked for only when a new
   * server's definition is written; without it the rule applies with no allowances.
   */
  definitionRules?: () => Promise<DefinitionRules>;
  /**
   * How long a generation's check stays good: a commit re-reads the generation its new slot
   * starts from only when part of it was last checked longer ago (common/checked.ts; default a
   * day, config `integrity.recheck`; 0 = every commit).
   */
  recheckAfterMs?: number;
}

export async function openFsStore(dir: string, options: FsStoreOptions = {}): Promise<FsStore> {
  const layout = new FsLayout(dir);
  const log = options.log ?? silentLogger;
  const descriptor = await openDescriptor(layout, 'fs', {
    log,
    ...(options.create ? { create: true } : {}),
    ...(options.digest ? { digest: options.digest } : {}),
  });
  const directIo = options.directIo ?? true;
  const images = new FsImages(layout, { directIo, reflinks: options.reflinks ?? true });
  const ctx = await storeContext({ layout, images, descriptor, log, directIo }, options);
  return new FsStore(layout, ctx, options.busyWaitMs ?? 30_000);
}

export function createFsStore(dir: string, options: Omit<FsStoreOptions, 'create'> = {}): Promise<FsStore> {
  return openFsStore(dir, { ...options, create: true });
}

export class FsStore extends StoreBase {
  readonly kind = 'fs' as const;

  constructor(
    readonly layout: FsLayout,
    ctx: StoreContext,
    busyWaitMs: number,
  ) {
    super(ctx, layout.root, busyWaitMs);
  }
}
