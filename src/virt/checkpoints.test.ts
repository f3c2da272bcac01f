import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DomainXml } from '../core/domain-xml.ts';
import { buildCheckpointXml, checkpointDisks, parseCheckpointXml } from './checkpoints.ts';
import { VirtError } from './errors.ts';

// checkpoint-dumpxml as libvirt 9.0 writes it (real run), domain shortened.
const CP = `<domaincheckpoint>
  <name>c2</name>
  <parent>
    <name>c1</name>
  </parent>
  <creationTime>1795314052</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='c2' size='131072'/>
    <disk name='vdb' checkpoint='no'/>
    <disk name='hdc' checkpoint='no'/>
  </disks>
  <domain type='qemu'><name>x</name></domain>
</domaincheckpoint>`;

test('parses checkpoint XML: parent, creation time, disks with bitmap and size', () => {
  const cp = parseCheckpointXml(CP);
  assert.equal(cp.name, 'c2');
  assert.equal(cp.parent, 'c1');
  assert.equal(cp.creationTime.toISOString(), new Date(1795314052 * 1000).toISOString());
  assert.deepEqual(cp.disks, [
    { name: 'vda', checkpoint: 'bitmap', bitmap: 'c2', size: 131072 },
    { name: 'vdb', checkpoint: 'no', bitmap: undefined, size: undefined },
    { name: 'hdc', checkpoint: 'no', bitmap: undefined, size: undefined },
  ]);
  assert.throws(
    () => parseCheckpointXml('<domaincheckpoint><disks/></domaincheckpoint>'),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_XML_INVALID',
  );
});

const DOMAIN = DomainXml.parse(`<domain type='qemu'><name>d</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/d_0.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/i/d_1.raw'/><target dev='vdb' bus='virtio'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/d_2.qcow2'/><target dev='vdc' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='qcow2'/><source file='/i/cd.qcow2'/><target dev='hdc' bus='ide'/><readonly/></disk>
</devices></domain>`);

test('by default every qcow2 disk gets a bitmap, raw disks and cdroms do not', () => {
  assert.deepEqual(checkpointDisks(DOMAIN.disks()), [
    { target: 'vda', bitmap: true },
    { target: 'vdb', bitmap: false },
    { target: 'vdc', bitmap: true },
    { target: 'hdc', bitmap: false },
  ]);
});

test('a chosen subset is honoured; raw or unknown disks are refused', () => {
  assert.deepEqual(
    checkpointDisks(DOMAIN.disks(), ['vdc']).filter((d) => d.bitmap),
    [{ target: 'vdc', bitmap: true }],
  );
  const refused = (include: string[]) =>
    assert.throws(
      () => checkpointDisks(DOMAIN.disks(), include),
      (e: unknown) => e instanceof VirtError && e.code === 'VIRT_BAD_ARGUMENT',
    );
  refused(['vdb']);
  refused(['hdc']);
  refused(['vdz']);
  refused([]);
});

test('checkpoint XML lists every disk and escapes the name', () => {
  const xml = buildCheckpointXml('a&b', checkpointDisks(DOMAIN.disks()), 'made by <haven>');
  const cp = parseCheckpointXml(xml);
  assert.equal(cp.name, 'a&b');
  assert.equal(cp.description, 'made by <haven>');
  assert.deepEqual(
    cp.disks.map((d) => `${d.name}:${d.checkpoint}`),
    ['vda:bitmap', 'vdb:no', 'vdc:bitmap', 'hdc:no'],
  );
});
