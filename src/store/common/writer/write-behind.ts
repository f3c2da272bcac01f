/**
 * Write-behind: a datasync of the file being written, started beside the writes after every
 * WRITE_BEHIND_BYTES. Linux starts writing dirty pages back only at dirty_background_ratio
 * (gigabytes on a large host), so without it a checkpoint or the seal would flush everything at
 * once while nothing else moves. It only hastens writeback: durability still comes from the
 * writer's syncs. A failure is kept and thrown at the next of them, since Linux reports a
 * writeback error to one fsync only.
 */
import type { DataTarget } from './kind.ts';

const WRITE_BEHIND_BYTES = 32 << 20;

export class WriteBehind {
  private flushing: Promise<void> | null = null;
  private failure: unknown = null;
  private sinceFlush = 0;

  /** Counts `bytes` written to `target`'s file; starts its datasync when enough arrived. */
  add(target: DataTarget, bytes: number): void {
    this.sinceFlush += bytes;
    if (this.flushing || this.sinceFlush < WRITE_BEHIND_BYTES) return;
    this.sinceFlush = 0;
    this.flushing = target
      .datasync()
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.flushing = null;
      });
  }

  /** Waits for the running datasync; throws the failure of any datasync so far. */
  async settle(): Promise<void> {
    await this.wait();
    if (this.failure !== null) throw this.failure;
  }

  /** Waits for the running datasync, whatever its outcome. */
  async wait(): Promise<void> {
    if (this.flushing) await this.flushing;
  }
}
