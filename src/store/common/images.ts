/**
 * The seam between the shared write path (common/) and where a store kind keeps its images: files
 * in a directory (fs/images.ts), logical volumes (an LVM store), RBD images. Everything else a
 * store holds — manifests, digest files, delta records and staged data, journals, definitions,
 * locks — is plain files in a metadata directory for every kind (metadata-layout.ts) and is
 * written by common/ code alone.
 *
 * The commit (docs/design.md §4.2 steps 2–4) and the first run's direct writes reach images only through
 * this interface, in the order common/ calls it; an implementation adds no ordering of its own
 * beyond what each method says is durable when it returns.
 */
import type { DiskSourceSpec } from '../../core/domain-xml.ts';
import type { Logger } from '../../core/log.ts';
import type { ByteRange } from './holes.ts';
import type { Seq } from './rotation-plan.ts';

/** Positioned writes into one image (direct-io.ts DirectWrites for files and block devices). */
export interface PositionedWrites {
  /** Writes all of `buf` at `position`; `buf` stays untouched until the promise settles. */
  write(buf: Buffer, position: number): Promise<void>;
}

/** An image open for writing. */
export interface WritableImage {
  /** The image's path (a file, a block device, `rbd:POOL/IMAGE`), as errors and logs name it. */
  readonly path: string;
  /** Positioned writes, past the page cache where the storage allows (direct-io.ts). */
  readonly out: PositionedWrites;
  /** The image's size in bytes now. */
  size(): Promise<number>;
  /** Cuts the image to `size` bytes or grows it, the new part reading as zeroes (a hole). */
  resize(size: number): Promise<void>;
  /** Makes `ranges` read as zeroes, as holes (discarded blocks) where the storage can. */
  punch(ranges: ByteRange[], log: Logger): Promise<void>;
  /** Flushes written data without waiting for metadata (write-behind: hastens, proves nothing). */
  datasync(): Promise<void>;
  /** Makes everything written so far durable. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** An image open for reading (verify, the commit's checks of kept chunks). */
export interface ReadableImage {
  /** The image's path, as errors and logs name it. */
  readonly path: string;
  /** The image's size in bytes when it was opened. */
  readonly size: number;
  /**
   * Reads `length` bytes at `position` into `buf` (past the page cache where `buf` is aligned
   * memory and the storage allows it); bytes past the image's end read as zeroes.
   */
  read(buf: Buffer, length: number, position: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenWritableOptions {
  /** `always`: a new empty image replaces any; `never`: it must exist; `if-missing`: either. */
  create: 'always' | 'never' | 'if-missing';
  /** Then set the size to this (resize). */
  size?: number;
  /** Where a fallback (no O_DIRECT here) is logged. */
  log: Logger;
}

/** What a rotation needs room for (NO_SPACE is refused before anything changes). */
export interface RotationRoom {
  server: string;
  /**
   * How the new slot starts: the recycled oldest generation's images, a copy of the newest's, or
   * a clone that shares the newest's blocks (every block the deltas write is copied on write).
   */
  slot: 'recycle' | 'copy' | 'clone';
  /** Where the slot's images come from (before the renames). */
  fromSeq: number;
  /** Per disk of the new generation: its size, the data bytes the applied deltas carry, and whether the slot's source has it. */
  disks: { name: string; size: number; dataBytes: number; inSource: boolean }[];
}

export interface ImageVolumes {
  /** Images are block devices (definitions name them `<disk type='block'>`), not files. */
  readonly blockDevices: boolean;
  /** Where the image is: a file path (fs), a block device path (lvm), `rbd:POOL/IMAGE` (rbd). */
  path(server: string, disk: string, seq: Seq): string;
  /** What a DR definition's disk names when the image is not a path: an rbd store's network disk. */
  diskSource?(server: string, disk: string, seq: Seq): DiskSourceSpec;
  /** Bytes the image takes in the storage (allocated blocks; 0 when it does not exist). */
  allocated(server: string, disk: string, seq: Seq): Promise<number>;
  exists(server: string, disk: string, seq: Seq): Promise<boolean>;
  /** Renames one image; false, changing nothing, when `from` does not exist. */
  rename(server: string, disk: string, from: Seq, to: Seq): Promise<boolean>;
  /** Removes one image; false when it did not exist. */
  remove(server: string, disk: string, seq: Seq): Promise<boolean>;
  /** Makes every creation, rename and removal so far durable (a directory fsync for files). */
  syncNames(): Promise<void>;
  openWritable(server: string, disk: string, seq: Seq, options: OpenWritableOptions): Promise<WritableImage>;
  /**
   * Opens one image for reading; null when it does not exist. What is open stays the same image
   * when it is renamed (a file descriptor; an open block device).
   */
  openRead(server: string, disk: string, seq: Seq): Promise<ReadableImage | null>;
  /** The sequence numbers (and `incomplete`) of the images of `server`'s disk `disk` that exist. */
  list(server: string, disk: string): Promise<Seq[]>;
  /** Reads `length` bytes at `position` into `buf`; bytes past the image's end read as zeroes. */
  read(server: string, disk: string, seq: Seq, buf: Buffer, length: number, position: number): Promise<void>;
  /**
   * Makes image `to` a durable copy of `from` (replacing any `to`): a clone where the storage
   * shares blocks, else only the data. Returns how, for the log.
   */
  copy(server: string, disk: string, from: Seq, to: Seq, log: Logger): Promise<string>;
  /**
   * Whether a rotation keeping `copies` generations clones the newest instead of replaying the
   * deltas the oldest missed (docs/design.md §4.2: "the store may clone instead of replaying").
   */
  rotationClones(copies: number, log: Logger): Promise<boolean>;
  /** Throws NO_SPACE when the rotation described cannot finish for lack of room. */
  checkRoom(room: RotationRoom): Promise<void>;
}
