import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compareVersions, qemuUser } from './host-check.ts';
import { isActiveState, parseDomainState } from './lifecycle.ts';
import { bitmapProblem, type ImageInfo } from './qemu-img.ts';
import { storeDiskName } from './servers.ts';
import { libvirtUri, quoteVirshArg } from './virsh.ts';

test('store disk names: file base name without extension, LV name for block devices', () => {
  assert.equal(storeDiskName('/var/lib/libvirt/images/Web01_0.qcow2', 'file'), 'Web01_0');
  assert.equal(storeDiskName('/images/db.data.img', 'file'), 'db.data');
  assert.equal(storeDiskName('/images/noext', 'file'), 'noext');
  assert.equal(storeDiskName('/images/.hidden', 'file'), '.hidden');
  assert.equal(storeDiskName('/dev/vg0/Web01_1', 'block'), 'Web01_1');
  assert.equal(storeDiskName('/dev/mapper/vg0-Web01_1', 'block'), 'Web01_1');
  // device-mapper doubles dashes inside VG and LV names
  assert.equal(storeDiskName('/dev/mapper/my--vg-web--01', 'block'), 'web-01');
  assert.equal(storeDiskName('/dev/sdb', 'block'), 'sdb');
});

test('domain states as virsh prints them', () => {
  assert.equal(parseDomainState('running'), 'running');
  assert.equal(parseDomainState('shut off'), 'shut off');
  assert.equal(parseDomainState('in shutdown'), 'in shutdown');
  assert.equal(parseDomainState('blocked'), 'idle');
  assert.equal(parseDomainState('something new'), 'no state');
  assert.equal(isActiveState('paused'), true);
  assert.equal(isActiveState('shut off'), false);
  assert.equal(isActiveState('crashed'), false);
});

test('versions compare numerically', () => {
  assert.ok(compareVersions('9.0.0', '7.2.0') > 0);
  assert.ok(compareVersions('7.2', '7.2.0') === 0);
  assert.ok(compareVersions('7.10.0', '7.2.0') > 0);
  assert.ok(compareVersions('4.1.1', '4.2.0') < 0);
});

test('the QEMU user comes from qemu.conf when set there', () => {
  const dir = mkdtempSync(join(tmpdir(), 'haven-qemuconf-'));
  try {
    const conf = join(dir, 'qemu.conf');
    writeFileSync(conf, '# user = "nobody"\nuser = "qemu-runner"\ngroup = "kvm"\n');
    assert.equal(qemuUser(conf), 'qemu-runner');
    writeFileSync(conf, '#user = "root"\n');
    assert.notEqual(qemuUser(conf), '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('virsh arguments are quoted for its own parser', () => {
  assert.equal(quoteVirshArg('plain'), "'plain'");
  assert.equal(quoteVirshArg("it's; x"), "'it'\\''s; x'");
});

test('the libvirt URI: option, then $HAVEN_LIBVIRT_URI, then qemu:///system', () => {
  assert.equal(libvirtUri('qemu:///session', { HAVEN_LIBVIRT_URI: 'test:///default' }), 'qemu:///session');
  assert.equal(libvirtUri(undefined, { HAVEN_LIBVIRT_URI: 'test:///default' }), 'test:///default');
  assert.equal(libvirtUri(undefined, {}), 'qemu:///system');
});

test('bitmap trust: present, enabled and not in use', () => {
  const info = (flags: string[]): ImageInfo => ({
    path: '/x',
    format: 'qcow2',
    virtualSize: 1,
    actualSize: 1,
    clusterSize: 65536,
    backingFile: undefined,
    corrupt: false,
    bitmaps: [{ name: 'c1', granularity: 65536, flags }],
  });
  assert.equal(bitmapProblem(info(['auto']), 'c1'), undefined);
  assert.equal(bitmapProblem(info(['auto']), 'c2'), 'missing');
  assert.equal(bitmapProblem(info(['in-use', 'auto']), 'c1'), 'in-use');
  assert.equal(bitmapProblem(info(['inconsistent']), 'c1'), 'inconsistent');
  assert.equal(bitmapProblem(info([]), 'c1'), 'disabled');
});
