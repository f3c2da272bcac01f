/** The filesystem store (docs/design.md §4; on-disk format in docs/store-format.md). */
export { createFsStore, FsStore, type FsStoreOptions, openFsStore } from './fs-store.ts';
