/**
 * Rewriting a DR definition (`definitions/<server>.xml`, docs/design.md §4.5) into the domain XML that
 * activation, a drill or a restore starts or defines (the recipe is boot.ts; what the definition
 * may hold at all is core/definition-rules.ts). Pure: XML in, XML out.
 *
 * The definition's disks point at the store's `_1` images as named when it was written; each is
 * matched to a store disk by the image's base name (`<server>_<disk>_<seq>.raw`), so a store that
 * was moved, or a definition an operator edited, still maps.
 */
import { basename } from 'node:path';
import type { Element } from '@xmldom/xmldom';
import type { DomainDisk, DomainXml, NetworkDiskSource } from '../core/domain-xml.ts';
import { recoveryError } from './errors.ts';

export type { Relocation } from '../core/definition-context.ts';

/** Namespace of the marker Haven puts on every domain it starts from a store. */
export const ACTIVATION_NS = 'urn:haven:activation:1';
/** Namespace of the primary guard (guard.ts): the server runs at the DR site. */
export const DR_ACTIVE_NS = 'urn:haven:dr-active:1';

/** The store disk a domain disk's image belongs to, or undefined (a disk not from this store). */
export function storeDiskOf(
  server: string,
  path: string | undefined,
  disks: readonly string[],
): string | undefined {
  if (!path) return undefined;
  const base = basename(path).replace(/\.raw$/, '');
  const prefix = `${server}_`;
  if (!base.startsWith(prefix)) return undefined;
  const rest = base.slice(prefix.length);
  const cut = rest.lastIndexOf('_');
  if (cut <= 0) return undefined;
  const seq = rest.slice(cut + 1);
  if (!/^(\d+|incomplete)$/.test(seq)) return undefined;
  const disk = rest.slice(0, cut);
  return disks.includes(disk) ? disk : undefined;
}

export interface MappedDisk {
  disk: DomainDisk;
  /** Store disk name. */
  name: string;
}

/**
 * The definition's disks that come from the store, each with its store disk name. A store disk
 * the definition does not use is an error: the copy would boot without it.
 */
export function mapDisks(xml: DomainXml, server: string, disks: readonly string[]): MappedDisk[] {
  const out: MappedDisk[] = [];
  for (const d of xml.disks()) {
    if (d.device !== 'disk' && d.device !== 'lun') continue;
    const name = storeDiskOf(server, d.path, disks);
    if (name !== undefined && !out.some((m) => m.name === name)) out.push({ disk: d, name });
  }
  const missing = disks.filter((n) => !out.some((m) => m.name === n));
  if (missing.length) {
    throw recoveryError(
      'RECOVERY_DEFINITION_MISMATCH',
      'integrity',
      `the definition of ${server} does not use store disk(s) ${missing.join(', ')}`,
      {
        hint: `Edit definitions/${server}.xml so every disk points at its store image (<server>_<disk>_1.raw).`,
        details: { server, missing },
      },
    );
  }
  return out;
}

/**
 * Boots a disk through a qcow2 overlay whose backing file is the raw generation image. libvirt
 * is told the backing chain (so it never probes a raw file) and not to relabel the generation:
 * the DAC driver would otherwise chown a store image to the QEMU user.
 */
export function setOverlaySource(xml: DomainXml, d: DomainDisk, overlay: string, backing: string): void {
  const bsrc = xml.doc.createElement('source');
  bsrc.setAttribute('file', backing);
  const label = xml.doc.createElement('seclabel');
  label.setAttribute('model', 'dac');
  label.setAttribute('relabel', 'no');
  bsrc.appendChild(label);
  setOverlayOver(xml, d, overlay, 'file', bsrc);
}

/**
 * Boots a disk through a qcow2 overlay whose backing store is a block device holding the raw
 * generation (an LVM store's logical volume). Its node belongs to root:disk, mode 0660, so the
 * QEMU user could not open it: here libvirt relabels it (DAC: the node's owner for the domain's
 * life, restored when it ends, formatdomain.html "seclabel"). That changes the node's owner,
 * never the volume's bytes; QEMU opens the backing store read-only (`host_device`).
 */
export function setOverlayBlockSource(xml: DomainXml, d: DomainDisk, overlay: string, device: string): void {
  const bsrc = xml.doc.createElement('source');
  bsrc.setAttribute('dev', device);
  setOverlayOver(xml, d, overlay, 'block', bsrc);
}

/**
 * Boots a disk through a qcow2 overlay whose backing image is an RBD image (an rbd store): the
 * backing store is a network source with its `<auth>` inside it (libvirt formatdomain.html,
 * "backingStore"), so QEMU reads the generation straight from the cluster and writes only the
 * overlay.
 */
export function setOverlayNetworkSource(
  xml: DomainXml,
  d: DomainDisk,
  overlay: string,
  backing: NetworkDiskSource,
): void {
  setOverlayOver(xml, d, overlay, 'network', xml.networkSource(backing, undefined, true));
}

/** The disk becomes the qcow2 `overlay` over a raw backing store of `type` with `backingSource`. */
function setOverlayOver(
  xml: DomainXml,
  d: DomainDisk,
  overlay: string,
  type: 'file' | 'block' | 'network',
  backingSource: Element,
): void {
  const el = d.element;
  const doc = xml.doc;
  el.setAttribute('type', 'file');
  for (const old of [
    ...xml.children(el, 'source'),
    ...xml.children(el, 'backingStore'),
    ...xml.children(el, 'auth'),
  ])
    el.removeChild(old);
  const driver = xml.ensureChild(el, 'driver');
  driver.setAttribute('name', 'qemu');
  driver.setAttribute('type', 'qcow2');
  const src = doc.createElement('source');
  src.setAttribute('file', overlay);
  const bs = doc.createElement('backingStore');
  bs.setAttribute('type', type);
  const fmt = doc.createElement('format');
  fmt.setAttribute('type', 'raw');
  bs.appendChild(fmt);
  bs.appendChild(backingSource);
  bs.appendChild(doc.createElement('backingStore'));
  el.insertBefore(bs, driver.nextSibling);
  el.insertBefore(src, driver.nextSibling);
}

