/**
 * Boot order at activation: the priority kept in each server's manifest (lower first, default
 * 100), then the name, so the order is the same on every run.
 */
export function orderForBoot(servers: ReadonlyArray<{ server: string; priority: number }>): string[] {
  return [...servers]
    .sort((a, b) => a.priority - b.priority || (a.server < b.server ? -1 : a.server > b.server ? 1 : 0))
    .map((s) => s.server);
}
