import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DomainXml } from '../core/domain-xml.ts';
import { HavenError } from '../core/errors.ts';
import {
  ACTIVATION_NS,
  DR_ACTIVE_NS,
  isolateChardevs,
  isolateDevices,
  mapDisks,
  markStartedByHaven,
  setOverlayBlockSource,
  setOverlaySource,
  storeDiskOf,
} from './definition.ts';

const DEF = `<domain type='qemu'>
  <name>web01</name>
  <uuid>3e9c5bd1-7d4f-4c51-9a3f-0a4b5e1c2d3e</uuid>
  <metadata><haven:dr-active xmlns:haven='${DR_ACTIVE_NS}' since='x'/><other:x xmlns:other='urn:other'/></metadata>
  <os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/><source file='/srv/dr/web01_web01_0_1.raw'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/old/place/web01_web01-data_1.raw'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/srv/other/scratch.raw'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='bridge'><source bridge='br0'/><mac address='52:54:00:00:00:01'/></interface>
    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>
    <serial type='file'><source path='/primary/logs/web01.log'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='/primary/run/web01.sock'/><target port='1'/></serial>
    <console type='file'><source path='/primary/logs/web01.log'/><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind' path='/primary/run/agent.sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='5901' autoport='no'/>
  </devices>
</domain>`;

const DISKS = ['web01_0', 'web01-data'];

test('store disks are found by image name, wherever the store was', () => {
  assert.equal(storeDiskOf('web01', '/srv/dr/web01_web01_0_1.raw', DISKS), 'web01_0');
  assert.equal(storeDiskOf('web01', '/elsewhere/web01_web01-data_3.raw', DISKS), 'web01-data');
  assert.equal(storeDiskOf('web01', '/x/web01_web01_0_incomplete.raw', DISKS), 'web01_0');
  assert.equal(storeDiskOf('web01', '/x/web01_other_1.raw', DISKS), undefined);
  assert.equal(storeDiskOf('web01', '/x/web02_web01_0_1.raw', DISKS), undefined);
  assert.equal(storeDiskOf('web01', '/x/web01_web01_0_x.raw', DISKS), undefined);
  assert.equal(storeDiskOf('web01', undefined, DISKS), undefined);

  const xml = DomainXml.parse(DEF);
  assert.deepEqual(
    mapDisks(xml, 'web01', DISKS).map((m) => [m.disk.target, m.name]),
    [
      ['vda', 'web01_0'],
      ['vdb', 'web01-data'],
    ],
  );
  assert.throws(
    () => mapDisks(xml, 'web01', [...DISKS, 'web01-logs']),
    (e) => e instanceof HavenError && e.code === 'RECOVERY_DEFINITION_MISMATCH',
  );
});

test('a disk boots through a qcow2 overlay whose raw backing file libvirt must not relabel', () => {
  const xml = DomainXml.parse(DEF);
  const [m] = mapDisks(xml, 'web01', DISKS);
  setOverlaySource(xml, m!.disk, '/srv/dr/.haven/active/web01/web01_0.qcow2', '/srv/dr/web01_web01_0_1.raw');
  const d = DomainXml.parse(xml.toString()).disks()[0]!;
  assert.equal(d.format, 'qcow2');
  assert.equal(d.path, '/srv/dr/.haven/active/web01/web01_0.qcow2');
  const text = xml.toString();
  assert.match(
    text,
    /<backingStore type="file"><format type="raw"\/><source file="\/srv\/dr\/web01_web01_0_1\.raw"><seclabel model="dac" relabel="no"\/><\/source><backingStore\/><\/backingStore>/,
  );
  // Exactly one source, right after the driver, as libvirt writes it.
  const el = d.element;
  assert.equal(xml.children(el, 'source').length, 1);
  assert.equal(xml.child(el, 'driver')?.nextSibling?.nodeName, 'source');
});

test("a disk over an LVM store's volume boots through an overlay whose backing block device libvirt relabels", () => {
  const xml = DomainXml.parse(DEF);
  const [m] = mapDisks(xml, 'web01', DISKS);
  setOverlayBlockSource(
    xml,
    m!.disk,
    '/srv/dr/.haven/active/web01/web01_0.qcow2',
    '/srv/dr/volumes/web01_web01_0_1',
  );
  const d = DomainXml.parse(xml.toString()).disks()[0]!;
  assert.equal(d.format, 'qcow2');
  assert.equal(d.path, '/srv/dr/.haven/active/web01/web01_0.qcow2');
  // The QEMU user gets the node (root:disk 0660) only through libvirt's label: no relabel='no'.
  assert.match(
    xml.toString(),
    /<backingStore type="block"><format type="raw"\/><source dev="\/srv\/dr\/volumes\/web01_web01_0_1"\/><backingStore\/><\/backingStore>/,
  );
  assert.equal(xml.children(d.element, 'source').length, 1);
});

test('a drill is isolated: console to its file, no network, no host devices, no fixed ports or sockets', () => {
  const xml = DomainXml.parse(DEF);
  isolateDevices(xml);
  isolateChardevs(xml, '/run/haven/drills/x/console.log');
  const text = xml.toString();
  assert.equal(xml.deviceElements('interface').length, 0);
  assert.equal(xml.deviceElements('hostdev').length, 0);
  const g = xml.deviceElements('graphics')[0]!;
  assert.equal(g.getAttribute('autoport'), 'yes');
  assert.equal(g.hasAttribute('port'), false);
  const serials = xml.deviceElements('serial');
  assert.deepEqual(
    serials.map((s) => s.getAttribute('type')),
    ['file', 'null'],
  );
  assert.equal(xml.deviceElements('console')[0]!.getAttribute('type'), 'file');
  assert.equal(text.match(/\/run\/haven\/drills\/x\/console\.log/g)?.length, 2);
  assert.doesNotMatch(text, /\/primary\//, 'no host path of the primary is left');
  assert.equal(xml.deviceElements('channel').length, 1, 'the agent channel stays, on a path libvirt picks');

  // A guest with no serial port gets one for the drill's console.
  const bare = DomainXml.parse(
    "<domain><name>x</name><devices><console type='pty'><target type='virtio' port='0'/></console></devices></domain>",
  );
  isolateChardevs(bare, '/tmp/c.log');
  assert.match(
    bare.toString(),
    /<serial type="file"><source path="\/tmp\/c\.log"\/><target port="0"\/><\/serial>/,
  );
});

test('copies carry Haven’s marker and never the primary’s guard', () => {
  const xml = DomainXml.parse(DEF);
  markStartedByHaven(xml, { purpose: 'activation', store: 'store-id', server: 'web01', generation: 'g1' });
  const text = xml.toString();
  assert.doesNotMatch(text, new RegExp(DR_ACTIVE_NS));
  const started = xml.doc.getElementsByTagNameNS(ACTIVATION_NS, 'started')[0]!;
  assert.deepEqual(
    ['purpose', 'store', 'server', 'generation'].map((a) => started.getAttribute(a)),
    ['activation', 'store-id', 'web01', 'g1'],
  );
  assert.match(text, /urn:other/, 'other metadata stays');
  markStartedByHaven(xml, { purpose: 'drill', store: 's', server: 'web01', generation: 'g2' });
  assert.equal(xml.toString().match(/haven:started/g)?.length, 1);
});
