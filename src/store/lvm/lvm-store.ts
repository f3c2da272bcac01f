/**
 * The LVM store (docs/store-lvm.md): images as logical volumes (images.ts) in the volume groups
 * the store was created with, Haven's metadata as files in a directory on the DR host — the same
 * layout and code as the filesystem store's (common/). Here: opening and creating one.
 */
import type { DefinitionRules } from '../../core/definition-context.ts';
import type { DigestAlgorithm } from '../../core/digest.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { type StoreContext, storeContext } from '../common/context.ts';
import { openDescriptor, readDescriptor } from '../common/descriptor.ts';
import { MetadataLayout } from '../common/metadata-layout.ts';
import { StoreBase } from '../common/store-base.ts';
import { storeError } from '../errors.ts';
import { LvmCli } from './cli.ts';
import { LvmImages } from './images.ts';
import { formatGroups, type GroupSpec, parseGroups, places } from './report.ts';

export interface LvmStoreOptions {
  /** The volume groups (`vg_dr0,vg_dr1`, `vg_dr/pool0`): required to create, checked when given. */
  volumeGroups?: string;
  /** Initialise the directory as an LVM store if it holds none yet. */
  create?: boolean;
  digest?: DigestAlgorithm;
  /** Where staged deltas go (a filesystem the operator chooses); default the store's `.haven` area. */
  stagingDir?: string;
  log?: Logger;
  /** Write images past the page cache (O_DIRECT); default true. */
  directIo?: boolean;
  busyWaitMs?: number;
  definitionRules?: () => Promise<DefinitionRules>;
  /** How long a generation's check stays good (common/checked.ts; default a day). */
  recheckAfterMs?: number;
  /** The lvm program (tests); default `lvm`. */
  lvmCommand?: string;
}

export async function openLvmStore(dir: string, options: LvmStoreOptions = {}): Promise<LvmStore> {
  const layout = new MetadataLayout(dir);
  const log = options.log ?? silentLogger;
  const given =
    options.volumeGroups === undefined ? undefined : formatGroups(parseGroups(options.volumeGroups));
  const existing = await readDescriptor(layout);
  if (existing && given !== undefined && existing.volumeGroups !== given) {
    throw storeError(
      'STORE_LVM_CONFLICT',
      'usage',
      `${layout.root} is a store of ${existing.volumeGroups ?? 'no volume groups'}, not ${given}`,
      {
        hint: 'Leave --lvm out for an existing store (its descriptor lists its groups), or give exactly those.',
      },
    );
  }
  if (!existing && options.create && given === undefined) {
    throw storeError(
      'STORE_LVM_NO_VG',
      'not-found',
      `no volume group given to create the LVM store ${layout.root}`,
      {
        hint: 'Name the volume groups: haven receive --store DIR --lvm VG[,VG…] (VG/POOL for a thin pool).',
      },
    );
  }
  const lvm = new LvmCli(options.lvmCommand);
  // The groups must exist before the store is created in them.
  if (!existing && options.create && given !== undefined) await checkGroups(lvm, parseGroups(given));
  const descriptor = await openDescriptor(layout, 'lvm', {
    log,
    ...(options.create ? { create: true } : {}),
    ...(options.digest ? { digest: options.digest } : {}),
    ...(given !== undefined ? { volumeGroups: given } : {}),
  });
  const groups = parseGroups(descriptor.volumeGroups ?? '');
  const directIo = options.directIo ?? true;
  const images = new LvmImages(layout, lvm, { groups, storeId: descriptor.id, directIo });
  await images.reconcileLinks();
  const ctx = await storeContext({ layout, images, descriptor, log, directIo }, options);
  return new LvmStore(layout, images, ctx, options.busyWaitMs ?? 30_000);
}

/** Throws STORE_LVM_NO_VG unless every group (and thin pool) exists. */
async function checkGroups(lvm: LvmCli, groups: GroupSpec[]): Promise<void> {
  const names = groups.map((g) => g.vg);
  places(groups, await lvm.vgs(names), await lvm.lvs(names));
}

export class LvmStore extends StoreBase {
  readonly kind = 'lvm' as const;

  constructor(
    readonly layout: MetadataLayout,
    readonly images: LvmImages,
    ctx: StoreContext,
    busyWaitMs: number,
  ) {
    super(ctx, layout.root, busyWaitMs);
  }

  /** What a sender is told of the store's room (docs/stream-protocol.md §4.1): the groups' together. */
  capacity(): Promise<{ totalBytes: number; freeBytes: number }> {
    return this.images.capacity();
  }
}
