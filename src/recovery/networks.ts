/**
 * Failover network mapping in the boot recipe (boot.ts): each `network` or `bridge` interface of
 * the definition, as the definition rules left it, joins what the mapping names at this site
 * (core/network-map.ts), keeps or loses its MAC address, and must find what it joins here. A
 * server whose interfaces name networks this site lacks is refused before anything changes, with
 * every missing one listed, instead of failing inside `virsh create` on the first.
 *
 * Interfaces of other types (`user`, and those an operator allows with `interfaces`) are left as
 * they are: they name no network of the primary's.
 */
import type { Element } from '@xmldom/xmldom';
import type { DomainXml } from '../core/domain-xml.ts';
import type { Logger } from '../core/log.ts';
import {
  type DrillNetworks,
  type MacPolicy,
  mapRef,
  type NetworkKind,
  type NetworkMapping,
  type NetworksConfig,
  NO_NETWORKS,
  type ResolvedNetworks,
  resolveNetworks,
} from '../core/network-map.ts';
import { bridgePresence, type NetworkPresence, networkPresence, type Virsh } from '../virt/index.ts';
import { recoveryError } from './errors.ts';

/** What happens to one interface: where it was, where it goes, its MAC, what this site has. */
export interface NicPlan {
  /** The definition's MAC address, or the interface's position (`#2`) when it has none. */
  interface: string;
  /** `bridge:NAME` or `network:NAME` as the definition names it. */
  from: string;
  /** What it joins at this site. */
  to: string;
  /** A mapping (configuration or --network-map) chose `to`; otherwise it is `from`. */
  mapped: boolean;
  /** `kept`: the definition's address; `generated`: libvirt gives the copy a new one. */
  mac: 'kept' | 'generated';
  /** Attached through an Open vSwitch port (`<virtualport type='openvswitch'>`). */
  openvswitch?: true;
  /** What this site has of `to`: `unknown` when libvirt cannot tell (not refused, logged). */
  state?: NetworkPresence;
}

/** The mapping one boot applies, and the libvirt whose networks it checks. */
export interface BootNetworks extends ResolvedNetworks {
  virsh: Virsh;
}

/** What a command asks for: the site's settings (config `networks`) and its flags over them. */
export interface NetworkRequest {
  site?: NetworksConfig | undefined;
  flags?: NetworkMapping | undefined;
}

/**
 * The mapping for `server` at activation or restore: the site's, the server's own over it, the
 * flags over both; MACs kept unless a layer says `generate`.
 */
export function serverNetworks(req: NetworkRequest, server: string, virsh: Virsh): BootNetworks {
  const site = req.site ?? NO_NETWORKS;
  return { ...resolveNetworks([site, site.servers[server], req.flags], 'keep'), virsh };
}

/**
 * A drill's mapping, or undefined for an isolated drill (no interfaces: the default). A drill
 * runs beside the primary or its active copy, so its MACs are new unless its own settings or a
 * flag say `keep`: the site's `mac` is for activation.
 */
export function drillNetworks(
  drill: DrillNetworks,
  req: NetworkRequest,
  server: string,
  virsh: Virsh,
): BootNetworks | undefined {
  if (drill === 'isolated') return undefined;
  const site = req.site ?? NO_NETWORKS;
  const own = drill === 'mapped' ? undefined : drill;
  const layers = [site, site.servers[server]].map((l) => l && { map: l.map, mac: undefined });
  return { ...resolveNetworks([...layers, own, req.flags], 'generate'), virsh };
}

function macOf(xml: DomainXml, el: Element): string | undefined {
  return xml.child(el, 'mac')?.getAttribute('address') ?? undefined;
}

/** Points an interface at `to`: a fresh `<source>` (a mapped one keeps no portgroup or port id). */
function setSource(xml: DomainXml, el: Element, to: { kind: NetworkKind; name: string }): void {
  el.setAttribute('type', to.kind);
  const source = xml.doc.createElement('source');
  source.setAttribute(to.kind, to.name);
  const old = xml.child(el, 'source');
  if (old) el.replaceChild(source, old);
  else el.insertBefore(source, el.firstChild);
}

