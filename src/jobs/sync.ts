/**
 * Small coordination primitives for the job runner: a turnstile (servers take their point in
 * time one after another, in a fixed order) and a latch (sending waits until every server of a
 * batch is staged). The counting semaphore (servers sending at once) is core/semaphore.ts.
 */

/**
 * Position i may pass once every position before it is done. Marking a position done twice, or
 * out of order, is harmless: a failed server must never hold up the ones after it.
 */
export class Turnstile {
  private readonly done: boolean[];
  private readonly waiters = new Map<number, () => void>();
  private cursor = 0;

  constructor(readonly size: number) {
    this.done = new Array<boolean>(size).fill(false);
  }

  wait(i: number): Promise<void> {
    if (i <= this.cursor) return Promise.resolve();
    return new Promise((resolve) => this.waiters.set(i, resolve));
  }

  markDone(i: number): void {
    if (i < 0 || i >= this.size || this.done[i]) return;
    this.done[i] = true;
    while (this.cursor < this.size && this.done[this.cursor]) this.cursor++;
    for (const [k, resolve] of this.waiters) {
      if (k <= this.cursor) {
        this.waiters.delete(k);
        resolve();
      }
    }
  }
}

/** Opens once `count` distinct members have arrived. */
export class Latch {
  private readonly arrived = new Set<string>();
  private open!: () => void;
  readonly opened: Promise<void>;

  constructor(private readonly count: number) {
    this.opened = new Promise((resolve) => {
      this.open = resolve;
    });
    if (count <= 0) this.open();
  }

  arrive(member: string): void {
    this.arrived.add(member);
    if (this.arrived.size >= this.count) this.open();
  }
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
