/** The filesystem store (DESIGN §4; on-disk format in docs/store-format.md). */
export { createFsStore, FsStore, type FsStoreOptions, openFsStore } from './fs-store.ts';
