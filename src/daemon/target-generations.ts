/**
 * What each target holds, for the dashboard's generations view: the newest generation of every
 * server asked about. A store on this host is read in-process, as `haven images` reads it (a
 * reader of the store's manifests, docs/store-format.md "Readers"), so the view costs a few file
 * reads instead of a `haven receive` process per target; a remote target is asked over its
 * transport, with the QUERY a replication starts with.
 */
import type { HavenConfig } from '../core/config.ts';
import { asHavenError, HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { resolveTarget, senderFactory } from '../jobs/index.ts';
import { activeAtDrError } from '../store/errors.ts';
import { openStore } from '../store/index.ts';

type Answer = { newest: unknown } | { error: ReturnType<HavenError['toJSON']> };

/** Keyed by `server\0target`. */
export async function targetGenerations(
  config: HavenConfig,
  pairs: Array<{ server: string; target: string }>,
  log: Logger,
): Promise<Map<string, Answer>> {
  const out = new Map<string, Answer>();
  const byTarget = new Map<string, string[]>();
  for (const p of pairs) byTarget.set(p.target, [...(byTarget.get(p.target) ?? []), p.server]);
  await Promise.all(
    [...byTarget].map(async ([target, servers]) => {
      try {
        const resolved = resolveTarget(target, config);
        const answers =
          resolved.endpoint.kind === 'local'
            ? await readLocal(resolved.endpoint.path, servers, log)
            : await askRemote(target, config, servers, log);
        for (const [s, a] of answers) out.set(`${s}\u0000${target}`, a);
      } catch (e) {
        const err = asHavenError(e).toJSON();
        for (const s of servers) out.set(`${s}\u0000${target}`, { error: err });
      }
    }),
  );
  return out;
}

/** The newest generation of each server from the manifests of a store on this host. */
async function readLocal(path: string, servers: string[], log: Logger): Promise<Map<string, Answer>> {
  const store = await openStore(path, { log });
  try {
    const out = new Map<string, Answer>();
    for (const s of servers) {
      try {
        const m = await store.manifest(s);
        // As the receiver answers a QUERY: a server running at the DR site is not replicated to.
        if (m?.activeAtDr) out.set(s, { error: activeAtDrError(s, m.activeAtDr).toJSON() });
        else out.set(s, { newest: m?.generations[0] ?? null });
      } catch (e) {
        out.set(s, { error: asHavenError(e).toJSON() });
      }
    }
    return out;
  } finally {
    await store.close();
  }
}

async function askRemote(
  target: string,
  config: HavenConfig,
  servers: string[],
  log: Logger,
): Promise<Map<string, Answer>> {
  const connect = senderFactory(resolveTarget(target, config), { log });
  const sender = await Promise.race([
    connect(),
    new Promise<never>((_, reject) =>
      setTimeout(
        () =>
          reject(
            new HavenError('API_TARGET_TIMEOUT', `target ${target} did not answer in time`, {
              kind: 'unavailable',
            }),
          ),
        30_000,
      ).unref(),
    ),
  ]);
  try {
    const out = new Map<string, Answer>();
    for (const s of servers) out.set(s, { newest: await sender.query(s) });
    return out;
  } finally {
    await sender.close().catch(() => {});
  }
}
