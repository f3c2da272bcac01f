/**
 * Receiving one host file (HostStore.beginFile): the bytes arrive in order and are appended to
 * `_incomplete` as they come, hashed on the way, never held in memory. `finish` checks the size
 * and digest the sender computed against what was written, makes the file durable and commits it
 * as generation `_1`; anything else leaves the stored generations as they were and removes the
 * incomplete file.
 */
import { randomUUID } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { createHasher, type DigestAlgorithm, type Hasher } from '../../core/digest.ts';
import type { Logger } from '../../core/log.ts';
import { fsyncDir, io, removeIfExists, writeAllAt } from '../common/files.ts';
import { storeError } from '../errors.ts';
import type { HostFileMeta, HostGeneration } from './types.ts';

/** Start writeback this often, so the final fsync does not wait for the whole file. */
const SYNC_EVERY = 32 * 1024 * 1024;

export interface WriterHooks {
  commit(g: HostGeneration): Promise<HostGeneration>;
  release(): Promise<void>;
  log: Logger;
}

export class HostFileWriter {
  readonly id = randomUUID();
  private readonly hasher: Hasher;
  private written = 0;
  private unsynced = 0;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly meta: HostFileMeta,
    private readonly digest: DigestAlgorithm,
    private readonly hooks: WriterHooks,
  ) {
    this.hasher = createHasher(digest);
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** Appends `data`, which must start where the file ends (`offset`). */
  async write(offset: number, data: Buffer): Promise<void> {
    if (this.closed) throw storeError('STORE_DELTA_STATE', 'protocol', 'the host file is closed');
    if (offset !== this.written) {
      throw storeError(
        'STORE_HOST_BAD_OFFSET',
        'protocol',
        `data at ${offset}, but ${this.written} bytes arrived so far`,
        {
          hint: 'The sender sent the file out of order; nothing was stored.',
          details: { offset, expected: this.written },
        },
      );
    }
    await io(this.path, () => writeAllAt(this.fh, data, offset));
    this.hasher.update(data);
    this.written += data.length;
    this.unsynced += data.length;
    if (this.unsynced >= SYNC_EVERY) {
      this.unsynced = 0;
      await io(this.path, () => this.fh.datasync());
    }
  }

  /**
   * Checks what arrived against the sender's size and digest, makes it durable and commits it
   * (rotation, manifest). Returns the new generation (seq 1).
   */
  async finish(expected: { size: number; digest: string }): Promise<HostGeneration> {
    try {
      const got = this.hasher.digest().toString('hex');
      if (expected.size !== this.written) {
        throw storeError(
          'STORE_HOST_SIZE_MISMATCH',
          'integrity',
          `${this.meta.host} ${this.meta.kind}: ${this.written} bytes arrived, the sender sent ${expected.size}`,
          {
            hint: 'Nothing was stored; run the backup again.',
            details: { got: this.written, expected: expected.size },
          },
        );
      }
      if (got !== expected.digest) {
        throw storeError(
          'STORE_HOST_DIGEST_MISMATCH',
          'integrity',
          `${this.meta.host} ${this.meta.kind}: what arrived does not match the sender's digest`,
          { hint: 'Nothing was stored; run the backup again.', details: { got, expected: expected.digest } },
        );
      }
      await io(this.path, () => this.fh.sync());
      await this.close();
      await fsyncDir(this.path.slice(0, this.path.lastIndexOf('/')));
      const now = new Date().toISOString();
      const base = {
        id: this.id,
        seq: 1,
        takenAt: this.meta.takenAt,
        committedAt: now,
        size: this.written,
        digest: got,
        tests: [],
      };
      const { facts, rescueId } = this.meta;
      // checkMeta (host-store.ts) made sure each kind has its field before the writer began.
      if (this.meta.kind === 'rescue' ? !facts : rescueId === undefined) {
        throw storeError(
          'STORE_HOST_BAD_META',
          'protocol',
          `host file of ${this.meta.host}: its metadata is incomplete`,
        );
      }
      const g: HostGeneration =
        this.meta.kind === 'rescue' && facts
          ? { ...base, kind: 'rescue', facts }
          : { ...base, kind: 'backup', rescueId: rescueId ?? '', excludes: this.meta.excludes ?? [] };
      const committed = await this.hooks.commit(g);
      this.hooks.log.info('host file committed', { id: g.id, bytes: this.written });
      return committed;
    } catch (e) {
      await this.discard();
      throw e;
    } finally {
      await this.hooks.release();
    }
  }

  /** Throws what arrived away; the stored generations are untouched. */
  async discard(): Promise<void> {
    await this.close();
    // A rotation that started renames the file away first; before that it is only ours.
    await removeIfExists(this.path).catch(() => {});
    await this.hooks.release();
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close().catch(() => {});
  }
}
