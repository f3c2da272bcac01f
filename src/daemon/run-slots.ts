/**
 * The daemon's runs of one kind (drills, scrubs) by name: one run of a name at a time, each with
 * the controller that stops it, and all of them stopped together when the daemon stops.
 */
export class RunSlots {
  private readonly running = new Map<string, { abort: AbortController; done: Promise<unknown> }>();

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  /** Holds `name` until `done` settles. */
  hold(name: string, abort: AbortController, done: Promise<unknown>): void {
    this.running.set(name, { abort, done });
    void done.then(
      () => this.running.delete(name),
      () => this.running.delete(name),
    );
  }

  /** Stops every run and waits at most `timeoutMs` for them to end. */
  async stopAll(timeoutMs: number): Promise<void> {
    const all = [...this.running.values()];
    for (const r of all) r.abort.abort();
    await Promise.race([
      Promise.allSettled(all.map((r) => r.done)),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }
}
