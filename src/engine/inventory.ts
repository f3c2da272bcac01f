/**
 * What a job needs to know about the host's servers before copying any: which exist, their
 * state, and how big their protected disks are (jobs copy the largest first). Read in one batch
 * of virsh calls (virt/servers.ts), so a host with hundreds of servers answers quickly.
 */
import type { Logger } from '../core/log.ts';
import { type DomainState, domainState, listServerNames, listServers, type Virsh } from '../virt/index.ts';

export type { DomainState } from '../virt/index.ts';
export { Virsh } from '../virt/index.ts';
export { listServerNames };

export interface ServerSummary {
  name: string;
  state: DomainState;
  persistent: boolean;
  /** Disks Haven would copy (disks and luns; removable media are not data). */
  disks: Array<{
    target: string;
    storeName: string | undefined;
    size: number | undefined;
    path: string | undefined;
  }>;
  /** Sum of the protected disks' virtual sizes, bytes. */
  sizeBytes: number;
}

/** Every domain libvirt knows, with its protected disks, sorted by name. */
export async function inventory(virsh: Virsh, log?: Logger): Promise<ServerSummary[]> {
  const servers = await listServers(virsh, { log });
  return servers.map((s) => {
    const disks = s.disks
      .filter((d) => d.device === 'disk' || d.device === 'lun')
      .map((d) => ({ target: d.target, storeName: d.storeName, size: d.virtualSize, path: d.path }));
    return {
      name: s.name,
      state: s.state,
      persistent: s.persistent,
      disks,
      sizeBytes: disks.reduce((n, d) => n + (d.size ?? 0), 0),
    };
  });
}

/** The domain's state now. */
export async function serverState(virsh: Virsh, name: string): Promise<DomainState> {
  return (await domainState(virsh, name)).state;
}
