/**
 * `<devices>` under the definition rules: an allow-list of the devices a server needs to boot
 * and serve at the DR site (its disks from the store, NICs on libvirt networks and bridges,
 * graphics, video, input, sound, controllers, watchdog, balloon, an RNG fed by /dev/urandom, a
 * software TPM, …), each trimmed of what names a host path or runs a host program, following
 * libvirt's domain XML schema (formatdomain.html; domaincommon.rng lists every path-typed
 * attribute). Everything not on the list goes, including devices a later libvirt invents.
 * Character devices are in definition-chardevs.ts.
 */
import type { Element } from '@xmldom/xmldom';
import { chardevRules } from './definition-chardevs.ts';
import { type DefinitionAllowance, elementChildren, type RuleContext, textOf } from './definition-context.ts';
import type { DomainDisk } from './domain-xml.ts';

/** Devices kept as they are: nothing in them names a host path (domaincommon.rng). */
const PLAIN = new Set([
  'controller',
  'hub',
  'watchdog',
  'memballoon',
  'panic',
  'iommu',
  'vsock',
  'nvram',
  'sound',
]);
const CHARDEVS = new Set(['serial', 'parallel', 'console', 'channel']);

/** Devices that hand the guest something of the host's, removed unless allowed. */
const HOST_DEVICES: Record<string, { rule: DefinitionAllowance; reason: string }> = {
  emulator: { rule: 'emulator', reason: 'the DR host starts its own QEMU, not a program the sender names' },
  filesystem: { rule: 'filesystem', reason: 'passes a host directory or file through to the guest' },
  hostdev: { rule: 'hostdev', reason: 'passes a host device through to the guest' },
  redirdev: { rule: 'redirdev', reason: 'redirects a USB device from outside the guest' },
  redirfilter: { rule: 'redirdev', reason: 'belongs to USB redirection' },
  smartcard: { rule: 'smartcard', reason: 'passes the host’s smartcard reader or certificate files through' },
  shmem: { rule: 'shmem', reason: 'shares host memory or a host socket with the guest' },
  lease: { rule: 'lease', reason: 'names a lock file on the host' },
};

export function deviceRules(c: RuleContext): void {
  const devices = c.xml.child(c.xml.root, 'devices');
  if (!devices) return;
  for (const el of elementChildren(devices)) {
    const name = el.localName ?? el.nodeName;
    if (el.namespaceURI) {
      c.remove(el, {
        rule: 'namespaces',
        element: `devices/${el.nodeName}`,
        reason: 'an element of another namespace',
      });
    } else if (HOST_DEVICES[name]) {
      const r = HOST_DEVICES[name]!;
      c.remove(el, { rule: r.rule, element: `devices/${name}`, detail: hostDetail(c, el), reason: r.reason });
    } else if (name === 'disk') disk(c, el);
    else if (name === 'interface') networkInterface(c, el);
    else if (name === 'graphics') graphics(c, el);
    else if (name === 'video') renderNodes(c, el, 'devices/video');
    else if (name === 'input') input(c, el);
    else if (name === 'audio') audio(c, el);
    else if (name === 'rng') rng(c, el);
    else if (name === 'tpm') tpm(c, el);
    else if (name === 'memory') memoryDevice(c, el);
    else if (!PLAIN.has(name) && !CHARDEVS.has(name)) {
      c.remove(el, {
        rule: 'elements',
        element: `devices/${name}`,
        reason: 'not a device this rule knows to be safe',
      });
    }
  }
  chardevRules(c);
  seclabels(c, devices);
}

/** A short description of what a removed device named, for the report. */
function hostDetail(c: RuleContext, el: Element): string | undefined {
  const text = textOf(el);
  if (text && !c.xml.child(el, 'source')) return text.slice(0, 200);
  const source = c.xml.child(el, 'source');
  const attrs = source ? Array.from(source.attributes ?? []).map((a) => `${a.name}=${a.value}`) : [];
  const type = el.getAttribute('type');
  return [type ? `type ${type}` : '', ...attrs].filter(Boolean).join(', ').slice(0, 200) || undefined;
}

/** What a disk element may hold besides its source (formatdomain.html, "Hard drives…"). */
const DISK_CHILDREN = new Set([
  'driver',
  'source',
  'target',
  'boot',
  'readonly',
  'shareable',
  'transient',
  'serial',
  'wwn',
  'vendor',
  'product',
  'address',
  'alias',
  'blockio',
  'geometry',
  'iotune',
]);

function diskOf(c: RuleContext, el: Element): DomainDisk | undefined {
  return c.xml.disks().find((d) => d.element === el);
}

/** What the `<source>` of an rbd store's network disk keeps (libvirt formatdomain.html#hard-drives-floppy-disks-cdroms). */
const NETWORK_SOURCE_CHILDREN = new Set(['host', 'config', 'auth']);

/**
 * Only the store's images stay; optical and floppy drives stay empty (a missing ISO stops a
 * boot, and an inserted one is a host file the guest reads).
 */
