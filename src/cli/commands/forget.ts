/**
 * `haven forget`: drop what this host keeps for server/target pairs it no longer copies (the
 * catalog's records and the libvirt checkpoints only they needed, jobs/forget.ts):
 *
 *   haven forget <server> --target <target>     one pair
 *   haven forget <server> --all-targets         every target of a server (also one libvirt lost)
 *   haven forget --target <target> --all-servers  every server copied to a target
 *
 * Nothing at the target's store is deleted.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { catalogPath, openCatalog } from '../../catalog/catalog.ts';
import { UsageError } from '../../core/errors.ts';
import { Virsh } from '../../engine/index.ts';
import { type ForgetRequest, type ForgetResult, forget, JobError } from '../../jobs/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { connectOption, examples } from '../options.ts';

interface ForgetFlags {
  target?: string;
  allTargets?: boolean;
  allServers?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

const USAGE_HINT =
  'Use one of: haven forget <server> --target <target>; haven forget <server> --all-targets; haven forget --target <target> --all-servers.';

function request(server: string | undefined, f: ForgetFlags): ForgetRequest {
  const req = { server, target: f.target, dryRun: f.dryRun };
  if (server !== undefined && f.target !== undefined && !f.allTargets && !f.allServers) return req;
  if (server !== undefined && f.allTargets && f.target === undefined && !f.allServers)
    return { ...req, allTargets: true };
  if (server === undefined && f.target !== undefined && f.allServers && !f.allTargets)
    return { ...req, allServers: true };
  throw new UsageError('say which pairs to forget: a server and a target, or all of one of them', USAGE_HINT);
}

const NEXT: Record<string, string> = {
  resync: 'a checksum resync (the target keeps its copy; only differing chunks are sent)',
  full: 'a full copy (the target never got one)',
  incremental: 'still incremental (another name reaches the same store)',
};

function printResult(ctx: CliContext, r: ForgetResult): void {
  const verb = r.dryRun ? 'would' : 'did';
  if (r.dryRun) ctx.print('Plan — nothing changed:');
  for (const p of r.pairs) {
    ctx.print(
      `${p.server} → ${p.target}: ${r.dryRun ? 'would be forgotten' : 'forgotten'}; its next copy there is ${NEXT[p.nextCopy]}`,
    );
    if (p.jobs.length) ctx.print(`  still copied by job ${p.jobs.join(', ')}: its next run copies it again`);
  }
  for (const s of r.servers) {
    const where = s.domain === 'absent' ? 'not defined in libvirt' : s.domain;
    const done = s.result ? [...s.result.deleted, ...s.result.missing] : s.checkpoints;
    ctx.print(
      `${s.server} (${where}): ${verb === 'would' ? 'would delete' : 'deleted'} ${done.length} checkpoint(s)${s.domain === 'absent' ? ' from the catalog (libvirt has no such server)' : ' with their bitmaps'}${done.length ? `: ${done.join(', ')}` : ''}`,
    );
    for (const f of s.result?.failed ?? [])
      ctx.print(`  could not delete ${f.name}: [${f.code}] ${f.message}`);
    if (s.keptCheckpoints.length) ctx.print(`  kept for other targets: ${s.keptCheckpoints.join(', ')}`);
    for (const k of s.keptStores)
      ctx.print(`  store ${k.store} kept: also reached as ${k.alsoAs.join(', ')}`);
    const n = s.removed;
    ctx.print(
      `  catalog: ${n.status} status row(s), ${n.inflight} in-flight delta(s), ${n.deliveries} delivery record(s), ${n.problems} open problem(s)${r.dryRun ? ' to remove' : ' removed'}`,
    );
  }
  ctx.print(
    'Nothing was deleted at the target: its generations belong to the DR site; remove them there if they are no longer wanted.',
  );
}

export default function register(program: Command, context: () => CliContext): void {
  const command = program
    .command('forget')
    .description(
      'forget server/target pairs this host no longer copies: catalog records and the checkpoints only they needed (never data at the target)',
    )
    .argument('[server]', 'libvirt domain name (need not exist any more)')
    .option('--target <target>', 'the target as `haven status` names it')
    .option('--all-targets', 'every target of <server>')
    .option('--all-servers', 'every server copied to --target')
    .option('--dry-run', 'show what would be forgotten and deleted, and change nothing')
    .option('--json', 'print the result as JSON');
  connectOption(command);
  examples(command, [
    [
      'haven forget web01 --target dr1 --dry-run',
      'show what forgetting the pair web01 \u2192 dr1 would delete',
    ],
    [
      'haven forget --all-servers --target old-dr',
      'forget every server once copied to the retired target old-dr',
    ],
  ]);
  command.action(async (server: string | undefined, flags: ForgetFlags) => {
    const ctx = context();
    const req = request(server, flags);
    const config = await ctx.config();
    const path = catalogPath(ctx.paths.stateDir);
    if (!existsSync(path)) {
      throw new JobError('FORGET_NOT_FOUND', `there is no catalog at ${path}: nothing to forget`, {
        kind: 'not-found',
        hint: 'Nothing was copied from this host yet, or HAVEN_STATE_DIR points elsewhere.',
        details: { path },
      });
    }
    const log = flags.dryRun ? ctx.log : ctx.openRunLog('forget');
    const catalog = openCatalog(path, { log });
    const virsh = new Virsh({ log });
    try {
      const result = await forget(req, { config, catalog, virsh, log });
      if (flags.json) ctx.printJson(result);
      else printResult(ctx, result);
      if (result.servers.some((s) => (s.result?.failed.length ?? 0) > 0)) {
        log.warn('some checkpoints could not be deleted; `haven prune` (or the daemon) tries again');
        process.exitCode = EXIT_PARTIAL;
      }
    } finally {
      virsh.close();
      catalog.close();
    }
  });
}
