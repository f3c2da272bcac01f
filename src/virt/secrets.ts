/**
 * libvirt secrets that hold a Ceph user's key (libvirt formatsecret.html, usage type `ceph`): a
 * domain's rbd disks name the secret by its usage, and libvirt hands the key to QEMU as a secret
 * object, never on a command line. One secret per cluster and user, found by its usage name and
 * refreshed with the key the store's keyring holds now.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../core/log.ts';
import type { Virsh } from './virsh.ts';

/** The uuid of the ceph secret whose usage name is `usage`, or undefined. */
async function findSecret(virsh: Virsh, usage: string): Promise<string | undefined> {
  // `secret-list` rows: "<uuid>  ceph <usage name>".
  const out = await virsh.run(['secret-list']);
  for (const line of out.split('\n')) {
    const m = /^\s*([0-9a-f-]{36})\s+ceph\s+(.+?)\s*$/.exec(line);
    if (m && m[2] === usage) return m[1];
  }
  return undefined;
}

/** Makes sure a private ceph secret named `usage` holds `key` (base64); returns its uuid. */
export async function ensureCephSecret(
  virsh: Virsh,
  usage: string,
  key: string,
  log: Logger,
): Promise<string> {
  let uuid = await findSecret(virsh, usage);
  if (!uuid) {
    uuid = randomUUID();
    const xml = `<secret ephemeral='no' private='yes'>
  <uuid>${uuid}</uuid>
  <description>Haven: the cephx key of an rbd store's user</description>
  <usage type='ceph'><name>${usage.replace(/[<>&'"]/g, '')}</name></usage>
</secret>
`;
    await virsh.runWithFiles({ secret: xml }, (p) => ['secret-define', p.secret as string]);
    log.info('libvirt secret defined for the Ceph user', { usage, uuid });
  }
  await virsh.runWithFiles({ key }, (p) => ['secret-set-value', uuid as string, '--file', p.key as string]);
  return uuid;
}
