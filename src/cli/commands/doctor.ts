/**
 * `haven doctor`: checks this host (libvirtd, versions, backup support, the run directory as
 * QEMU's user, the tools Haven runs, whether the daemon's address is reachable in clear text, and
 * with --store a store's own checks and whether QEMU's user can read it for drills and activation)
 * and prints each verdict with the command that fixes it.
 * Exits 12 (EXIT_PARTIAL) when a required check fails, 0 otherwise (warnings included).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { daemonListenCheck } from '../../daemon/index.ts';
import { storeDoctorChecks } from '../../store/index.ts';
import { checkHost, type HostCheck, hostChecksPassed, storeAccessCheck } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';
import { EXIT_PARTIAL } from '../exit-codes.ts';
import { connectOption, examples } from '../options.ts';

const MARK: Record<HostCheck['status'], string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL' };

/** The daemon's listen address, when the configuration can be read (`haven config check` says why not). */
async function listenCheck(ctx: CliContext): Promise<HostCheck> {
  try {
    return await daemonListenCheck(await ctx.config());
  } catch (e) {
    return {
      id: 'daemon-listen',
      title: 'daemon listen address',
      status: 'warn',
      detail: `the configuration cannot be read: ${(e as Error).message.split('\n')[0]}`,
      fix: 'haven config check',
      required: false,
    };
  }
}

export default function register(program: Command, context: () => CliContext): void {
  const doctor = program
    .command('doctor')
    .description('check that this host can run Haven, and say how to fix what is missing')
    .option('--json', 'print JSON instead of a table')
    .option(
      '--store <path>',
      'also check a store on this host (an LVM store: its volume groups, free space, thin pool; an rbd store: its cluster, pool, user and QEMU’s rbd driver)',
    );
  connectOption(doctor);
  examples(doctor, [
    ['haven doctor', 'check this host and print what to fix'],
    ['haven doctor --json', 'the same checks as JSON, for monitoring'],
    ['haven doctor --store /srv/haven', 'also check the store there (its volume groups, for an LVM store)'],
  ]);
  doctor.action(async (opts: { json?: boolean; connect?: string; store?: string }) => {
    const ctx = context();
    const checks = await checkHost({ uri: opts.connect, runDir: ctx.paths.runDir, log: ctx.log });
    checks.push(await listenCheck(ctx));
    if (opts.store) {
      checks.push(...(await storeDoctorChecks(opts.store)));
      // QEMU of a session libvirt runs as the caller (as in checkHost's run-directory check).
      const session = (opts.connect ?? process.env.HAVEN_LIBVIRT_URI ?? '').includes('/session');
      if (existsSync(opts.store))
        checks.push(await storeAccessCheck(opts.store, session ? (process.env.USER ?? 'root') : undefined));
    }
    const ok = hostChecksPassed(checks);
    if (opts.json) {
      ctx.printJson({ ok, checks });
    } else {
      ctx.printTable(
        ['CHECK', 'STATUS', 'DETAIL'],
        checks.map((c) => [c.title, MARK[c.status], c.detail]),
      );
      const fixes = checks.filter((c) => c.status !== 'ok' && c.fix);
      for (const c of fixes) ctx.print(`${c.status === 'fail' ? 'fix' : 'hint'} (${c.title}): ${c.fix}`);
      ctx.print(ok ? 'all required checks passed' : 'some required checks failed');
    }
    if (!ok) process.exitCode = EXIT_PARTIAL;
  });
}
