import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DomainXml } from '../core/domain-xml.ts';
import { Virsh } from '../virt/index.ts';
import { drillNetworks, mapInterfaces, serverNetworks } from './networks.ts';

const DEF = `<domain type='qemu'><name>web01</name><devices>
  <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='prod-br'/><model type='virtio'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:02'/><source network='lan' portgroup='vlan10' portid='0c1e2d3f-0000-4000-8000-000000000001'/></interface>
  <interface type='network'><source network='backup'/></interface>
  <interface type='user'><mac address='52:54:00:00:00:04'/></interface>
  <interface type='bridge'><source bridge='ovs0'/><virtualport type='openvswitch'/></interface>
</devices></domain>`;

test('interfaces join what the mapping names; unmapped ones keep their source; user NICs are left alone', () => {
  const xml = DomainXml.parse(DEF);
  const plan = mapInterfaces(xml, { map: { 'prod-br': 'dr-br', lan: 'bridge:dr-lan-br' }, mac: 'keep' });
  assert.deepEqual(
    plan.map((p) => [p.interface, p.from, p.to, p.mapped, p.mac]),
    [
      ['52:54:00:00:00:01', 'bridge:prod-br', 'bridge:dr-br', true, 'kept'],
      ['52:54:00:00:00:02', 'network:lan', 'bridge:dr-lan-br', true, 'kept'],
      ['#3', 'network:backup', 'network:backup', false, 'generated'],
      ['#5', 'bridge:ovs0', 'bridge:ovs0', false, 'generated'],
    ],
  );
  assert.equal(plan[3]!.openvswitch, true);
  const out = xml.toString();
  assert.match(out, /<interface type="bridge"><mac address="52:54:00:00:00:01"\/><source bridge="dr-br"\/>/);
  // A network mapped to a bridge keeps no portgroup or port id of the primary's network.
  assert.match(
    out,
    /<interface type="bridge"><mac address="52:54:00:00:00:02"\/><source bridge="dr-lan-br"\/><\/interface>/,
  );
  assert.match(out, /<source network="backup"\/>/);
  assert.match(out, /<interface type="user"><mac address="52:54:00:00:00:04"\/><\/interface>/);
});

test('mac: generate drops the addresses, so libvirt gives the copy new ones', () => {
  const xml = DomainXml.parse(DEF);
  const plan = mapInterfaces(xml, { map: {}, mac: 'generate' });
  assert.ok(plan.every((p) => p.mac === 'generated' && !p.mapped));
  const out = xml.toString();
  assert.doesNotMatch(out, /52:54:00:00:00:0[12]/);
  assert.match(out, /52:54:00:00:00:04/, 'a user-mode NIC is not one the mapping handles');
});

test('layers: site, server, flags for activation; drills isolated unless asked, with new MACs', () => {
  const virsh = new Virsh({ uri: 'qemu:///system' });
  const site = {
    map: { 'prod-br': 'dr-br' },
    mac: 'keep' as const,
    servers: { web01: { map: { 'prod-br': 'dmz-br' }, mac: undefined } },
  };
  const flags = { map: { lan: 'dr-lan' }, mac: undefined };
  const a = serverNetworks({ site, flags }, 'web01', virsh);
  assert.deepEqual([{ ...a.map }, a.mac], [{ 'prod-br': 'dmz-br', lan: 'dr-lan' }, 'keep']);
  assert.deepEqual({ ...serverNetworks({ site }, 'db01', virsh).map }, { 'prod-br': 'dr-br' });

  assert.equal(drillNetworks('isolated', { site, flags }, 'web01', virsh), undefined);
  const mapped = drillNetworks('mapped', { site }, 'db01', virsh)!;
  assert.deepEqual([{ ...mapped.map }, mapped.mac], [{ 'prod-br': 'dr-br' }, 'generate']);
  const own = drillNetworks({ map: { 'prod-br': 'drill-br' }, mac: 'keep' }, { site }, 'web01', virsh)!;
  assert.deepEqual([{ ...own.map }, own.mac], [{ 'prod-br': 'drill-br' }, 'keep']);
});
