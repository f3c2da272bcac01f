/**
 * Domain lifecycle through virsh on real libvirt: define, start, states, live and inactive XML,
 * destroy, undefine with checkpoint metadata, transient domains, and the error codes on the way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import {
  backupBegin,
  createCheckpoint,
  createTransient,
  defineDomain,
  destroyDomain,
  domainState,
  domainXml,
  getServer,
  listCheckpoints,
  startDomain,
  undefineDomain,
  Virsh,
  waitForState,
} from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';

const PREFIX = 'haven-t-virt';
const code = (c: string) => (e: unknown) => e instanceof HavenError && e.code === c;

test('persistent domain: define, start, states, XML, destroy, undefine with checkpoints', async (t) => {
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], start: false });
  const { virsh, name } = g;
  assert.deepEqual(await domainState(virsh, name), { state: 'shut off', reason: 'unknown' });
  assert.doesNotMatch(await domainXml(virsh, name), /<domain type='qemu' id=/);
  // A live backup needs a running domain (the offline path is exportImage).
  await assert.rejects(
    backupBegin(virsh, name, { socketPath: join(g.dir, 'b.sock'), scratchDir: g.dir }),
    code('VIRT_DOMAIN_NOT_RUNNING'),
  );

  await startDomain(virsh, name);
  assert.equal(await waitForState(virsh, name, 'running', { timeoutMs: 30_000 }), 'running');
  await assert.rejects(startDomain(virsh, name), code('VIRT_DOMAIN_RUNNING'));
  assert.match(await domainXml(virsh, name), /<domain type='qemu' id='\d+'>/);
  assert.doesNotMatch(await domainXml(virsh, name, { inactive: true }), / id='\d+'>/);
  await assert.rejects(waitForState(virsh, name, 'paused', { timeoutMs: 300 }), (e: unknown) => {
    return e instanceof HavenError && e.code === 'VIRT_TIMEOUT' && e.details?.state === 'running';
  });

  await createCheckpoint(virsh, name, { name: 'life1' });
  assert.equal(await destroyDomain(virsh, name), true);
  assert.equal(await destroyDomain(virsh, name), false, 'destroying a stopped domain is a no-op');
  assert.equal((await domainState(virsh, name)).state, 'shut off');
  // Checkpoint metadata would block a plain undefine; undefineDomain drops it by default.
  assert.equal((await listCheckpoints(virsh, name)).length, 1);
  await undefineDomain(virsh, name);
  await assert.rejects(domainState(virsh, name), code('VIRT_DOMAIN_NOT_FOUND'));
  await assert.rejects(startDomain(virsh, name), code('VIRT_DOMAIN_NOT_FOUND'));
});

test('transient domain: created from XML, checkpoints work, gone when it stops', async (t) => {
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }], transient: true });
  const { virsh, name } = g;
  assert.equal((await getServer(virsh, name)).persistent, false);
  await createCheckpoint(virsh, name, { name: 't1' });
  assert.deepEqual(
    (await listCheckpoints(virsh, name)).map((c) => c.name),
    ['t1'],
  );
  await g.poweroff();
  assert.equal(await waitForState(virsh, name, 'shut off', { timeoutMs: 1000 }), 'shut off');
  await assert.rejects(listCheckpoints(virsh, name), code('VIRT_DOMAIN_NOT_FOUND'));
  // The same XML starts it again (as activation does with a DR definition).
  await createTransient(virsh, g.xml);
  await waitForState(virsh, name, 'running', { timeoutMs: 30_000 });
  await destroyDomain(virsh, name);
});

test('bad XML and odd names', async (t) => {
  const virsh = new Virsh();
  await assert.rejects(defineDomain(virsh, '<domain'), code('DOMAIN_XML_INVALID'));
  const suffix = randomBytes(3).toString('hex');
  await assert.rejects(
    defineDomain(
      virsh,
      `<domain type='qemu'><name>${PREFIX}-bad-${suffix}</name><memory>65536</memory></domain>`,
    ),
    code('VIRT_XML_INVALID'),
  );
  // Quotes, a semicolon and a space survive virsh's own command parser (batched calls).
  const odd = `${PREFIX}-q'x;y z-${suffix}`;
  await defineDomain(
    virsh,
    `<domain type='qemu'><name>${odd.replace(/'/g, '&apos;')}</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>`,
  );
  t.after(() => undefineDomain(virsh, odd).catch(() => undefined));
  const s = await getServer(virsh, odd);
  assert.equal(s.name, odd);
  assert.equal(s.state, 'shut off');
  assert.deepEqual(s.disks, []);
});

test('virsh batches: long scripts are split, each command keeps its own output and error', async () => {
  const virsh = new Virsh();
  const pad = 'x'.repeat(60);
  const cmds: string[][] = [];
  for (let i = 0; i < 1500; i++) {
    cmds.push(i === 700 ? ['dominfo', '--domain', `${PREFIX}-nosuch-${pad}`] : ['echo', `item-${i}-${pad}`]);
  }
  const results = await virsh.batch(cmds);
  assert.equal(results.length, 1500);
  results.forEach((r, i) => {
    if (i === 700) {
      assert.equal(r.ok, false);
      assert.match(r.error ?? '', /failed to get domain/);
    } else {
      assert.equal(r.ok, true, `command ${i}: ${r.error}`);
      assert.equal(r.stdout.trim(), `item-${i}-${pad}`);
    }
  });
});
