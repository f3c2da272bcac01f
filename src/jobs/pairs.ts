/**
 * Which jobs of the configuration copy a (server, target) pair. A target is named in results by
 * what the operator used: a configured target's name, or the URL or path given to `haven protect`;
 * a URL that is a configured target's own counts as that target. Server patterns are matched
 * against the name alone (core/config-patterns.ts), so no libvirt listing is needed.
 */
import { type HavenConfig, selectServers } from '../core/config.ts';

/** Names of the jobs whose servers select `server` and whose targets include `target`. */
export function jobsCopying(config: HavenConfig, server: string, target: string): string[] {
  return Object.values(config.jobs)
    .filter(
      (job) =>
        job.targets.some((t) => t === target || config.targets[t]?.url === target) &&
        selectServers(job.servers, [server]).includes(server),
    )
    .map((job) => job.name);
}

/** True when `target` is a configured target's name or URL. */
export function isConfiguredTarget(config: HavenConfig, target: string): boolean {
  return Object.values(config.targets).some((t) => t.name === target || t.url === target);
}
