/**
 * Issue 5: "starting the stale copy on the primary is refused" while the DR copy is active, with
 * the real libvirt hook. Disruptive: libvirtd only looks for hook scripts when it starts or
 * reloads, so a host that had none is sent a reload (SIGHUP, which restarts nothing) when the
 * hook is installed and again when it is removed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { reloadLibvirtd } from '../../src/recovery/index.ts';
import { Virsh } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';

const HOOKS = '/etc/libvirt/hooks';

async function libvirtAnswers(virsh: Virsh): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await virsh.run(['version']);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

test('a guarded server does not start; cleared, it does', async (t) => {
  const dir = await testDir(t, 'haven-t-rec-guard');
  const h = await havenEnv(dir);
  const virsh = new Virsh();
  const guest = await createTestGuest(t, { prefix: 'haven-t-rec', start: false });
  const hadHooksDir = existsSync(HOOKS);
  const hadQemuD = existsSync(join(HOOKS, 'qemu.d'));

  const installed = await havenJson<{ path: string; needsReload: boolean; reloaded: string | null }>(h, [
    'guard',
    'install',
    '--reload',
  ]);
  t.after(async () => {
    await runHaven(h, ['guard', 'uninstall']);
    if (!hadQemuD && (await readdir(join(HOOKS, 'qemu.d')).catch(() => ['?'])).length === 0) {
      await rm(join(HOOKS, 'qemu.d'), { recursive: true });
      if (!hadHooksDir && (await readdir(HOOKS)).length === 0) await rm(HOOKS, { recursive: true });
    }
    // As it was: libvirtd forgets the hook at its next reload.
    if (installed.reloaded) {
      await reloadLibvirtd();
      await libvirtAnswers(virsh);
    }
  });
  assert.equal(installed.path, join(HOOKS, 'qemu.d', 'haven-guard'));
  assert.equal(Boolean(installed.reloaded), installed.needsReload);
  await libvirtAnswers(virsh);

  const set = await runHaven(h, ['guard', 'set', guest.name]);
  assert.equal(set.code, 0, set.stderr);
  assert.equal((await havenJson<{ guarded: boolean }>(h, ['guard', 'status', guest.name])).guarded, true);

  await assert.rejects(virsh.run(['start', '--domain', guest.name]), (e: Error) => {
    assert.match(e.message, /runs at the DR site; starting this stale copy is refused/);
    return true;
  });
  assert.equal(await guest.state(), 'shut off');

  const clear = await runHaven(h, ['guard', 'clear', guest.name]);
  assert.equal(clear.code, 0, clear.stderr);
  await guest.start();
  assert.equal(await guest.state(), 'running');
});
