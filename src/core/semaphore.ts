/**
 * A counting semaphore: at most N holders at once (servers sending at once in a job, servers of
 * one boot priority starting at once in an activation). Waiters are served in arrival order.
 */
export class Semaphore {
  private waiters: Array<() => void> = [];
  constructor(private free: number) {}

  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    };
  }
}
