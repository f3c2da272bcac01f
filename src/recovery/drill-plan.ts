/**
 * `haven drill --dry-run`: what a drill would do, checked as far as it can be without booting
 * anything or recording anything. Per server: the generation (and its structural check, or every
 * digest with `verify`), the definition as the rule and the network mapping leave it (missing
 * networks refused as a real drill would be), the marker and the timeout. Nothing is held,
 * created or written, and no run or event is recorded.
 */
import { join } from 'node:path';
import type { BootMarker, DrillConfig } from '../core/config.ts';
import { asHavenError, type HavenError } from '../core/errors.ts';
import type { Generation, Store } from '../store/types.ts';
import { type DefinitionSummary, readSafeDefinition, summary } from './boot.ts';
import { noMarker, type RunDrillDeps, serverDrillSettings, withDrillStore } from './drill.ts';
import { checkGeneration, chooseGeneration } from './generation.ts';
import { drillNetworks, type NicPlan } from './networks.ts';
import { choosePoint, pointAsGeneration } from './restore-point.ts';

export interface DrillPlanEntry {
  server: string;
  generation?: Pick<Generation, 'id' | 'seq' | 'takenAt'>;
  marker?: BootMarker;
  timeoutMs: number;
  /** `isolated`: no interfaces; else what each would join. */
  networks: NicPlan[] | 'isolated';
  definition?: DefinitionSummary;
  /** Why a drill of it would fail before booting. */
  error?: ReturnType<HavenError['toJSON']>;
}

export interface DrillPlan {
  drill: string;
  store: string;
  dryRun: true;
  servers: DrillPlanEntry[];
  /** Every server would boot (what the boot itself shows is not known yet). */
  ok: boolean;
}

/** The generation a drill would boot, checked; or the journal point `--at` names. */
async function plannedCopy(store: Store, server: string, deps: RunDrillDeps): Promise<Generation> {
  if (deps.at !== undefined) return pointAsGeneration(await choosePoint(store, server, deps.at), server);
  const { generation } = await chooseGeneration(store, server, deps.generation);
  await checkGeneration(store, server, generation, { full: deps.verify, signal: deps.signal });
  return generation;
}

export function planDrill(config: DrillConfig, deps: RunDrillDeps): Promise<DrillPlan> {
  return withDrillStore(config, deps, async (store, servers) => {
    const plan: DrillPlan = {
      drill: config.name,
      store: store.location,
      dryRun: true,
      servers: [],
      ok: true,
    };
    for (const server of servers) {
      const { marker, timeoutMs } = serverDrillSettings(config, deps, server);
      const networks = drillNetworks(config.networks, deps.networks ?? {}, server, deps.virsh);
      const entry: DrillPlanEntry = {
        server,
        timeoutMs,
        networks: networks ? [] : 'isolated',
        ...(marker ? { marker } : {}),
      };
      plan.servers.push(entry);
      try {
        if (!marker) throw noMarker(config, server);
        const generation = await plannedCopy(store, server, deps);
        entry.generation = { id: generation.id, seq: generation.seq, takenAt: generation.takenAt };
        const dir = join(deps.runDir, 'drills', server.slice(0, 40));
        const safe = await readSafeDefinition(store, server, generation, {
          rules: deps.rules,
          hostFiles: { files: dir, sockets: dir },
          networks,
          log: deps.log.child({ server }),
        });
        entry.definition = summary(safe.report);
        if (networks) entry.networks = safe.networks;
      } catch (e) {
        const err = asHavenError(e);
        entry.error = err.toJSON();
        if (Array.isArray(err.details?.networks)) entry.networks = err.details.networks as NicPlan[];
        plan.ok = false;
      }
    }
    return plan;
  });
}
