/**
 * Opening a store by its directory, whatever its kind: the descriptor there says whether it is a
 * filesystem store or an LVM store (docs/store-lvm.md); a new store is an LVM store when volume
 * groups are given, a filesystem store otherwise.
 */
import { openDescriptorKind, readDescriptor } from './common/descriptor.ts';
import { MetadataLayout } from './common/metadata-layout.ts';
import { storeError } from './errors.ts';
import { type FsStore, type FsStoreOptions, openFsStore } from './fs/index.ts';
import { LvmCli } from './lvm/cli.ts';
import { checkLvmStore, type StoreCheck } from './lvm/doctor.ts';
import { type LvmStore, openLvmStore, parseGroups } from './lvm/index.ts';
import { checkRbdStore } from './rbd/doctor.ts';
import { openRbdStore, type RbdStore } from './rbd/index.ts';

export interface OpenStoreOptions extends FsStoreOptions {
  /** Volume groups of an LVM store (`vg_dr0,vg_dr1`, `vg_dr/pool0`): required to create one. */
  volumeGroups?: string;
  /** An rbd store's cluster and pool (`rbd://USER@CLUSTER/POOL`): required to create one. */
  rbd?: string;
}

export type AnyStore = FsStore | LvmStore | RbdStore;

export async function openStore(dir: string, options: OpenStoreOptions = {}): Promise<AnyStore> {
  const { volumeGroups, rbd, reflinks, ...common } = options;
  const kind =
    (await openDescriptorKind(dir)) ??
    (volumeGroups !== undefined ? 'lvm' : rbd !== undefined ? 'rbd' : 'fs');
  if (rbd !== undefined && kind !== 'rbd') {
    throw storeError('RBD_CONFLICT', 'usage', `${dir} is a ${kind} store, not a store of ${rbd}`, {
      hint: 'Leave --rbd out for this store, or give the rbd store its own directory.',
    });
  }
  if (kind === 'rbd') return openRbdStore(dir, { ...common, ...(rbd !== undefined ? { rbd } : {}) });
  if (kind === 'fs' && volumeGroups !== undefined) {
    throw storeError(
      'STORE_LVM_CONFLICT',
      'usage',
      `${dir} is a filesystem store, not a store of ${volumeGroups}`,
      {
        hint: 'Leave --lvm out for a filesystem store, or give the LVM store its own directory.',
      },
    );
  }
  if (kind === 'lvm')
    return openLvmStore(dir, { ...common, ...(volumeGroups !== undefined ? { volumeGroups } : {}) });
  return openFsStore(dir, { ...common, ...(reflinks !== undefined ? { reflinks } : {}) });
}

/**
 * `haven doctor --store DIR`: what the store at `dir` needs of this host. An LVM store's groups
 * (lvm/doctor.ts); nothing yet for a filesystem store. Reads only: the store is not opened.
 */
export async function storeDoctorChecks(dir: string): Promise<StoreCheck[]> {
  const descriptor = await readDescriptor(new MetadataLayout(dir));
  if (!descriptor) {
    return [
      {
        id: 'store',
        title: `store ${dir}`,
        status: 'fail',
        detail: 'no Haven store here (no haven-store.json)',
        fix: 'haven receive --store DIR creates one (add --lvm VG[,VG…] for an LVM store)',
        required: true,
      },
    ];
  }
  if (descriptor.kind === 'rbd' && descriptor.rbd) return checkRbdStore(descriptor.rbd);
  if (descriptor.kind !== 'lvm') return [];
  return checkLvmStore(new LvmCli(), parseGroups(descriptor.volumeGroups ?? ''));
}
