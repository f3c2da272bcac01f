import assert from 'node:assert/strict';
import { test } from 'node:test';
import { majMinOf, parseBlkidExport, parseMountinfo } from './parse.ts';

test('blkid export: one entry per device with a filesystem type, escapes undone', () => {
  const text = [
    'DEVNAME=/dev/loop0',
    'UUID=f7c5cf65-10a8-48c8-b624-d9a0e5f958fb',
    'BLOCK_SIZE=1024',
    'TYPE=ext4',
    '',
    'DEVNAME=/dev/sdb1',
    'LABEL=USB\\ cache',
    'TYPE=vfat',
    '',
    'DEVNAME=/dev/sdc',
    'PTTYPE=gpt',
    '',
  ].join('\n');
  assert.deepEqual(parseBlkidExport(text), [
    { device: '/dev/loop0', fstype: 'ext4', uuid: 'f7c5cf65-10a8-48c8-b624-d9a0e5f958fb', label: undefined },
    { device: '/dev/sdb1', fstype: 'vfat', uuid: undefined, label: 'USB cache' },
  ]);
  assert.deepEqual(parseBlkidExport(''), []);
});

test('mountinfo: fields, optional tags, octal escapes, bind mounts keep their root', () => {
  const text = [
    '36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
    '40 27 7:3 / /mnt/usb\\040cache rw,relatime shared:5 - ext4 /dev/loop3 rw',
    '41 27 7:3 /sub /srv/bind ro,relatime - ext4 /dev/loop3 rw',
    'garbage',
  ].join('\n');
  const m = parseMountinfo(text);
  assert.equal(m.length, 3);
  assert.deepEqual(m[1], {
    majMin: '7:3',
    root: '/',
    mountpoint: '/mnt/usb cache',
    options: ['rw', 'relatime'],
    fstype: 'ext4',
    source: '/dev/loop3',
  });
  assert.equal(m[0]!.root, '/mnt1');
  assert.deepEqual(m[2]!.options, ['ro', 'relatime']);
});

test('dev_t decoding', () => {
  assert.equal(majMinOf(7 * 256 + 3), '7:3');
  assert.equal(majMinOf(259 * 256 + 1), '259:1');
  // minor 300: low 8 bits in 0–7, the rest from bit 20
  assert.equal(majMinOf((300 & 0xff) | (8 << 8) | ((300 >> 8) << 20)), '8:300');
});
