/**
 * A second copy of a store's metadata files kept elsewhere, written through as the files change:
 * the rbd store keeps its manifests, journals, delta records, digests and definitions in the Ceph
 * pool beside its images (rbd/mirror.ts), so that a DR site recovers from the cluster alone,
 * while the shared code here keeps reading and writing them as files in a local directory. A
 * filesystem store has none: its files are the store.
 *
 * Every call comes after the local change is durable, and returns once the copy holds it too. A
 * crash between the two leaves the copy one change behind; the store kind catches up when it next
 * opens (rbd/mirror.ts `sync`).
 */
export interface MetadataMirror {
  /** The file at `path` now holds its new content durably here. */
  saved(path: string): Promise<void>;
  /** The file or directory at `path` was removed here. */
  removed(path: string): Promise<void>;
}