/** Applies the mapping and the MAC policy to `xml` in place; says what each interface became. */
export function mapInterfaces(xml: DomainXml, n: { map: Record<string, string>; mac: MacPolicy }): NicPlan[] {
  const plan: NicPlan[] = [];
  xml.deviceElements('interface').forEach((el, i) => {
    const kind = el.getAttribute('type');
    if (kind !== 'network' && kind !== 'bridge') return;
    const name = xml.child(el, 'source')?.getAttribute(kind) ?? '';
    const { to, mapped } = mapRef(n.map, { kind, name });
    if (mapped) setSource(xml, el, to);
    const mac = macOf(xml, el);
    const macEl = xml.child(el, 'mac');
    if (n.mac === 'generate' && macEl) el.removeChild(macEl);
    const ovs = xml.child(el, 'virtualport')?.getAttribute('type') === 'openvswitch';
    plan.push({
      interface: mac ?? `#${i + 1}`,
      from: `${kind}:${name}`,
      to: `${to.kind}:${to.name}`,
      mapped,
      mac: mac !== undefined && n.mac === 'keep' ? 'kept' : 'generated',
      ...(ovs ? { openvswitch: true as const } : {}),
    });
  });
  return plan;
}

/** What this site has of each interface's `to` (one look-up per name). */
async function probe(plan: NicPlan[], virsh: Virsh): Promise<void> {
  const seen = new Map<string, Promise<NetworkPresence>>();
  for (const nic of plan) {
    const key = `${nic.to}${nic.openvswitch ? '+ovs' : ''}`;
    if (!seen.has(key)) {
      const [kind, ...rest] = nic.to.split(':');
      const name = rest.join(':');
      seen.set(
        key,
        kind === 'network'
          ? networkPresence(virsh, name)
          : bridgePresence(virsh, name, { openvswitch: nic.openvswitch === true }),
      );
    }
    nic.state = await seen.get(key)!;
  }
}

function describeMissing(nic: NicPlan): string {
  const [kind, ...rest] = nic.to.split(':');
  const what = `${kind} ${rest.join(':')}${nic.mapped ? ` (mapped from ${nic.from})` : ''}`;
  return `${what}${nic.state === 'inactive' ? ' is not started' : ''} for interface ${nic.interface}`;
}

/**
 * Throws RECOVERY_NETWORK_MISSING listing every interface whose network or bridge this site does
 * not have (or has stopped), with the plan in its details; logs what libvirt could not tell.
 */
export async function checkNetworks(
  plan: NicPlan[],
  server: string,
  virsh: Virsh,
  log: Logger,
): Promise<void> {
  await probe(plan, virsh);
  for (const nic of plan.filter((p) => p.state === 'unknown'))
    log.warn(`cannot tell whether ${nic.to} exists where ${server} starts; trying anyway`, { ...nic });
  const missing = plan.filter((p) => p.state === 'missing' || p.state === 'inactive');
  if (!missing.length) return;
  const unmapped = missing.find((m) => !m.mapped);
  const example = unmapped ? `${unmapped.from.replace(/^bridge:/, '')}=NAME` : 'FROM=TO';
  const inactive = missing.find((m) => m.state === 'inactive');
  throw recoveryError(
    'RECOVERY_NETWORK_MISSING',
    'not-found',
    `${server}: this site has no ${missing.map(describeMissing).join('; ')}`,
    {
      hint: `Map each to a bridge or network this site has (--network-map ${example}, or networks.map in the configuration; docs/recovery.md, "Networks at the DR site"), or create it here${inactive ? `, or start it (virsh net-start ${inactive.to.slice('network:'.length)})` : ''}. virsh net-list --all and ip link show type bridge list what this host has.`,
      details: {
        server,
        missing: missing.map((m) => ({
          interface: m.interface,
          from: m.from,
          to: m.to,
          mapped: m.mapped,
          state: m.state,
        })),
        networks: plan,
      },
    },
  );
}
