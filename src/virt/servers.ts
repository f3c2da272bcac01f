/**
 * Servers (libvirt domains) and their disks, as Haven sees them: state, persistence, and for
 * every disk its device kind, source, format, virtual size and the store disk name (docs/design.md §4.1).
 *
 * All facts for all domains come from a few batched virsh runs whatever the number of domains
 * (the names, states, persistence and autostart as six `list` filters; a dumpxml per domain;
 * vol-path per volume disk), so listing a large host stays quick. `dominfo` is not used: it costs
 * several libvirt calls per domain, which made up half of a 20-server listing (bench/README.md,
 * "fleet"). Virtual sizes come from the images themselves, never from the running QEMU
 * (image-size.ts says why).
 */
import { basename } from 'node:path';
import { type DiskDevice, DomainXml } from '../core/domain-xml.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { VirtError, virshError } from './errors.ts';
import { localVirtualSize } from './image-size.ts';
import { type DomainState, parseDomainState } from './lifecycle.ts';
import { qemuImgInfo } from './qemu-img.ts';
import { type BatchResult, batchError, type Virsh } from './virsh.ts';

export interface ServerDisk {
  /** `<target dev>`: vda, sdb, hdc. */
  target: string;
  bus: string | undefined;
  device: DiskDevice;
  /** `<disk type>`: file, block, volume, network, … */
  sourceType: string;
  /** The image file or block device (a volume's resolved path). Undefined: no media, or network. */
  path: string | undefined;
  pool: string | undefined;
  volume: string | undefined;
  /** For network disks: protocol and name (e.g. rbd, pool/image). */
  network: { protocol: string; name: string | undefined } | undefined;
  /** `<driver type>` (qcow2, raw), or what qemu-img found when the XML does not say. */
  format: string | undefined;
  /** Size the guest sees, in bytes; undefined when unknown (empty cdrom, unreachable network disk). */
  virtualSize: number | undefined;
  readonly: boolean;
  /** A cdrom or floppy with no medium inserted. */
  empty: boolean;
  /**
   * The name this disk's images carry in a store: the image file's base name without its
   * extension, or the LV's name (docs/design.md §4.1). Undefined for removable media.
   */
  storeName: string | undefined;
}

export interface Server {
  name: string;
  uuid: string;
  /** libvirt's numeric id while active. */
  id: number | undefined;
  state: DomainState;
  persistent: boolean;
  autostart: boolean;
  disks: ServerDisk[];
}

/**
 * The store disk name of a source path. Files lose their extension; LVs appear as
 * /dev/<vg>/<lv> (the LV name) or /dev/mapper/<vg>-<lv> (device-mapper doubles each '-' inside
 * a name, so a single '-' separates VG and LV).
 */
export function storeDiskName(path: string, sourceType: string): string {
  const base = basename(path);
  if (sourceType === 'block') {
    if (path.startsWith('/dev/mapper/')) {
      const m = /^(?:[^-]|--)+-((?:[^-]|--)+)$/.exec(base);
      if (m?.[1]) return m[1].replace(/--/g, '-');
    }
    return base;
  }
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}

function diskFromXml(xml: DomainXml): Array<ServerDisk & { element: unknown }> {
  return xml.disks().map((d) => {
    const source = xml.child(d.element, 'source');
    const network =
      d.type === 'network' && source
        ? {
            protocol: source.getAttribute('protocol') ?? 'unknown',
            name: source.getAttribute('name') || undefined,
          }
        : undefined;
    const removable = d.device === 'cdrom' || d.device === 'floppy';
    return {
      target: d.target,
      bus: d.bus,
      device: d.device,
      sourceType: d.type,
      path: d.path,
      pool: d.pool,
      volume: d.volume,
      network,
      format: d.format,
      virtualSize: undefined,
      readonly: d.readonly,
      empty: removable && !d.path && !d.volume && !network,
      storeName: undefined,
      element: d.element,
    };
  });
}

async function resolveVolumes(virsh: Virsh, disks: ServerDisk[]): Promise<void> {
  const vols = disks.filter((d) => d.sourceType === 'volume' && d.pool && d.volume && !d.path);
  if (vols.length === 0) return;
  const results = await virsh.batch(
    vols.map((d) => ['vol-path', '--pool', d.pool ?? '', '--vol', d.volume ?? '']),
  );
  vols.forEach((d, i) => {
    const r = results[i];
    if (r?.ok) d.path = r.stdout.trim() || undefined;
  });
}

function finishDisk(d: ServerDisk): void {
  if (d.device === 'cdrom' || d.device === 'floppy') return;
  if (d.sourceType === 'volume' && d.volume) {
    d.storeName = storeDiskName(d.volume, 'file');
  } else if (d.path) {
    d.storeName = storeDiskName(d.path, d.sourceType);
  } else if (d.network?.name) {
    d.storeName = storeDiskName(d.network.name, 'file');
  }
}

/** What the `list` filters say of every domain; a state missing is one the filters do not name. */
interface DomainFacts {
  names: string[];
  persistent: Set<string>;
  autostart: Set<string>;
  state: Map<string, DomainState>;
}

/** Six lists in one virsh run; the states of the three filters, the rarer ones come from domstate. */
const FACT_LISTS: ReadonlyArray<readonly string[]> = [
  ['list', '--all', '--name'],
  ['list', '--all', '--persistent', '--name'],
  ['list', '--all', '--autostart', '--name'],
  ['list', '--state-running', '--name'],
  ['list', '--state-paused', '--name'],
  ['list', '--state-shutoff', '--name'],
];
const LISTED_STATES: ReadonlyArray<[number, DomainState]> = [
  [3, 'running'],
  [4, 'paused'],
  [5, 'shut off'],
];

function nameLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

async function domainFacts(virsh: Virsh): Promise<DomainFacts> {
  const results = await virsh.batch(FACT_LISTS);
  const lists = results.map((r, i) => {
    if (!r.ok) throw batchError(FACT_LISTS[i] as readonly string[], r);
    return nameLines(r.stdout);
  });
  const state = new Map<string, DomainState>();
  for (const [i, s] of LISTED_STATES) for (const n of lists[i] ?? []) state.set(n, s);
  return {
    names: (lists[0] ?? []).sort(),
    persistent: new Set(lists[1]),
    autostart: new Set(lists[2]),
    state,
  };
}

/** The states the list filters do not name (in shutdown, crashed, pmsuspended, …): one domstate each. */
async function otherStates(virsh: Virsh, names: string[], facts: DomainFacts): Promise<void> {
  const rest = names.filter((n) => !facts.state.has(n));
  if (rest.length === 0) return;
  const results = await virsh.batch(rest.map((n) => ['domstate', '--domain', n]));
  rest.forEach((n, i) => {
    const r = results[i];
    if (r?.ok) facts.state.set(n, parseDomainState(r.stdout));
  });
}

async function readDisks(virsh: Virsh, name: string, xml: DomainXml, log: Logger): Promise<ServerDisk[]> {
  const disks: ServerDisk[] = diskFromXml(xml).map(({ element: _e, ...d }) => d);
  await resolveVolumes(virsh, disks);
  for (const d of disks) {
    if (!d.path || d.empty) {
      finishDisk(d);
      continue;
    }
    let readable = true;
    try {
      d.virtualSize = await localVirtualSize(d.path, d.format);
    } catch (e) {
      readable = false;
      log.verbose('cannot read disk image', { server: name, disk: d.target, path: d.path, err: e });
    }
    // Formats other than raw and qcow2, or no <driver type>: qemu-img reads the image (-U).
    if (readable && (d.virtualSize === undefined || d.format === undefined)) {
      try {
        const img = await qemuImgInfo(d.path, { format: d.format, log });
        d.virtualSize ??= img.virtualSize;
        d.format ??= img.format;
      } catch (e) {
        log.verbose('cannot read disk image', { server: name, disk: d.target, path: d.path, err: e });
      }
    }
    finishDisk(d);
  }
  return disks;
}

async function buildServer(
  virsh: Virsh,
  name: string,
  dump: BatchResult,
  facts: DomainFacts,
  log: Logger,
): Promise<Server> {
  if (!dump.ok) throw batchError(['dumpxml', name], dump);
  const xml = DomainXml.parse(dump.stdout);
  // A running domain's live XML carries libvirt's id on its root element.
  const id = xml.root.getAttribute('id');
  return {
    name,
    uuid: xml.uuid ?? '',
    id: id && /^\d+$/.test(id) ? Number(id) : undefined,
    state: facts.state.get(name) ?? 'no state',
    persistent: facts.persistent.has(name),
    autostart: facts.autostart.has(name),
    disks: await readDisks(virsh, name, xml, log),
  };
}

/** Servers built at once by describe(). */
const DESCRIBE_CONCURRENCY = 4;

/** `names` undefined: every domain the lists found. */
async function describe(
  virsh: Virsh,
  names: string[] | undefined,
  log: Logger,
  skipVanished: boolean,
): Promise<Server[]> {
  const facts = await domainFacts(virsh);
  const wanted = names ?? facts.names;
  const dumps = await virsh.batch(wanted.map((n) => ['dumpxml', '--domain', n]));
  // A domain defined after the lists ran has no state yet.
  await otherStates(
    virsh,
    wanted.filter((_n, i) => dumps[i]?.ok),
    facts,
  );
  // Built a few at a time: each reads its images' headers (and, for other formats, runs qemu-img),
  // so waits on the disk overlap while the number of open files and processes stays bounded.
  const built: Array<Server | undefined> = new Array(wanted.length);
  let next = 0;
  const worker = async () => {
    while (next < wanted.length) {
      const i = next++;
      const name = wanted[i] as string;
      const dump = dumps[i] ?? { ok: false, stdout: '', error: 'no output from virsh' };
      try {
        built[i] = await buildServer(virsh, name, dump, facts, log);
      } catch (e) {
        // A transient domain that stopped between "list" and "dumpxml" is simply gone.
        if (!(skipVanished && e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND')) throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DESCRIBE_CONCURRENCY, wanted.length) }, worker));
  return built.filter((s): s is Server => s !== undefined);
}

/** Every domain libvirt knows (running or not, persistent or transient), by name. */
export async function listServers(virsh: Virsh, options: { log?: Logger } = {}): Promise<Server[]> {
  return describe(virsh, undefined, options.log ?? silentLogger, true);
}

/** The names of every domain, running or not, sorted: one libvirt call, nothing described. */
export async function listServerNames(virsh: Virsh): Promise<string[]> {
  const out = await virsh.run(['list', '--all', '--name']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();
}

/** One domain; VIRT_DOMAIN_NOT_FOUND when there is none by that name. */
export async function getServer(virsh: Virsh, name: string, options: { log?: Logger } = {}): Promise<Server> {
  const [server] = await describe(virsh, [name], options.log ?? silentLogger, false);
  if (!server) throw virshError(['dumpxml', name], `error: failed to get domain '${name}'`, 1);
  return server;
}

/** Several domains by name, in the order asked; fails on the first unknown name. */
export async function getServers(
  virsh: Virsh,
  names: string[],
  options: { log?: Logger } = {},
): Promise<Server[]> {
  return describe(virsh, names, options.log ?? silentLogger, false);
}
