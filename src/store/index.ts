/** Target-side storage (docs/design.md §3, §4): the Store contract and its implementations. */

export { emptyVerifyReport } from './common/checks.ts';
export { CRASH_ENV, CRASH_STEPS, type CrashStep } from './crash.ts';
export { StoreError } from './errors.ts';
export { createFsStore, FsStore, type FsStoreOptions, openFsStore } from './fs/index.ts';
export type { StoreCheck } from './lvm/doctor.ts';
export { LvmStore, type LvmStoreOptions, openLvmStore } from './lvm/index.ts';
export { type AnyStore, type OpenStoreOptions, openStore, storeDoctorChecks } from './open.ts';
export * from './types.ts';
