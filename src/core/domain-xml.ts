/**
 * libvirt domain XML (https://libvirt.org/formatdomain.html), parsed and written with a DOM so
 * that every element Haven does not understand survives a round trip untouched: an operator's
 * tuning, metadata from other tools, devices we never heard of.
 *
 * Shared by virt/ (listing disks), store/ (writing DR definitions, docs/design.md §4.5) and recovery/
 * (drills and activation rewrite names, networks and disk sources), which is why it lives in
 * core/: those components may not import each other.
 */
import { randomUUID } from 'node:crypto';
import { DOMParser, type Document, type Element, XMLSerializer } from '@xmldom/xmldom';
import { HavenError } from './errors.ts';

export class DomainXmlError extends HavenError {
  constructor(message: string, cause?: unknown) {
    super('DOMAIN_XML_INVALID', message, {
      kind: 'usage',
      cause,
      hint: 'Check the domain XML (virsh dumpxml, or the definition file in the store) for syntax errors.',
    });
  }
}

/** A parser that throws on errors instead of printing them, and ignores warnings. */
function parseXml(xml: string): Document {
  return new DOMParser({
    onError: (level, message) => {
      if (level !== 'warning') throw new Error(message);
    },
  }).parseFromString(xml, 'text/xml');
}

export type DiskDevice = 'disk' | 'cdrom' | 'floppy' | 'lun';

/** One `<disk>` element, as the parts Haven cares about. */
export interface DomainDisk {
  /** `<disk type>`: file, block, volume, network, dir, nvme, vhostuser. */
  type: string;
  device: DiskDevice;
  /** `<target dev>`: vda, sda, hdc. */
  target: string;
  /** `<target bus>`: virtio, sata, scsi, ide, usb. */
  bus: string | undefined;
  /** `<driver type>`: qcow2, raw. */
  format: string | undefined;
  /**
   * `<source file>` or `<source dev>`, when the disk has one; for an RBD network disk
   * (`<source protocol='rbd' name='pool/image'>`) `rbd:pool/image`, QEMU's name for it.
   */
  path: string | undefined;
  /** `<source pool volume>` for type='volume'. */
  pool: string | undefined;
  volume: string | undefined;
  readonly: boolean;
  /** The element itself, for callers that rewrite it. */
  element: Element;
}

/** A libvirt network disk on an RBD image (recovery and the rbd store's definitions). */
export interface NetworkDiskSource {
  protocol: 'rbd';
  /** `pool/image` (or `pool/image@snapshot` is not used: Haven boots clones). */
  name: string;
  hosts: { name: string; port?: number }[];
  config?: string;
  auth: { username: string; secretUsage: string };
}

export type DiskSourceSpec = { file: string } | { dev: string } | { network: NetworkDiskSource };

/** `rbd:pool/image` for `<disk type='network'><source protocol='rbd' name='pool/image'>`. */
function rbdPath(el: Element, source: Element | undefined): string | undefined {
  if (el.getAttribute('type') !== 'network' || source?.getAttribute('protocol') !== 'rbd') return undefined;
  const name = source.getAttribute('name');
  return name ? `rbd:${name}` : undefined;
}

export class DomainXml {
  private constructor(readonly doc: Document) {}

  static parse(xml: string): DomainXml {
    let doc: Document;
    try {
      doc = parseXml(xml);
    } catch (e) {
      throw new DomainXmlError(`domain XML does not parse: ${(e as Error).message.split('\n')[0]}`, e);
    }
    if (doc.documentElement?.nodeName !== 'domain') {
      throw new DomainXmlError('domain XML has no <domain> root element');
    }
    return new DomainXml(doc);
  }

  toString(): string {
    return new XMLSerializer().serializeToString(this.doc);
  }

  get root(): Element {
    return this.doc.documentElement!;
  }

