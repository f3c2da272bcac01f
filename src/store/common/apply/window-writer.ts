/**
 * Image writes from windows over a delta's staged data, several in flight (apply.ts). The
 * windows are aligned memory and staged data lies at aligned positions, so reads and writes go
 * past the page cache without a copy (direct-io.ts). Writes whose ranges overlap (a block sent
 * twice) still land in index order.
 */
import { alignedBuffer, DIRECT_ALIGN } from '../../../core/aligned-memory.ts';
import { storeError } from '../../errors.ts';
import type { DirectReads } from '../direct-io.ts';
import { io } from '../files.ts';
import type { WritableImage } from '../images.ts';

/** The staged data is read in windows of this size (entries are laid out in index order). */
export const DATA_WINDOW = 8 << 20;
/** Image writes in flight while applying. */
const MAX_WRITES = 16;

interface InFlight {
  image: WritableImage;
  start: number;
  end: number;
  window: 0 | 1;
  done: Promise<void>;
}

export class WindowWriter {
  /**
   * Two windows: the next is read while writes from the current one still run (reads and writes
   * of one window alternated before, each waiting for the other).
   */
  private readonly windows: [Buffer, Buffer] = [
    alignedBuffer(DATA_WINDOW + DIRECT_ALIGN),
    alignedBuffer(DATA_WINDOW + DIRECT_ALIGN),
  ];
  private current: 0 | 1 = 0;
  /** Data-file range the current window holds. */
  private windowStart = 0;
  private windowEnd = 0;
  private inflight: InFlight[] = [];
  private failure: unknown = null;

  constructor(
    private readonly data: DirectReads,
    private readonly dataPath: string,
    private readonly dataLength: number,
  ) {}

  /**
   * Writes data-file bytes [dataPos, +length) at `offset` of `image` (maybe later; see settle()).
   * `check` sees the bytes first, with the image offset they go to (in pieces of at most a
   * window, each starting where a chunk does); it throws to stop the write.
   */
  async write(
    image: WritableImage,
    offset: number,
    dataPos: number,
    length: number,
    check?: (offset: number, bytes: Buffer) => void,
  ): Promise<void> {
    if (length > DATA_WINDOW) {
      await this.settle();
      for (let done = 0; done < length; ) {
        const n = Math.min(DATA_WINDOW, length - done);
        const window = await this.fill(dataPos + done, n);
        check?.(offset + done, window.subarray(0, n));
        await io(image.path, () => image.out.write(window.subarray(0, n), offset + done));
        done += n;
      }
      return;
    }
    if (dataPos < this.windowStart || dataPos + length > this.windowEnd) {
      const next = this.current === 0 ? 1 : 0;
      await this.settleWindow(next);
      this.current = next;
      await this.fill(dataPos, length);
    }
    const end = offset + length;
    if (this.inflight.some((w) => w.image === image && w.start < end && offset < w.end)) await this.settle();
    const at = dataPos - this.windowStart;
    const view = this.windows[this.current].subarray(at, at + length);
    check?.(offset, view);
    const done = io(image.path, () => image.out.write(view, offset));
    done.catch((e: unknown) => {
      this.failure ??= e;
    });
    this.inflight.push({ image, start: offset, end, window: this.current, done });
    if (this.inflight.length >= MAX_WRITES) await this.inflight.shift()?.done;
  }

  /** Waits for every write in flight; throws the first failure. */
  async settle(): Promise<void> {
    const all = this.inflight;
    this.inflight = [];
    await Promise.allSettled(all.map((w) => w.done));
    if (this.failure !== null) throw this.failure;
  }

  /** Lets writes in flight finish before the files close (after a failure elsewhere). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.inflight.map((w) => w.done));
    this.inflight = [];
  }

  /** Waits for the writes from window `window` (before it is read again); throws the first failure. */
  private async settleWindow(window: 0 | 1): Promise<void> {
    const mine = this.inflight.filter((w) => w.window === window);
    this.inflight = this.inflight.filter((w) => w.window !== window);
    await Promise.allSettled(mine.map((w) => w.done));
    if (this.failure !== null) throw this.failure;
  }

  /** Reads the current window from `pos`: at least `need` bytes, as much as fits. */
  private async fill(pos: number, need: number): Promise<Buffer> {
    const window = this.windows[this.current];
    const want = Math.min(DATA_WINDOW, this.dataLength - pos);
    let got = 0;
    while (got < want) {
      const bytesRead = await io(this.dataPath, () =>
        this.data.read(window.subarray(got), want - got, pos + got),
      );
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < need) {
      // Guarded against by the range check; a short read means the file changed under us.
      throw storeError(
        'STORE_DELTA_MISSING',
        'integrity',
        `${this.dataPath} is shorter than its index says`,
        {
          hint: 'The staged delta is damaged; remove it and run the job again.',
        },
      );
    }
    this.windowStart = pos;
    this.windowEnd = pos + got;
    return window;
  }
}
