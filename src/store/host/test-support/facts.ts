/** The facts of a small Debian host's rescue media, for tests of the host store. */
import { digest } from '../../../core/digest.ts';
import type { HostFacts } from '../types.ts';

export function hostFacts(layout = 'disk /dev/vda 4294967296 msdos\n'): HostFacts {
  return {
    hostname: 'node1',
    os: 'Debian GNU/Linux 12 (bookworm)',
    kernel: '6.1.0-57-cloud-amd64',
    rearVersion: 'Relax-and-Recover 2.7 / Git',
    firmware: 'bios',
    memoryBytes: 1 << 30,
    disks: [{ name: 'vda', size: 4294967296, label: 'msdos' }],
    layout,
    layoutDigest: digest('blake3', Buffer.from(layout)).toString('hex'),
    rearConfig: 'OUTPUT=ISO\n',
  };
}