function disk(c: RuleContext, el: Element): void {
  const d = diskOf(c, el);
  if (!d) return;
  const element = `devices/disk[${d.target || '?'}]`;
  if (d.device === 'cdrom' || d.device === 'floppy') {
    const media = [...c.xml.children(el, 'source'), ...c.xml.children(el, 'backingStore')];
    const hasMedia = media.some((m) => m.nodeName === 'backingStore' || m.attributes.length > 0);
    if (
      hasMedia &&
      c.mustChange({
        rule: 'disks',
        element,
        detail: d.path ?? d.type,
        reason: 'a medium in a drive is a host file; the drive is left empty',
      })
    ) {
      for (const m of media) el.removeChild(m);
      el.setAttribute('type', 'file');
    }
  } else if (!c.facts.isStoreImage(d)) {
    c.remove(el, {
      rule: 'disks',
      element,
      detail: d.path ?? d.volume ?? d.type,
      reason: 'is not one of the store’s images',
    });
    return;
  }
  // An rbd store's image is a network disk: its cephx user and secret (`<auth>`) and the
  // cluster's monitors or configuration file (`<source>`'s `<host>`, `<config>`) are how it is reached.
  const network = el.getAttribute('type') === 'network' && c.facts.isStoreImage(d);
  for (const child of elementChildren(el)) {
    if (DISK_CHILDREN.has(child.nodeName) || (network && child.nodeName === 'auth')) continue;
    if (child.nodeName === 'backingStore' && c.facts.isStoreImage(d)) {
      // A store image is raw and stands alone; the boot gives it its own chain (an overlay).
      el.removeChild(child);
      continue;
    }
    c.remove(child, {
      rule: 'disks',
      element: `${element}/${child.nodeName}`,
      reason: 'not part of a store image',
    });
  }
  for (const source of c.xml.children(el, 'source')) {
    for (const s of elementChildren(source)) {
      if (s.nodeName === 'seclabel' || (network && NETWORK_SOURCE_CHILDREN.has(s.nodeName))) continue;
      source.removeChild(s);
    }
  }
}

/** What an interface of an allowed type may hold (no target device, script, backend, ROM file). */
const INTERFACE_CHILDREN = new Set([
  'mac',
  'source',
  'model',
  'driver',
  'virtualport',
  'bandwidth',
  'vlan',
  'link',
  'mtu',
  'boot',
  'rom',
  'address',
  'alias',
  'filterref',
  'tune',
  'coalesce',
  'guest',
  'ip',
  'route',
  'acpi',
  'teaming',
  'port',
]);

/** NICs on a libvirt network or a host bridge, or user-mode networking: nothing else. */
function networkInterface(c: RuleContext, el: Element): void {
  const type = el.getAttribute('type') ?? '';
  const label = `devices/interface[${c.xml.child(el, 'mac')?.getAttribute('address') ?? type}]`;
  if (!['network', 'bridge', 'user'].includes(type)) {
    c.remove(el, {
      rule: 'interfaces',
      element: label,
      detail: `type ${type}`,
      reason:
        'only network, bridge and user interfaces stay (others run host scripts, open host devices or sockets, or take a host NIC)',
    });
    return;
  }
  for (const extra of c.xml.children(el, 'source').slice(1))
    c.remove(extra, { rule: 'interfaces', element: `${label}/source`, reason: 'a second <source>' });
  for (const child of elementChildren(el)) {
    if (!INTERFACE_CHILDREN.has(child.nodeName)) {
      c.remove(child, {
        rule: 'interfaces',
        element: `${label}/${child.nodeName}`,
        detail: child.getAttribute('path') ?? child.getAttribute('dev') ?? undefined,
        reason: 'names a host device, script, socket or log the DR host would use',
      });
    }
  }
  for (const rom of c.xml.children(el, 'rom')) romFile(c, rom, label);
}

/** A NIC's option ROM is loaded from a host file: only from the DR host's firmware directories. */
function romFile(c: RuleContext, rom: Element, label: string): void {
  const file = rom.getAttribute('file');
  if (
    file &&
    !c.isBootFile(file) &&
    c.mustChange({
      rule: 'boot-files',
      element: `${label}/rom`,
      detail: file,
      reason: 'a ROM image outside the DR host’s firmware directories',
    })
  )
    rom.removeAttribute('file');
}

