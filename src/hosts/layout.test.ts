import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseLayoutDisks } from './layout.ts';

it('reads the disks ReaR will recreate, not the ones it leaves out', () => {
  const layout = `# Disk layout dated 20261206011234 (YYYYmmddHHMMSS)
# Disk /dev/vda
# Format: disk <devname> <size(bytes)> <partition label type>
disk /dev/vda 4294967296 msdos
# Partitions on /dev/vda
part /dev/vda 3221225472 1048576 primary boot /dev/vda1
#disk /dev/vdb 1073741824 unknown
disk /dev/cciss/c0d0 73407865856 gpt
fs /dev/vda1 / ext4 uuid=9d23 label=root
`;
  assert.deepEqual(parseLayoutDisks(layout), [
    { name: 'vda', size: 4294967296, label: 'msdos' },
    { name: 'cciss!c0d0', size: 73407865856, label: 'gpt' },
  ]);
});
