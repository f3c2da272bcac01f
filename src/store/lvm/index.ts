/** The LVM store (docs/store-lvm.md). */
export { LvmStore, type LvmStoreOptions, openLvmStore } from './lvm-store.ts';
export { formatGroups, parseGroups } from './report.ts';
