/**
 * Boot order at activation: the priority kept in each server's manifest (lower first, default
 * 100), then the name, so the order is the same on every run.
 */
export function orderForBoot(servers: ReadonlyArray<{ server: string; priority: number }>): string[] {
  return [...servers]
    .sort((a, b) => a.priority - b.priority || (a.server < b.server ? -1 : a.server > b.server ? 1 : 0))
    .map((s) => s.server);
}

/**
 * The same order as waves: the servers of one priority together, lower priorities first. An
 * activation starts a wave's servers side by side and the next wave once all of them run, so a
 * server never starts before one of a lower priority (docs/recovery.md, "Activation").
 */
export function bootWaves(servers: ReadonlyArray<{ server: string; priority: number }>): string[][] {
  const priority = new Map(servers.map((s) => [s.server, s.priority]));
  const waves: string[][] = [];
  let last: number | undefined;
  for (const server of orderForBoot(servers)) {
    const p = priority.get(server)!;
    if (waves.length === 0 || p !== last) waves.push([]);
    waves.at(-1)!.push(server);
    last = p;
  }
  return waves;
}
