/**
 * The `hosts:` of a configured drill (docs/hosts.md, "Drills"): after its servers, every host
 * stored in the drill's store that the patterns select is recovered in a VM, one after the
 * other, each recorded as a host run with its own events (hosts/record.ts), exactly as
 * `haven host drill` records it. A host named literally but absent from the store fails with
 * STORE_HOST_NOT_FOUND: a drill that silently proved nothing would be worse than one that fails.
 */
import type { Catalog, RunTrigger } from '../catalog/catalog.ts';
import type { DrillConfig } from '../core/config.ts';
import { isLiteralServer, selectServers } from '../core/config-patterns.ts';
import type { Logger } from '../core/log.ts';
import { type HostDrillResult, runRecordedHostDrill } from '../hosts/index.ts';
import type { EventLog } from '../jobs/index.ts';
import { HostStore } from '../store/host/index.ts';
import { openStore } from '../store/index.ts';
import type { Virsh } from '../virt/index.ts';

export interface HostDrillsOptions {
  settings: DrillConfig;
  catalog: Catalog;
  events: EventLog;
  trigger: RunTrigger;
  virsh: Virsh;
  runDir: string;
  log: Logger;
  signal?: AbortSignal;
}

/** The hosts a drill recovers: those its patterns select in the store, and every literal name. */
export function drillHostNames(patterns: readonly string[], inStore: readonly string[]): string[] {
  const literal = patterns.filter((p) => isLiteralServer(p) && !inStore.includes(p));
  return [...selectServers(patterns, inStore), ...literal];
}

export async function runDrillHosts(o: HostDrillsOptions): Promise<HostDrillResult[]> {
  const { settings, log } = o;
  if (settings.hosts.length === 0) return [];
  const fs = await openStore(settings.store, { log });
  const store = { location: fs.location, descriptor: fs.descriptor };
  await fs.close();
  const names = drillHostNames(
    settings.hosts,
    await new HostStore(store.location, store.descriptor, { log }).listHosts(),
  );
  const results: HostDrillResult[] = [];
  for (const host of names) {
    if (o.signal?.aborted) break;
    const override = settings.overrides[host];
    // Config checks guarantee a marker: drill-wide, or this host's own (config-checks.ts).
    const marker = override?.bootMarker ?? settings.bootMarker;
    if (!marker) {
      log.warn(`drill ${settings.name}: no boot marker for host ${host}; not drilled`);
      continue;
    }
    const { result } = await runRecordedHostDrill({
      store,
      host,
      marker,
      timeoutMs: override?.timeoutMs ?? settings.timeoutMs,
      recoveryTimeoutMs: settings.recoveryTimeoutMs,
      vm: settings.hostVm,
      virsh: o.virsh,
      runDir: o.runDir,
      log,
      catalog: o.catalog,
      events: o.events,
      trigger: o.trigger,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    results.push(result);
  }
  return results;
}
