/**
 * Failover network mapping (issue 20, item 7): which bridge or libvirt network each interface of
 * a server joins at the DR site, and whether it keeps its MAC address. Settings come from the DR
 * host's configuration (`networks`, per server under `networks.servers`, a drill's own
 * `networks`) and from flags (`--network-map FROM=TO`, `--mac keep|generate`); the later layer
 * wins. Pure: recovery/networks.ts applies the result to a domain's XML and checks that what it
 * names exists. docs/recovery.md ("Networks at the DR site") is the rule in words.
 *
 * A name is `bridge:NAME`, `network:NAME` or a bare `NAME`. On the left a bare name matches a
 * bridge or a network of that name (a prefixed key wins over a bare one); on the right it is of
 * the same kind as what it replaces, so `prod-br: dr-br` maps a bridge to a bridge and
 * `default: dr-lan` a network to a network.
 */
import { describeValue, ValueProblem } from './config-values.ts';

export type NetworkKind = 'bridge' | 'network';
export const MAC_POLICIES = ['keep', 'generate'] as const;
/** `keep`: the interface keeps the definition's MAC; `generate`: libvirt gives it a new one. */
export type MacPolicy = (typeof MAC_POLICIES)[number];

export interface NetworkRef {
  /** undefined: a bare name (see the module comment). */
  kind: NetworkKind | undefined;
  name: string;
}

/** One layer of settings: a mapping (canonical `FROM` text → `TO` text) and a MAC policy. */
export interface NetworkMapping {
  map: Record<string, string>;
  mac: MacPolicy | undefined;
}

/** The DR host's `networks` section: the site's mapping, and per server one over it. */
export interface NetworksConfig extends NetworkMapping {
  servers: Record<string, NetworkMapping>;
}

/** How a drill treats interfaces: none (the default), the site's mapping, or its own over it. */
export type DrillNetworks = 'isolated' | 'mapped' | NetworkMapping;

/** The settings for one server, all layers applied. */
export interface ResolvedNetworks {
  map: Record<string, string>;
  mac: MacPolicy;
}

export const NO_NETWORKS: NetworksConfig = { map: {}, mac: undefined, servers: {} };

/**
 * Linux interface names (`dev_valid_name`): 1–15 bytes, no `/`, `:` or white space, not `.` or
 * `..`. A bridge name from a definition is checked too before it is looked up under /sys.
 */
export function validBridgeName(name: string): boolean {
  return /^[^\s/:]{1,15}$/.test(name) && name !== '.' && name !== '..' && Buffer.byteLength(name) <= 15;
}

/** libvirt refuses `/` in a network name; Haven also refuses white space and control characters. */
export function validNetworkName(name: string): boolean {
  return /^[^\s/\x00-\x1f\x7f]{1,100}$/.test(name) && !name.startsWith('-');
}

/** `bridge:NAME`, `network:NAME` or `NAME`; throws ValueProblem for anything else. */
export function parseNetworkRef(v: unknown): NetworkRef {
  if (typeof v !== 'string' || v === '') {
    throw new ValueProblem(
      `expected a bridge or network name (bridge:NAME, network:NAME or NAME), got ${describeValue(v)}`,
    );
  }
  const m = /^(bridge|network):(.*)$/.exec(v);
  const ref: NetworkRef = m ? { kind: m[1] as NetworkKind, name: m[2]! } : { kind: undefined, name: v };
  const ok =
    ref.kind === 'bridge'
      ? validBridgeName(ref.name)
      : ref.kind === 'network'
        ? validNetworkName(ref.name)
        : validNetworkName(ref.name) && !ref.name.includes(':');
  if (!ok) {
    throw new ValueProblem(
      ref.kind === 'bridge'
        ? `expected a Linux bridge name (1–15 characters, no "/", ":" or spaces), got ${describeValue(ref.name)}`
        : `expected a bridge or network name (bridge:NAME, network:NAME or NAME; no "/" or spaces), got ${describeValue(v)}`,
    );
  }
  return ref;
}

export function refText(ref: NetworkRef): string {
  return ref.kind ? `${ref.kind}:${ref.name}` : ref.name;
}

/** `FROM=TO` as a flag gives it; throws ValueProblem. */
export function parseMapEntry(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    throw new ValueProblem(
      `expected FROM=TO, e.g. prod-br=dr-br or network:default=network:dr-lan, got ${describeValue(text)}`,
    );
  }
  return [refText(parseNetworkRef(text.slice(0, eq))), refText(parseNetworkRef(text.slice(eq + 1)))];
}

/** The layers in order, later ones winning, the MAC policy `fallback` when no layer sets one. */
export function resolveNetworks(
  layers: ReadonlyArray<NetworkMapping | undefined>,
  fallback: MacPolicy,
): ResolvedNetworks {
  const map: Record<string, string> = Object.create(null);
  let mac: MacPolicy | undefined;
  for (const l of layers) {
    if (!l) continue;
    Object.assign(map, l.map);
    mac = l.mac ?? mac;
  }
  return { map, mac: mac ?? fallback };
}

/** What `from` becomes at the DR site, and whether a mapping said so. */
export function mapRef(
  map: Readonly<Record<string, string>>,
  from: { kind: NetworkKind; name: string },
): { to: { kind: NetworkKind; name: string }; mapped: boolean } {
  const hit = map[`${from.kind}:${from.name}`] ?? map[from.name];
  if (hit === undefined) return { to: from, mapped: false };
  const ref = parseNetworkRef(hit);
  return { to: { kind: ref.kind ?? from.kind, name: ref.name }, mapped: true };
}