  /** Direct child element of `parent` named `name` (the first one). */
  child(parent: Element, name: string): Element | undefined {
    for (let n = parent.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 1 && n.nodeName === name) return n as Element;
    }
    return undefined;
  }

  children(parent: Element, name: string): Element[] {
    const out: Element[] = [];
    for (let n = parent.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 1 && n.nodeName === name) out.push(n as Element);
    }
    return out;
  }

  /** Returns the child, creating it (appended) when missing. */
  ensureChild(parent: Element, name: string): Element {
    const found = this.child(parent, name);
    if (found) return found;
    const el = this.doc.createElement(name);
    parent.appendChild(el);
    return el;
  }

  get name(): string {
    return this.child(this.root, 'name')?.textContent?.trim() ?? '';
  }

  set name(value: string) {
    this.ensureChild(this.root, 'name').textContent = value;
  }

  get uuid(): string | undefined {
    return this.child(this.root, 'uuid')?.textContent?.trim() || undefined;
  }

  set uuid(value: string | undefined) {
    const el = this.child(this.root, 'uuid');
    if (value === undefined) {
      if (el) this.root.removeChild(el);
    } else {
      this.ensureChild(this.root, 'uuid').textContent = value;
    }
  }

  /** Gives the domain a fresh UUID (restore under a new name, drills). */
  newUuid(): string {
    const id = randomUUID();
    this.uuid = id;
    return id;
  }

  get devices(): Element {
    return this.ensureChild(this.root, 'devices');
  }

  disks(): DomainDisk[] {
    return this.children(this.devices, 'disk').map((el) => {
      const source = this.child(el, 'source');
      const target = this.child(el, 'target');
      const driver = this.child(el, 'driver');
      return {
        type: el.getAttribute('type') ?? 'file',
        device: (el.getAttribute('device') ?? 'disk') as DiskDevice,
        target: target?.getAttribute('dev') ?? '',
        bus: target?.getAttribute('bus') ?? undefined,
        format: driver?.getAttribute('type') ?? undefined,
        path: source?.getAttribute('file') || source?.getAttribute('dev') || rbdPath(el, source) || undefined,
        pool: source?.getAttribute('pool') || undefined,
        volume: source?.getAttribute('volume') || undefined,
        readonly: Boolean(this.child(el, 'readonly')),
        element: el,
      };
    });
  }

  /**
   * Points a disk at a raw image file or a block device (a DR image), dropping what belonged to
   * the old source: its backing chain, volume reference and any qcow2 driver options.
   */
  setDiskSource(disk: DomainDisk, source: DiskSourceSpec): void {
    const el = disk.element;
    el.setAttribute('type', 'file' in source ? 'file' : 'dev' in source ? 'block' : 'network');
    for (const old of [
      ...this.children(el, 'source'),
      ...this.children(el, 'backingStore'),
      ...this.children(el, 'auth'),
    ]) {
      el.removeChild(old);
    }
    const src = this.doc.createElement('source');
    if ('file' in source) src.setAttribute('file', source.file);
    else if ('dev' in source) src.setAttribute('dev', source.dev);
    else this.fillNetworkSource(el, src, source.network);
    const driver = this.ensureChild(el, 'driver');
    driver.setAttribute('name', 'qemu');
    driver.setAttribute('type', 'raw');
    // <source> goes right after <driver>, as libvirt writes it.
    el.insertBefore(src, driver.nextSibling);
  }

  /**
   * An RBD image as libvirt boots it: `<source protocol='rbd' name='pool/image'>` with its
   * monitors or the Ceph configuration file, and `<auth>` naming the cephx user and the libvirt
   * secret (by usage) that holds its key. `<auth>` sits before `<source>`, as libvirt writes it.
   */
  private fillNetworkSource(el: Element, src: Element, n: NetworkDiskSource): void {
    this.networkSource(n, src);
    el.insertBefore(this.cephAuth(n), el.firstChild);
  }

  /**
   * `<source protocol='rbd' name>` with the monitors or the Ceph configuration file; with
   * `authInside` (a backing store's source, libvirt formatdomain.html "backingStore") its `<auth>`
   * too, which a disk's own source keeps beside it instead (fillNetworkSource).
   */
  networkSource(n: NetworkDiskSource, src = this.doc.createElement('source'), authInside = false): Element {
    src.setAttribute('protocol', n.protocol);
    src.setAttribute('name', n.name);
    for (const h of n.hosts) {
      const host = this.doc.createElement('host');
      host.setAttribute('name', h.name);
      if (h.port !== undefined) host.setAttribute('port', String(h.port));
      src.appendChild(host);
    }
    if (n.config) {
      const config = this.doc.createElement('config');
      config.setAttribute('file', n.config);
      src.appendChild(config);
    }
    if (authInside) src.appendChild(this.cephAuth(n));
    return src;
  }

  private cephAuth(n: NetworkDiskSource): Element {
    const auth = this.doc.createElement('auth');
    auth.setAttribute('username', n.auth.username);
    const secret = this.doc.createElement('secret');
    secret.setAttribute('type', 'ceph');
    secret.setAttribute('usage', n.auth.secretUsage);
    auth.appendChild(secret);
    return auth;
  }

  /**
   * Ejects every optical drive: removes its `<source>` so the DR copy boots even though the ISO
   * it had inserted does not exist at the DR site (docs/design.md §4.5).
   */
  ejectOpticalDrives(): number {
    let n = 0;
    for (const d of this.disks()) {
      if (d.device !== 'cdrom') continue;
      for (const s of this.children(d.element, 'source')) d.element.removeChild(s);
      for (const b of this.children(d.element, 'backingStore')) d.element.removeChild(b);
      d.element.setAttribute('type', 'file');
      n++;
    }
    return n;
  }

  /** Removes every `<interface>`: drills boot with no network so they cannot disturb production. */
  removeInterfaces(): number {
    const ifs = this.children(this.devices, 'interface');
    for (const i of ifs) this.devices.removeChild(i);
    return ifs.length;
  }

  /** Elements of `<devices>` with this name (serial, console, channel, graphics…). */
  deviceElements(name: string): Element[] {
    return this.children(this.devices, name);
  }

  /** Removes a `<devices>` child element. */
  removeDevice(el: Element): void {
    this.devices.removeChild(el);
  }

  /** Appends a device element built from an XML fragment (e.g. a serial log for a drill). */
  addDeviceXml(fragment: string): Element {
    let frag: Document;
    try {
      frag = parseXml(fragment);
    } catch (e) {
      throw new DomainXmlError(`device XML does not parse: ${(e as Error).message.split('\n')[0]}`, e);
    }
    const el = this.doc.importNode(frag.documentElement!, true) as Element;
    this.devices.appendChild(el);
    return el;
  }
}
