/**
 * `recover()` (docs/design.md §4.2: "a run interrupted anywhere … is rolled forward on the next start"):
 * per server not held by a live writer, the pending commit completed and what no generation needs
 * pruned; then temporary files and staged data no delta record refers to removed. Partial deltas
 * are kept: they are resumable.
 */
import { join } from 'node:path';
import { asHavenError, type HavenError } from '../../core/errors.ts';
import { checkName, isSafeName } from '../../core/names.ts';
import { prune } from './commit/prune.ts';
import { rollForward } from './commit/roll-forward.ts';
import type { StoreContext } from './context.ts';
import { listDeltaRecords, stagingRoot } from './deltas.ts';
import { exists, listDir, removeIfExists, removeTree, TMP_PATTERN } from './files.ts';
import { liveHolder } from './lock.ts';
import { listServerDirs } from './metadata.ts';
import { isId } from './names.ts';
import { tryLockServer } from './server-lock.ts';

/** Recovers every server, or only `only`; returns what was done. Throws the first failure, after trying all. */
export async function recoverStore(ctx: StoreContext, only?: string): Promise<string[]> {
  const messages: string[] = [];
  const errors: HavenError[] = [];
  if (only !== undefined) checkName('server', only);
  const servers = only === undefined ? await listServerDirs(ctx) : [only];
  for (const server of servers) {
    if (only !== undefined && !(await exists(ctx.layout.serverDir(server)))) continue;
    if (!isSafeName(server)) {
      messages.push(`skipped ${JSON.stringify(server)}: not a valid server name`);
      continue;
    }
    const taken = await tryLockServer(ctx, server, 'recover');
    if ('busy' in taken) {
      messages.push(`${server}: a writer is active (${taken.busy.message}); skipped`);
      continue;
    }
    try {
      messages.push(...(await recoverServer(ctx, server)));
    } catch (e) {
      const he = asHavenError(e);
      ctx.log.error('recovery failed', { server, code: he.code, err: he });
      errors.push(he);
    } finally {
      await taken.lock.release();
    }
  }
  if (only === undefined) {
    const definitions = ctx.layout.definitionsDir;
    messages.push(
      ...(await removeTemporaryFiles(definitions, (f) => `removed temporary file definitions/${f}`)),
    );
    messages.push(...(await pruneStaging(ctx)));
  }
  for (const m of messages) ctx.log.info(m);
  const [first] = errors;
  if (first) throw first;
  return messages;
}

/** One server whose lock the caller holds. */
async function recoverServer(ctx: StoreContext, server: string): Promise<string[]> {
  const messages: string[] = [];
  const hadJournal = await exists(ctx.layout.journal(server));
  const sealed = (await listDeltaRecords(ctx, server)).some((r) => r.state === 'sealed');
  const generation = await rollForward(ctx, server, ctx.log);
  if (generation && (hadJournal || sealed))
    messages.push(`${server}: completed an interrupted commit (generation ${generation.id})`);
  messages.push(...(await prune(ctx, server, ctx.log)));
  const removed = (f: string) => `${server}: removed temporary file ${f}`;
  messages.push(...(await removeTemporaryFiles(ctx.layout.serverDir(server), removed)));
  return messages;
}

/** Temporary files a process that died mid-write left in `dir` (files.ts TMP_PATTERN). */
async function removeTemporaryFiles(dir: string, message: (file: string) => string): Promise<string[]> {
  const messages: string[] = [];
  for (const f of await listDir(dir)) {
    if (!TMP_PATTERN.test(f)) continue;
    await removeIfExists(join(dir, f));
    messages.push(message(f));
  }
  return messages;
}

/** Staged data on a cache drive that no delta record of this store refers to any more. */
async function pruneStaging(ctx: StoreContext): Promise<string[]> {
  if (!ctx.stagingDir) return [];
  const messages: string[] = [];
  const root = stagingRoot(ctx.stagingDir, ctx.descriptor.id);
  for (const server of await listDir(root)) {
    if (!isSafeName(server)) continue;
    if (await liveHolder(ctx.layout.serverLock(server))) continue;
    const known = new Set((await listDeltaRecords(ctx, server)).map((r) => r.id));
    for (const id of await listDir(join(root, server))) {
      if (isId(id) && !known.has(id)) {
        await removeTree(join(root, server, id));
        messages.push(`${server}: removed staged data ${id} that no delta refers to`);
      }
    }
  }
  return messages;
}
