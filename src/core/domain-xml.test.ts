import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DomainXml } from './domain-xml.ts';
import { HavenError } from './errors.ts';

const SOURCE = `<domain type='kvm' xmlns:my='http://example.com/my'>
  <name>Web01</name>
  <uuid>0e6de919-2829-4a85-a1c3-99e6b6a70f3a</uuid>
  <metadata><my:owner>ops</my:owner></metadata>
  <memory unit='KiB'>1048576</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/Web01_0.qcow2' index='2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='default' volume='Web01_1'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'><source network='default'/></interface>
    <frobnicator mode='unknown-to-haven'/>
  </devices>
</domain>`;

test('lists disks with device kind, bus, format, source and volume', () => {
  const d = DomainXml.parse(SOURCE);
  assert.equal(d.name, 'Web01');
  const disks = d.disks();
  assert.deepEqual(
    disks.map(({ element: _e, ...rest }) => rest),
    [
      {
        type: 'file',
        device: 'disk',
        target: 'vda',
        bus: 'virtio',
        format: 'qcow2',
        path: '/var/lib/libvirt/images/Web01_0.qcow2',
        pool: undefined,
        volume: undefined,
        readonly: false,
      },
      {
        type: 'volume',
        device: 'disk',
        target: 'vdb',
        bus: 'virtio',
        format: 'raw',
        path: undefined,
        pool: 'default',
        volume: 'Web01_1',
        readonly: false,
      },
      {
        type: 'file',
        device: 'cdrom',
        target: 'sda',
        bus: 'sata',
        format: 'raw',
        path: '/isos/install.iso',
        pool: undefined,
        volume: undefined,
        readonly: true,
      },
    ],
  );
});

test('rewriting sources and ejecting cdroms keeps unknown elements intact', () => {
  const d = DomainXml.parse(SOURCE);
  const [vda, vdb] = d.disks();
  d.setDiskSource(vda!, { file: '/srv/haven/Web01_Web01_0_1.raw' });
  d.setDiskSource(vdb!, { dev: '/dev/dr_vg/Web01_Web01_1_1' });
  assert.equal(d.ejectOpticalDrives(), 1);
  const out = DomainXml.parse(d.toString());
  const disks = out.disks();
  assert.equal(disks[0]!.path, '/srv/haven/Web01_Web01_0_1.raw');
  assert.equal(disks[0]!.format, 'raw');
  assert.equal(disks[0]!.type, 'file');
  assert.equal(disks[1]!.type, 'block');
  assert.equal(disks[1]!.path, '/dev/dr_vg/Web01_Web01_1_1');
  assert.equal(disks[1]!.volume, undefined);
  assert.equal(disks[2]!.path, undefined);
  const xml = out.toString();
  assert.doesNotMatch(xml, /backingStore/);
  assert.doesNotMatch(xml, /install\.iso/);
  assert.match(xml, /<frobnicator mode="unknown-to-haven"\/>/);
  assert.match(xml, /<my:owner>ops<\/my:owner>/);
  assert.match(xml, /<address type="pci"/);
  assert.match(xml, /cache="none"/);
});

test('drill rewrites: new name and uuid, no interfaces, extra device', () => {
  const d = DomainXml.parse(SOURCE);
  d.name = 'Web01-drill';
  const id = d.newUuid();
  assert.notEqual(id, '0e6de919-2829-4a85-a1c3-99e6b6a70f3a');
  assert.equal(d.removeInterfaces(), 1);
  d.addDeviceXml("<serial type='file'><source path='/tmp/s.log'/><target port='0'/></serial>");
  const out = DomainXml.parse(d.toString());
  assert.equal(out.name, 'Web01-drill');
  assert.equal(out.uuid, id);
  assert.equal(out.deviceElements('interface').length, 0);
  assert.equal(out.deviceElements('serial').length, 1);
});

test('malformed XML is a DOMAIN_XML_INVALID error', () => {
  for (const bad of ['<domain><name>x</domain>', '<network/>', 'not xml']) {
    assert.throws(
      () => DomainXml.parse(bad),
      (e: unknown) => e instanceof HavenError && e.code === 'DOMAIN_XML_INVALID',
      bad,
    );
  }
});
