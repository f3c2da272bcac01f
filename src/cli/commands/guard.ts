/**
 * `haven guard …` on the primary: the libvirt hook that refuses to start a server whose copy runs
 * at the DR site, and the per-server guard it checks (docs/recovery.md).
 */
import type { Command } from 'commander';
import {
  clearGuard,
  DEFAULT_HOOKS_DIR,
  installHook,
  readGuard,
  reloadLibvirtd,
  setGuard,
  uninstallHook,
} from '../../recovery/index.ts';
import { Virsh } from '../../virt/index.ts';
import type { CliContext } from '../context.ts';

export default function register(program: Command, context: () => CliContext): void {
  const guard = program
    .command('guard')
    .description('keep a stale copy from starting on the primary while the DR copy runs');

  guard
    .command('install')
    .description('install the libvirt hook (hooks/qemu.d/haven-guard) that enforces the guard')
    .option('--hooks-dir <dir>', 'libvirt’s hooks directory', DEFAULT_HOOKS_DIR)
    .option('--reload', 'reload libvirtd when it needs to notice a first hook')
    .option('--json', 'print the result as JSON')
    .action(async (flags: { hooksDir: string; reload?: boolean; json?: boolean }) => {
      const ctx = context();
      const r = await installHook(flags.hooksDir);
      const reloaded = r.needsReload && flags.reload ? await reloadLibvirtd() : undefined;
      if (flags.json) ctx.printJson({ ...r, reloaded: reloaded ?? null });
      else {
        ctx.print(`installed ${r.path}`);
        if (reloaded) ctx.print(`libvirtd reloaded (${reloaded})`);
        else if (r.needsReload)
          ctx.print(
            'libvirtd had no qemu hook: reload it (systemctl reload libvirtd) so it notices this one',
          );
      }
    });

  guard
    .command('uninstall')
    .description('remove the hook')
    .option('--hooks-dir <dir>', 'libvirt’s hooks directory', DEFAULT_HOOKS_DIR)
    .action(async (flags: { hooksDir: string }) => {
      const ctx = context();
      ctx.print((await uninstallHook(flags.hooksDir)) ? 'hook removed' : 'no hook was installed');
    });

  guard
    .command('status')
    .description('whether a server is guarded')
    .argument('<server>', 'the server’s domain on this host')
    .option('--uri <uri>', 'libvirt URI on this host')
    .option('--json', 'print as JSON')
    .action(async (server: string, flags: { uri?: string; json?: boolean }) => {
      const ctx = context();
      const g = await readGuard(new Virsh({ uri: flags.uri, log: ctx.log }), server);
      if (flags.json) ctx.printJson({ server, guarded: g !== null, guard: g });
      else
        ctx.print(
          g
            ? `${server} is guarded: it runs at the DR site since ${g.since} (set by ${g.setBy ?? 'unknown'})`
            : `${server} is not guarded`,
        );
    });

  guard
    .command('set')
    .description('guard a server by hand (its DR copy runs, and the DR site could not reach this host)')
    .argument('<server>', 'the server’s domain on this host')
    .option('--uri <uri>', 'libvirt URI on this host')
    .action(async (server: string, flags: { uri?: string }) => {
      const ctx = context();
      const ok = await setGuard(new Virsh({ uri: flags.uri, log: ctx.log }), server, {
        since: new Date().toISOString(),
        setBy: 'haven guard set',
      });
      ctx.print(ok ? `${server} is guarded` : `${server} is not defined on this host: nothing to guard`);
    });

  guard
    .command('clear')
    .description('remove a server’s guard (failback does this itself)')
    .argument('<server>', 'the server’s domain on this host')
    .option('--uri <uri>', 'libvirt URI on this host')
    .action(async (server: string, flags: { uri?: string }) => {
      const ctx = context();
      ctx.print(
        (await clearGuard(new Virsh({ uri: flags.uri, log: ctx.log }), server))
          ? `${server}: guard removed`
          : `${server} was not guarded`,
      );
    });
}
