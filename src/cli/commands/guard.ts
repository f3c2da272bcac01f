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
import { connectOption, examples } from '../options.ts';

export default function register(program: Command, context: () => CliContext): void {
  const guard = program
    .command('guard')
    .description('keep a stale copy from starting on the primary while the DR copy runs');
  examples(guard, [
    ['haven guard install --reload', 'install the libvirt hook on the primary and make libvirtd notice it'],
    ['haven guard status web01 --json', 'whether web01 is guarded on this host'],
  ]);

  const install = guard
    .command('install')
    .description('install the libvirt hook (hooks/qemu.d/haven-guard) that enforces the guard')
    .option('--hooks-dir <dir>', 'libvirt’s hooks directory', DEFAULT_HOOKS_DIR)
    .option('--reload', 'reload libvirtd when it needs to notice a first hook')
    .option('--json', 'print the result as JSON');
  examples(install, [
    ['haven guard install --reload', 'install the hook and reload libvirtd if it had no qemu hook before'],
  ]);
  install.action(async (flags: { hooksDir: string; reload?: boolean; json?: boolean }) => {
    const ctx = context();
    const r = await installHook(flags.hooksDir);
    const reloaded = r.needsReload && flags.reload ? await reloadLibvirtd() : undefined;
    if (flags.json) ctx.printJson({ ...r, reloaded: reloaded ?? null });
    else {
      ctx.print(`installed ${r.path}`);
      if (reloaded) ctx.print(`libvirtd reloaded (${reloaded})`);
      else if (r.needsReload)
        ctx.print('libvirtd had no qemu hook: reload it (systemctl reload libvirtd) so it notices this one');
    }
  });

  const uninstall = guard
    .command('uninstall')
    .description('remove the hook')
    .option('--hooks-dir <dir>', 'libvirt’s hooks directory', DEFAULT_HOOKS_DIR)
    .option('--json', 'print the result as JSON');
  examples(uninstall, [['haven guard uninstall', 'remove the hook from /etc/libvirt/hooks/qemu.d']]);
  uninstall.action(async (flags: { hooksDir: string; json?: boolean }) => {
    const ctx = context();
    const removed = await uninstallHook(flags.hooksDir);
    if (flags.json) ctx.printJson({ removed });
    else ctx.print(removed ? 'hook removed' : 'no hook was installed');
  });

  const status = guard
    .command('status')
    .description('whether a server is guarded')
    .argument('<server>', 'the server’s domain on this host');
  connectOption(status, 'on this host').option('--json', 'print as JSON');
  examples(status, [['haven guard status web01', 'whether web01 is guarded, since when and by whom']]);
  status.action(async (server: string, flags: { connect?: string; json?: boolean }) => {
    const ctx = context();
    const g = await readGuard(new Virsh({ uri: flags.connect, log: ctx.log }), server);
    if (flags.json) ctx.printJson({ server, guarded: g !== null, guard: g });
    else
      ctx.print(
        g
          ? `${server} is guarded: it runs at the DR site since ${g.since} (set by ${g.setBy ?? 'unknown'})`
          : `${server} is not guarded`,
      );
  });

  const set = guard
    .command('set')
    .description('guard a server by hand (its DR copy runs, and the DR site could not reach this host)')
    .argument('<server>', 'the server’s domain on this host');
  connectOption(set, 'on this host').option('--json', 'print the result as JSON');
  examples(set, [['haven guard set web01', 'refuse to start web01 here: its copy runs at the DR site']]);
  set.action(async (server: string, flags: { connect?: string; json?: boolean }) => {
    const ctx = context();
    const guarded = await setGuard(new Virsh({ uri: flags.connect, log: ctx.log }), server, {
      since: new Date().toISOString(),
      setBy: 'haven guard set',
    });
    if (flags.json) ctx.printJson({ server, guarded });
    else
      ctx.print(guarded ? `${server} is guarded` : `${server} is not defined on this host: nothing to guard`);
  });

  const clear = guard
    .command('clear')
    .description('remove a server’s guard (failback does this itself)')
    .argument('<server>', 'the server’s domain on this host');
  connectOption(clear, 'on this host').option('--json', 'print the result as JSON');
  examples(clear, [['haven guard clear web01', 'let web01 start here again (its DR copy was given up)']]);
  clear.action(async (server: string, flags: { connect?: string; json?: boolean }) => {
    const ctx = context();
    const cleared = await clearGuard(new Virsh({ uri: flags.connect, log: ctx.log }), server);
    if (flags.json) ctx.printJson({ server, cleared });
    else ctx.print(cleared ? `${server}: guard removed` : `${server} was not guarded`);
  });
}