/** Points a disk at a restored image of the given format. */
export function setImageSource(xml: DomainXml, d: DomainDisk, path: string, format: 'raw' | 'qcow2'): void {
  xml.setDiskSource(d, { file: path });
  xml.ensureChild(d.element, 'driver').setAttribute('type', format);
}

/** Character devices: serial, console, parallel and channel. */
const CHARDEVS = ['serial', 'console', 'parallel', 'channel'] as const;

interface Chardev {
  element: Element;
  device: (typeof CHARDEVS)[number];
  type: string;
  source: Element | undefined;
  log: Element | undefined;
}

function chardevs(xml: DomainXml): Chardev[] {
  const out: Chardev[] = [];
  for (const device of CHARDEVS) {
    for (const element of xml.deviceElements(device)) {
      const source = xml.child(element, 'source');
      out.push({
        element,
        device,
        type: element.getAttribute('type') ?? 'pty',
        source,
        log: xml.child(element, 'log'),
      });
    }
  }
  return out;
}

/**
 * A drill's consoles: serial port 0 (and its console twin) logs to `consoleLog`, every other
 * serial or parallel port is connected to nothing, and channels lose fixed socket paths (libvirt
 * makes per-domain ones), so nothing the drill opens can clash with the running primary or DR
 * copy on the same host. A guest without serial port 0 gets one.
 */
export function isolateChardevs(xml: DomainXml, consoleLog: string): void {
  let port0 = false;
  for (const c of chardevs(xml)) {
    const target = xml.child(c.element, 'target');
    const port = target?.getAttribute('port') ?? '0';
    const targetType = target?.getAttribute('type');
    const isPort0 =
      (c.device === 'serial' && port === '0') ||
      (c.device === 'console' &&
        (targetType === undefined || targetType === null || targetType === 'serial') &&
        port === '0');
    if (c.log) c.element.removeChild(c.log);
    if (c.device === 'channel') {
      if (c.type === 'unix' && c.source) c.source.removeAttribute('path');
      else if (c.type === 'file' || c.type === 'pipe' || c.type === 'dev') xml.removeDevice(c.element);
      continue;
    }
    for (const s of xml.children(c.element, 'source')) c.element.removeChild(s);
    for (const p of xml.children(c.element, 'protocol')) c.element.removeChild(p);
    if (isPort0) {
      c.element.setAttribute('type', 'file');
      const src = xml.doc.createElement('source');
      src.setAttribute('path', consoleLog);
      c.element.insertBefore(src, c.element.firstChild);
      if (c.device === 'serial') port0 = true;
    } else if (c.device === 'console' && c.type === 'pty') {
      c.element.setAttribute('type', 'pty');
    } else {
      c.element.setAttribute('type', 'null');
    }
  }
  if (!port0) {
    const esc = consoleLog.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;');
    xml.addDeviceXml(`<serial type='file'><source path='${esc}'/><target port='0'/></serial>`);
  }
}

/**
 * A drill must not disturb production: no network interfaces (unless the drill maps them to
 * networks of its own, `keepInterfaces`), no host devices (a PCI device can be given to one
 * domain only), graphics on a free port.
 */
export function isolateDevices(xml: DomainXml, o: { keepInterfaces?: boolean } = {}): void {
  if (!o.keepInterfaces) xml.removeInterfaces();
  for (const el of xml.deviceElements('hostdev')) xml.removeDevice(el);
  for (const el of xml.deviceElements('redirdev')) xml.removeDevice(el);
  for (const g of xml.deviceElements('graphics')) {
    if (g.getAttribute('port') !== null || g.getAttribute('autoport') === 'no') {
      g.removeAttribute('port');
      g.removeAttribute('tlsPort');
      g.removeAttribute('websocket');
      g.setAttribute('autoport', 'yes');
    }
  }
}

/** The `<os><nvram>` file (UEFI variables), if the domain has one. */
export function nvramPath(xml: DomainXml): string | undefined {
  const os = xml.child(xml.root, 'os');
  const nv = os ? xml.child(os, 'nvram') : undefined;
  return nv?.textContent?.trim() || undefined;
}

export function setNvramPath(xml: DomainXml, path: string): void {
  const os = xml.child(xml.root, 'os');
  const nv = os ? xml.child(os, 'nvram') : undefined;
  if (nv) nv.textContent = path;
}

/**
 * Marks the domain as started by Haven from a store (operators and cleanup can tell) and drops
 * a primary guard a definition may have carried over from its source (guard.ts): that marker
 * belongs to the primary's own definition, not to the copy.
 */
export function markStartedByHaven(
  xml: DomainXml,
  facts: { purpose: 'activation' | 'drill' | 'restore'; store: string; server: string; generation: string },
): void {
  const metadata = xml.ensureChild(xml.root, 'metadata');
  for (let n = metadata.firstChild; n; ) {
    const next = n.nextSibling;
    const ns = n.nodeType === 1 ? (n as Element).namespaceURI : null;
    if (ns === DR_ACTIVE_NS || ns === ACTIVATION_NS) metadata.removeChild(n);
    n = next;
  }
  const el = xml.doc.createElementNS(ACTIVATION_NS, 'haven:started');
  el.setAttribute('purpose', facts.purpose);
  el.setAttribute('store', facts.store);
  el.setAttribute('server', facts.server);
  el.setAttribute('generation', facts.generation);
  metadata.appendChild(el);
}
