/**
 * Bandwidth limit: a token bucket over bytes on the wire. `take(n)` resolves when n bytes may go.
 * The bucket holds at most `burst` bytes so a pause does not turn into a line-rate spike later.
 */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `rate` in bytes per second; 0 or less means unlimited. */
  constructor(
    readonly rate: number,
    readonly burst: number = Math.max(rate / 4, 1 << 20),
    private readonly clock: Clock = realClock,
  ) {
    this.tokens = this.burst;
    this.last = clock.now();
  }

  get unlimited(): boolean {
    return !(this.rate > 0);
  }

  async take(bytes: number): Promise<void> {
    if (this.unlimited) return;
    this.refill();
    this.tokens -= bytes;
    // A frame larger than the bucket still goes (the debt is paid by waiting afterwards).
    if (this.tokens < 0) {
      await this.clock.sleep((-this.tokens / this.rate) * 1000);
      this.refill();
    }
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }
}
