/**
 * Issue 20, item 7: failover network mapping, against real libvirt, QEMU and Linux bridges. One
 * host plays both sites: the primary's guest has a NIC on a bridge and one on a libvirt network;
 * after the disaster both are gone, and the DR site has a bridge and a network of other names.
 * - without a mapping, activation refuses (RECOVERY_NETWORK_MISSING, exit 4) listing both, and
 *   changes nothing; an isolated drill (the default) still boots;
 * - `--dry-run` shows the mapping; a drill asked for networks boots on the mapped ones with new
 *   MAC addresses; restore defines the server on them;
 * - activation with the mapping (the bridge's from the configuration, the network's from a flag)
 *   runs the domain with its interfaces on the DR site's bridge and network, MACs kept.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { ActivationReport, DrillPlan, DrillReport, RestoreResult } from '../../src/recovery/index.ts';
import { Virsh } from '../../src/virt/index.ts';
import type { AfterHook } from '../fixtures/guest/index.ts';
import { havenJson } from '../helpers/haven.ts';
import { domainsLike, guestDefinitions, protect, runHaven, site, snapshot } from './recovery-helpers.ts';

const virsh = new Virsh();

/** A Linux bridge for this test (`ip link add … type bridge`), removed afterwards. */
async function bridge(t: AfterHook): Promise<string> {
  const name = `hvn-${randomBytes(4).toString('hex')}`;
  await exec('ip', ['link', 'add', name, 'type', 'bridge']);
  t.after(() => removeBridge(name));
  return name;
}

async function removeBridge(name: string): Promise<void> {
  if (existsSync(`/sys/class/net/${name}`)) await exec('ip', ['link', 'del', name]);
}

/** A transient libvirt network without addresses (no dnsmasq) on a bridge of its own. */
async function network(t: AfterHook): Promise<string> {
  const id = randomBytes(4).toString('hex');
  const name = `hvn-net-${id}`;
  await virsh.runWithFiles(
    { net: `<network><name>${name}</name><bridge name='hvb-${id}' stp='off'/></network>` },
    (p) => ['net-create', '--file', p.net!],
  );
  t.after(() => removeNetwork(name));
  return name;
}

async function removeNetwork(name: string): Promise<void> {
  await virsh.run(['net-destroy', '--network', name]).catch(() => '');
}

interface IfRow {
  iface: string;
  type: string;
  source: string;
  mac: string;
}

/** `virsh domiflist`: what the domain's interfaces are on, as libvirt runs them. */
async function domiflist(domain: string): Promise<IfRow[]> {
  const out = await virsh.run(['domiflist', '--domain', domain]);
  return out
    .split('\n')
    .slice(2)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5)
    .map(([iface, type, source, , mac]) => ({ iface: iface!, type: type!, source: source!, mac: mac! }));
}