/** VNC and SPICE on network addresses; no sockets at chosen paths, no host render nodes. */
function graphics(c: RuleContext, el: Element): void {
  const type = el.getAttribute('type') ?? '';
  const element = `devices/graphics[${type}]`;
  if (type !== 'vnc' && type !== 'spice') {
    c.remove(el, {
      rule: 'graphics',
      element,
      reason: 'only VNC and SPICE stay (others use the host’s display, GPU or D-Bus)',
    });
    return;
  }
  const socket = el.getAttribute('socket');
  if (
    socket &&
    c.mustChange({
      rule: 'graphics',
      element,
      detail: socket,
      reason: 'a socket at a host path the sender chose',
    })
  )
    el.removeAttribute('socket');
  for (const l of c.xml.children(el, 'listen')) {
    const t = l.getAttribute('type');
    if (t === 'socket' || l.hasAttribute('socket'))
      c.remove(l, {
        rule: 'graphics',
        element: `${element}/listen`,
        detail: l.getAttribute('socket') ?? undefined,
        reason: 'a socket at a host path the sender chose',
      });
  }
  renderNodes(c, el, element);
}

/** `rendernode` attributes anywhere inside (gl, acceleration): a host GPU device path. */
function renderNodes(c: RuleContext, el: Element, element: string): void {
  for (const node of Array.from(el.getElementsByTagName('*'))) {
    const path = node.getAttribute('rendernode');
    if (
      path &&
      c.mustChange({
        rule: 'graphics',
        element: `${element}/${node.nodeName}`,
        detail: path,
        reason: 'a host GPU device',
      })
    )
      node.removeAttribute('rendernode');
  }
}

function input(c: RuleContext, el: Element): void {
  const type = el.getAttribute('type') ?? '';
  if (!['mouse', 'tablet', 'keyboard'].includes(type))
    c.remove(el, {
      rule: 'input',
      element: `devices/input[${type}]`,
      detail: hostDetail(c, el),
      reason: 'passes a host input device through',
    });
}

/** Audio backends other than none and spice open host devices, servers or files: made `none`. */
function audio(c: RuleContext, el: Element): void {
  const type = el.getAttribute('type') ?? '';
  if (type === 'none' || type === 'spice') return;
  if (
    !c.mustChange({
      rule: 'audio',
      element: `devices/audio[${type}]`,
      detail: hostDetail(c, el),
      reason: 'plays or records through the host; the backend became none',
    })
  )
    return;
  for (const a of Array.from(el.attributes)) if (a.name !== 'id') el.removeAttribute(a.name);
  for (const child of elementChildren(el)) el.removeChild(child);
  el.setAttribute('type', 'none');
}

/** Random numbers from the host's /dev/urandom (or /dev/random), or QEMU's own. */
function rng(c: RuleContext, el: Element): void {
  const backend = c.xml.child(el, 'backend');
  const model = backend?.getAttribute('model');
  const path = textOf(backend);
  const ok =
    model === 'builtin' ||
    (model === 'random' && (path === undefined || path === '/dev/urandom' || path === '/dev/random'));
  if (!ok)
    c.remove(el, {
      rule: 'rng',
      element: 'devices/rng',
      detail: `backend ${model ?? 'none'}${path ? ` ${path}` : ''}`,
      reason: 'reads from a host device or socket other than /dev/urandom',
    });
}

/** A software TPM (swtpm, its state where libvirt keeps it); not the host's TPM. */
function tpm(c: RuleContext, el: Element): void {
  const backend = c.xml.child(el, 'backend');
  const type = backend?.getAttribute('type');
  if (type !== 'emulator') {
    c.remove(el, {
      rule: 'tpm',
      element: 'devices/tpm',
      detail: `backend ${type ?? 'none'}`,
      reason: 'passes the host’s TPM or an outside TPM socket through',
    });
    return;
  }
  for (const s of c.xml.children(backend!, 'source'))
    c.remove(s, {
      rule: 'tpm',
      element: 'devices/tpm/backend/source',
      detail: s.getAttribute('path') ?? undefined,
      reason: 'TPM state at a host path the sender chose',
    });
}

/** Memory devices backed by a host file (nvdimm, virtio-pmem) map that file into the guest. */
function memoryDevice(c: RuleContext, el: Element): void {
  const source = c.xml.child(el, 'source');
  const path = source ? textOf(c.xml.child(source, 'path')) : undefined;
  if (path)
    c.remove(el, {
      rule: 'memory-devices',
      element: `devices/memory[${el.getAttribute('model') ?? ''}]`,
      detail: path,
      reason: 'maps a host file into the guest',
    });
}

/**
 * Per-device `<seclabel>`s relax or fix how the DR host confines the domain (relabel='no' on a
 * host file, a static label): the DR host decides. Haven's own, on an overlay's backing file, is
 * added after the rule.
 */
function seclabels(c: RuleContext, devices: Element): void {
  for (const s of Array.from(devices.getElementsByTagName('seclabel'))) {
    c.remove(s, {
      rule: 'seclabel',
      element: `devices/${s.parentNode?.parentNode?.nodeName ?? ''}/${s.parentNode?.nodeName ?? ''}/seclabel`,
      detail: [
        s.getAttribute('model'),
        s.getAttribute('relabel') === 'no' ? 'relabel=no' : s.getAttribute('type'),
      ]
        .filter(Boolean)
        .join(' '),
      reason: 'security labels are the DR host’s to choose',
    });
  }
}
