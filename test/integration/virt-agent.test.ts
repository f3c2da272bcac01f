/**
 * Guest-agent freeze/thaw against qemu-ga running inside the test guest, and the "no agent"
 * outcomes: no channel at all, and a channel nobody answers on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agentPing, freeze, thaw } from '../../src/virt/index.ts';
import { createTestGuest, type TestGuest } from '../fixtures/guest/index.ts';

const PREFIX = 'haven-t-virt';

async function fsfreezeStatus(g: TestGuest): Promise<string> {
  const out = await g.virsh.run([
    'qemu-agent-command',
    '--domain',
    g.name,
    '--timeout',
    '5',
    '{"execute":"guest-fsfreeze-status"}',
  ]);
  return (JSON.parse(out) as { return: string }).return;
}

test('freeze and thaw through qemu-ga in the guest', async (t) => {
  const g = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 16 }, { sizeMiB: 32 }],
    agent: true,
    mkfs: ['vdb'],
  });
  if (!g.image.agent) {
    assert.fail(
      'qemu-guest-agent is not installed on this host, so the guest has no qemu-ga: run scripts/setup',
    );
  }
  assert.match(await g.serial(), /^HAVEN boot .* agent=yes$/m);
  assert.match(await g.serial(), /^HAVEN mkfs disk=vdb mounted=\/mnt\/vdb$/m);
  // qemu-ga starts in the background; it answers once connected.
  let ping = await agentPing(g.virsh, g.name);
  for (let i = 0; i < 50 && !ping.agent; i++) {
    await new Promise((r) => setTimeout(r, 200));
    ping = await agentPing(g.virsh, g.name);
  }
  assert.deepEqual(ping, { agent: true });

  assert.deepEqual(await freeze(g.virsh, g.name), { agent: true, frozen: 1 });
  assert.equal(await fsfreezeStatus(g), 'frozen');
  assert.deepEqual(await thaw(g.virsh, g.name), { agent: true, thawed: 1 });
  assert.equal(await fsfreezeStatus(g), 'thawed');

  assert.deepEqual(await freeze(g.virsh, g.name, { mountpoints: ['/mnt/vdb'] }), { agent: true, frozen: 1 });
  assert.deepEqual(await thaw(g.virsh, g.name), { agent: true, thawed: 1 });
  // The guest is alive and writing after the thaw.
  assert.equal(await g.command('sync'), 'ok');
});

test('no agent: not configured, and configured but silent, are results, not errors', async (t) => {
  const [none, silent] = await Promise.all([
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }] }),
    createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], agent: true, startAgent: false }),
  ]);
  const a = await freeze(none.virsh, none.name);
  assert.equal(a.agent, false);
  assert.equal(a.agent === false && a.reason, 'not-configured');
  assert.match(a.agent === false ? a.message : '', /not configured/);
  assert.equal((await agentPing(none.virsh, none.name)).agent, false);
  assert.equal((await thaw(none.virsh, none.name)).agent, false);

  const b = await freeze(silent.virsh, silent.name, { timeoutMs: 3000 });
  assert.equal(b.agent, false);
  assert.ok(b.agent === false && b.reason === 'not-connected', JSON.stringify(b));
  // Nothing was frozen: the guest still writes.
  assert.equal(await silent.command('write-pattern vda 1 4'), 'ok');
});
