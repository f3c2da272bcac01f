/**
 * Whether a libvirt network or a host bridge exists where a domain would start: what failover
 * network mapping (recovery/networks.ts) checks before it starts or defines a server, so a
 * missing network is named in a refusal instead of failing inside `virsh create`.
 *
 * Networks are asked of libvirt (`virsh net-info`). Bridges are looked up under /sys when the
 * libvirt connection is this host's (`/sys/class/net/<name>/bridge` exists for a Linux bridge;
 * an Open vSwitch bridge is a plain interface of that name there), and asked of libvirt's
 * interface driver (`virsh iface-dumpxml`) when it is another host's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { validBridgeName, validNetworkName } from '../core/network-map.ts';
import { VirtError } from './errors.ts';
import type { Virsh } from './virsh.ts';

/** `unknown`: this libvirt cannot tell (no interface driver on a remote host). */
export type NetworkPresence = 'active' | 'inactive' | 'missing' | 'unknown';

const SYS_NET = '/sys/class/net';

function isNotFound(e: unknown, what: RegExp): boolean {
  return e instanceof VirtError && what.test(String(e.details?.message ?? e.message));
}

/** A libvirt network of this name: running (`active`), defined but stopped, or missing. */
export async function networkPresence(virsh: Virsh, name: string): Promise<NetworkPresence> {
  if (!validNetworkName(name)) return 'missing';
  try {
    const out = await virsh.run(['net-info', '--network', name]);
    return /^Active:\s+yes\s*$/m.test(out) ? 'active' : 'inactive';
  } catch (e) {
    if (isNotFound(e, /Network not found|no network with matching name/i)) return 'missing';
    throw e;
  }
}

/** True when the libvirt URI names this host (no host part: qemu:///system, qemu+unix:///…). */
export function isLocalUri(uri: string): boolean {
  try {
    return new URL(uri).hostname === '';
  } catch {
    return false;
  }
}

/**
 * A bridge of this name where the domain starts. `openvswitch`: the interface attaches through
 * an Open vSwitch port (`<virtualport type='openvswitch'>`), so any interface of that name will do.
 */
export async function bridgePresence(
  virsh: Virsh,
  name: string,
  o: { openvswitch?: boolean } = {},
): Promise<NetworkPresence> {
  if (!validBridgeName(name)) return 'missing';
  if (isLocalUri(virsh.uri)) {
    if (existsSync(join(SYS_NET, name, 'bridge'))) return 'active';
    return o.openvswitch && existsSync(join(SYS_NET, name)) ? 'active' : 'missing';
  }
  try {
    const xml = await virsh.run(['iface-dumpxml', '--interface', name]);
    return o.openvswitch || /<interface[^>]*type=['"]bridge['"]/.test(xml) ? 'active' : 'missing';
  } catch (e) {
    if (isNotFound(e, /Interface not found|couldn't find interface/i)) return 'missing';
    if (e instanceof VirtError && e.code === 'VIRT_UNSUPPORTED') return 'unknown';
    throw e;
  }
}