test('activation maps a bridge and a network the DR site lacks, and refuses without a mapping', async (t) => {
  const prodBr = await bridge(t);
  const prodNet = await network(t);
  const macs = ['52:54:00:4e:01:01', '52:54:00:4e:01:02'];
  const s = await site(t, 'net', {
    nics: [
      { bridge: prodBr, mac: macs[0] },
      { network: prodNet, mac: macs[1] },
    ],
  });
  const server = s.guest.name;
  await protect(s, 1);

  // The disaster: the primary, its bridge and its network are gone.
  await s.guest.cleanup();
  await removeBridge(prodBr);
  await removeNetwork(prodNet);
  const drBr = await bridge(t);
  const drNet = await network(t);

  await t.test('no mapping: refused with every missing network, nothing changed', async () => {
    const before = await snapshot(s.store);
    const r = await runHaven(s.h, ['activate', server, '--store', s.store, '--json']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /\[RECOVERY_NETWORK_MISSING\]/);
    assert.ok(r.stderr.includes(`bridge ${prodBr}`) && r.stderr.includes(`network ${prodNet}`), r.stderr);
    assert.match(r.stderr, /--network-map/);
    const report = JSON.parse(r.stdout) as ActivationReport;
    const res = report.servers[0]!;
    assert.equal(res.status, 'refused');
    assert.equal(res.error?.code, 'RECOVERY_NETWORK_MISSING');
    const details = res.error?.details as { missing: Array<{ from: string; state: string }> } | undefined;
    const missing = details?.missing ?? [];
    assert.deepEqual(
      missing.map((m) => [m.from, m.state]),
      [
        [`bridge:${prodBr}`, 'missing'],
        [`network:${prodNet}`, 'missing'],
      ],
    );
    assert.deepEqual(await snapshot(s.store), before, 'the store is as it was');
    assert.deepEqual(await domainsLike(server), []);
  });

  await t.test('drills stay isolated by default; asked for networks, they need the mapping too', async () => {
    const isolated = await havenJson<DrillReport>(s.h, [
      'drill',
      server,
      '--store',
      s.store,
      '--marker',
      'HAVEN ready',
    ]);
    assert.equal(isolated.passed, 1, JSON.stringify(isolated));
    assert.equal(isolated.results[0]!.networks, undefined, 'an isolated drill has no interfaces');

    // The plan says so too, booting and recording nothing.
    const plan = await runHaven(s.h, [
      ...['drill', server, '--store', s.store, '--marker', 'HAVEN ready', '--networks', 'mapped'],
      ...['--dry-run', '--json'],
    ]);
    assert.equal(plan.code, 12, plan.stderr);
    const planned = JSON.parse(plan.stdout) as DrillPlan;
    assert.equal(planned.ok, false);
    assert.equal(planned.servers[0]!.error?.code, 'RECOVERY_NETWORK_MISSING');
    assert.deepEqual(await domainsLike(server), []);

    const refused = await runHaven(s.h, [
      ...['drill', server, '--store', s.store, '--marker', 'HAVEN ready', '--networks', 'mapped', '--json'],
    ]);
    assert.equal(refused.code, 12, refused.stderr);
    const failed = (JSON.parse(refused.stdout) as DrillReport).results[0]!;
    assert.equal(failed.error?.code, 'RECOVERY_NETWORK_MISSING');

    const mapped = await havenJson<DrillReport>(s.h, [
      ...['drill', server, '--store', s.store, '--marker', 'HAVEN ready'],
      ...['--network-map', `${prodBr}=${drBr}`, '--network-map', `network:${prodNet}=network:${drNet}`],
    ]);
    assert.equal(mapped.passed, 1, JSON.stringify(mapped));
    assert.deepEqual(
      mapped.results[0]!.networks?.map((n) => [n.from, n.to, n.mapped, n.mac]),
      [
        [`bridge:${prodBr}`, `bridge:${drBr}`, true, 'generated'],
        [`network:${prodNet}`, `network:${drNet}`, true, 'generated'],
      ],
    );
  });

  await t.test('restore defines the server with its interfaces on the mapped networks', async () => {
    const name = `${server}-r`;
    t.after(() => virsh.run(['undefine', '--domain', name]).catch(() => ''));
    const to = join(s.dir, 'restored');
    const missing = await runHaven(s.h, ['restore', server, '--store', s.store, '--to', to, '--name', name]);
    assert.equal(missing.code, 4, missing.stderr);
    assert.match(missing.stderr, /RECOVERY_NETWORK_MISSING/);
    assert.equal(existsSync(to), false, 'refused before any image was written');
    const dry = await havenJson<RestoreResult>(s.h, [
      ...['restore', server, '--store', s.store, '--to', to, '--name', name, '--dry-run'],
      ...['--network-map', `${prodBr}=${drBr}`, '--network-map', `${prodNet}=${drNet}`],
    ]);
    assert.equal(dry.dryRun, true);
    assert.deepEqual(
      dry.networks?.map((n) => n.to),
      [`bridge:${drBr}`, `network:${drNet}`],
    );
    assert.equal(existsSync(to), false, 'a dry run writes nothing');
    assert.deepEqual(await domainsLike(name), []);
    const r = await havenJson<RestoreResult>(s.h, [
      ...['restore', server, '--store', s.store, '--to', to, '--name', name],
      ...['--network-map', `${prodBr}=${drBr}`, '--network-map', `${prodNet}=${drNet}`],
    ]);
    assert.equal(r.generation.seq, 1, 'the newest generation when --generation is not given');
    assert.equal(r.defined, true);
    const rows = await domiflist(name);
    assert.deepEqual(
      rows.map((x) => [x.type, x.source, x.mac]),
      [
        ['bridge', drBr, macs[0]],
        ['network', drNet, macs[1]],
      ],
    );
    await virsh.run(['undefine', '--domain', name]);
  });

  await t.test(
    'the dry run shows the mapping; activation runs on the DR site’s bridge and network',
    async () => {
      await writeFile(
        s.h.env.HAVEN_CONFIG!,
        `${guestDefinitions(s.guest)}networks:\n  map:\n    ${prodBr}: ${drBr}\n`,
      );
      const flag = ['--network-map', `network:${prodNet}=network:${drNet}`];
      const plan = await runHaven(s.h, ['activate', server, '--store', s.store, '--dry-run', ...flag]);
      assert.equal(plan.code, 0, plan.stderr);
      assert.match(plan.stdout, /Networks:/);
      assert.ok(plan.stdout.includes(`bridge:${drBr} (mapped)`), plan.stdout);
      assert.ok(plan.stdout.includes(`network:${drNet} (mapped)`), plan.stdout);
      assert.deepEqual(await domainsLike(server), [], 'a dry run starts nothing');

      const report = await havenJson<ActivationReport>(s.h, [
        'activate',
        server,
        '--store',
        s.store,
        ...flag,
      ]);
      const res = report.servers[0]!;
      assert.equal(res.status, 'running', JSON.stringify(res));
      assert.deepEqual(
        res.networks?.map((n) => [n.to, n.mac, n.state]),
        [
          [`bridge:${drBr}`, 'kept', 'active'],
          [`network:${drNet}`, 'kept', 'active'],
        ],
      );
      const rows = await domiflist(server);
      assert.deepEqual(
        rows.map((x) => [x.type, x.source, x.mac]),
        [
          ['bridge', drBr, macs[0]],
          ['network', drNet, macs[1]],
        ],
      );
      // The kernel agrees: the copy's tap device is a port of the DR bridge.
      assert.ok((await readdir(`/sys/class/net/${drBr}/brif`)).includes(rows[0]!.iface));
      const giveUp = await havenJson<{ dryRun: boolean; destroyed: boolean }>(s.h, [
        ...['deactivate', server, '--store', s.store, '--destroy', '--dry-run'],
      ]);
      assert.deepEqual([giveUp.dryRun, giveUp.destroyed], [true, true]);
      assert.deepEqual(await domainsLike(server), [server], 'a dry run stops nothing');
      const gone = await runHaven(s.h, ['deactivate', server, '--store', s.store, '--destroy']);
      assert.equal(gone.code, 0, gone.stderr);
    },
  );
});
