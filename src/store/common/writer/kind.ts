/**
 * The two kinds of delta a writer receives (docs/design.md §4.2), behind one interface so that the
 * writer's lifecycle (writer.ts: the serial queue, state, checkpoints, seal) exists once:
 * - staged.ts: every later run: data appended to the delta's `data` file, each extent logged in
 *   its `index`; the generations are untouched until commit.
 * - direct.ts: a first run: data straight into the `_incomplete` images, since nothing older
 *   exists to protect.
 * `K` is what the kind keeps per disk (DeltaDisk.kindState).
 */

import type { PositionedWrites } from '../images.ts';
import type { DeltaRecord } from '../records.ts';
import type { DeltaDisk } from './disk.ts';

/** Where the bytes of one data write go. */
export interface DataTarget {
  out: PositionedWrites;
  /** Position in the file `out` writes. */
  at: number;
  /** What I/O errors of the write name. */
  what: string;
  /** Starts a datasync of the file written (write-behind). */
  datasync(): Promise<void>;
}

export interface DeltaKind<K> {
  /** What I/O errors of the digest writes that follow a data write name. */
  readonly sumsWhat: string;
  /**
   * Where a data write of `length` bytes at `offset` goes; runs in call order, before the write
   * starts. `settleWrites` waits for the data writes still running.
   */
  placeData(
    disk: DeltaDisk<K>,
    offset: number,
    length: number,
    settleWrites: () => Promise<void>,
  ): Promise<DataTarget>;
  /** The kind's bookkeeping of a data write that has started. */
  bookData(
    disk: DeltaDisk<K>,
    target: DataTarget,
    offset: number,
    digests: Buffer,
    length: number,
  ): Promise<void>;
  /** Stages a zero range. No data write is running. */
  stageZero(disk: DeltaDisk<K>, offset: number, length: number): Promise<void>;
  /** Fills the digests of chunks `out` holds as "not staged" with what the target holds there. */
  fillUnstaged(disk: DeltaDisk<K>, fromChunk: number, count: number, out: Buffer): Promise<void>;
  /** Writes out what the kind buffers (index entries, holes to punch). No data write is running. */
  flush(disks: DeltaDisk<K>[]): Promise<void>;
  /** Makes the kind's files durable: its own, and those of `dirty` disks. */
  sync(dirty: DeltaDisk<K>[]): Promise<void>;
  /** Makes the names of files just created durable. */
  syncCreated(): Promise<void>;
  /** Brings the files back to the record's last checkpoint (resume); STORE_PARTIAL_DAMAGED if it cannot. */
  reconcile(disks: DeltaDisk<K>[]): Promise<void>;
  /** Copies the kind's staged state into the record (written by the caller). */
  snapshot(record: DeltaRecord, disks: DeltaDisk<K>[]): void;
  close(disks: DeltaDisk<K>[]): Promise<void>;
}
