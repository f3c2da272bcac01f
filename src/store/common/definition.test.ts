import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DomainXml } from '../../core/domain-xml.ts';
import { silentLogger } from '../../core/log.ts';
import { buildDrDefinition } from './definition.ts';

const SOURCE = `<domain type='kvm'>
  <name>Web01</name>
  <memory unit='KiB'>1048576</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/Web01_0.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/Web01_1'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/isos/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>`;

test('disks point at the newest raw images, cdroms are ejected, unreplicated disks are removed', () => {
  const out = buildDrDefinition(
    SOURCE,
    ['Web01_0', 'Web01_1'],
    (d) => `/srv/dr/Web01_${d}_1.raw`,
    silentLogger,
    { server: 'Web01', storeRoot: '/srv/dr' },
  );
  const x = DomainXml.parse(out);
  const disks = x.disks();
  assert.deepEqual(
    disks.map((d) => [d.target, d.device, d.type, d.format, d.path]),
    [
      ['vda', 'disk', 'file', 'raw', '/srv/dr/Web01_Web01_0_1.raw'],
      ['vdb', 'disk', 'file', 'raw', '/srv/dr/Web01_Web01_1_1.raw'],
      ['sda', 'cdrom', 'file', undefined, undefined],
    ],
  );
  const first = disks[0];
  assert.ok(first);
  assert.equal(x.child(first.element, 'backingStore'), undefined);
  assert.match(out, /haven: disk vdc \(rbd:pool\/img\) is not replicated/);
  assert.equal(x.name, 'Web01');
});
