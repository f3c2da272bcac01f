/**
 * Character devices (serial, parallel, console, channel) under the definition rules. A sender
 * must not choose a host file that QEMU or virtlogd (root) writes, a socket QEMU binds or
 * connects to, a host device, a pipe, or a network peer of the DR host. What stays:
 *
 * - types that touch nothing on the host: null, vc, pty, spicevmc, spiceport, qemu-vdagent;
 * - file-backed devices and `<log file>`s, renamed to files Haven names in the domain's own
 *   directory (`serial0.log`, `console0-log.log`, …): never a name the sender picked, so never
 *   one of Haven's own files beside them (overlays, the domain XML);
 * - unix sockets QEMU listens on (mode bind), renamed the same way into the sockets directory;
 *   virtio channels lose their socket path instead, so libvirt names it in its own directory.
 *
 * Anything else becomes a pty (serial, console: `virsh console` still works) or null (parallel),
 * or is removed (channels). Devices that shared a path (a serial port and its console twin) keep
 * sharing the renamed one.
 */
import { join } from 'node:path';
import type { Element } from '@xmldom/xmldom';
import type { RuleContext } from './definition-context.ts';

const DEVICES = ['serial', 'parallel', 'console', 'channel'] as const;
type Chardev = (typeof DEVICES)[number];

/** Types whose backend is inside QEMU or the display: no host path, no host socket. */
const CONTAINED = new Set(['null', 'vc', 'pty', 'spicevmc', 'spiceport', 'qemu-vdagent']);

/** Longest unix socket path (sun_path holds 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

/** Haven's names for host files, one per device; a path shared by two devices stays shared. */
class Namer {
  private readonly byPath = new Map<string, string | undefined>();

  constructor(private readonly hf: RuleContext['facts']['hostFiles']) {}

  file(from: string, label: string): string {
    if (!this.byPath.has(from))
      this.byPath.set(from, join(this.hf.files, `${this.hf.prefix ?? ''}${label}.log`));
    return this.byPath.get(from) ?? from;
  }

  /** undefined when no name in the sockets directory fits a unix socket address. */
  socket(from: string, label: string): string | undefined {
    if (!this.byPath.has(from)) {
      const to = [`${this.hf.prefix ?? ''}${label}.sock`, `${label}.sock`]
        .map((n) => join(this.hf.sockets, n))
        .find((p) => Buffer.byteLength(p) <= MAX_SOCKET_PATH);
      this.byPath.set(from, to);
    }
    return this.byPath.get(from);
  }
}

export function chardevRules(c: RuleContext): void {
  const namer = new Namer(c.facts.hostFiles);
  // Channels that cannot stay go first, so that the names the others get never depend on them
  // (the rule gives the same result when applied again).
  c.xml.deviceElements('channel').forEach((el, i) => {
    dropChannel(c, el, `channel${i}`);
  });
  for (const kind of DEVICES) {
    c.xml.deviceElements(kind).forEach((el, i) => {
      const label = `${kind}${i}`;
      onlyFirst(c, el, label);
      logFile(c, el, label, namer);
      if (kind === 'channel') channel(c, el, label, namer);
      else portDevice(c, el, kind, label, namer);
    });
  }
}

/**
 * One `<source>` and one `<log>` per device: libvirt reads more than one source for some types
 * (udp has two), and the rule looks at the first.
 */
function onlyFirst(c: RuleContext, el: Element, label: string): void {
  for (const name of ['source', 'log']) {
    for (const extra of c.xml.children(el, name).slice(1)) {
      c.remove(extra, {
        rule: 'chardevs',
        element: `devices/${label}/${name}`,
        detail:
          extra.getAttribute('path') ?? extra.getAttribute('file') ?? extra.getAttribute('host') ?? undefined,
        reason: `a second <${name}>`,
      });
    }
  }
}

function sourcePath(c: RuleContext, el: Element): string | undefined {
  return c.xml.child(el, 'source')?.getAttribute('path') || undefined;
}

/**
 * Gives a host file Haven's name `to` (attribute `attr` of `holder`), unless the operator keeps
 * the sender's path for this server.
 */
function rename(
  c: RuleContext,
  holder: Element,
  attr: string,
  element: string,
  from: string,
  to: string,
): void {
  if (to === from) return;
  if (c.allows('chardevs')) {
    c.report.allowed.push({
      rule: 'chardevs',
      element,
      detail: from,
      reason: 'a host path the sender chose',
    });
    return;
  }
  holder.setAttribute(attr, to);
  if (!c.report.moved.some((m) => m.from === from)) c.report.moved.push({ from, to });
}

function logFile(c: RuleContext, el: Element, label: string, namer: Namer): void {
  const log = c.xml.child(el, 'log');
  const file = log?.getAttribute('file');
  if (log && file) rename(c, log, 'file', `devices/${label}/log`, file, namer.file(file, `${label}-log`));
}

/** Points a file or socket device at Haven's name for it. */
function renameSource(c: RuleContext, el: Element, label: string, from: string, to: string): void {
  const source = c.xml.child(el, 'source');
  if (source) rename(c, source, 'path', `devices/${label}`, from, to);
}

/**
 * What every kind of device keeps as it is or under Haven's name: the contained types and files.
 * False for the rest, which the caller decides on.
 */
function keptOrRenamed(c: RuleContext, el: Element, label: string, namer: Namer): boolean {
  const type = el.getAttribute('type') || 'pty';
  const path = sourcePath(c, el);
  if (type === 'pty') dropLiveState(c, el);
  else if (type === 'file' && path) renameSource(c, el, label, path, namer.file(path, label));
  else return CONTAINED.has(type);
  return true;
}

/** Serial, parallel and console ports. */
function portDevice(c: RuleContext, el: Element, kind: Chardev, label: string, namer: Namer): void {
  if (keptOrRenamed(c, el, label, namer)) return;
  const type = el.getAttribute('type') || 'pty';
  const path = sourcePath(c, el);
  const source = c.xml.child(el, 'source');
  if (type === 'unix' && path && source?.getAttribute('mode') === 'bind') {
    const to = namer.socket(path, label);
    if (to !== undefined) {
      renameSource(c, el, label, path, to);
      return;
    }
    if (
      c.mustChange({
        rule: 'chardevs',
        element: `devices/${label}`,
        detail: path,
        reason: `no socket name in ${c.facts.hostFiles.sockets} fits a unix socket address (${MAX_SOCKET_PATH} bytes); the port became a ${kind === 'parallel' ? 'null device' : 'pty'} (use a shorter store path to keep it)`,
      })
    )
      toContained(c, el, kind);
    return;
  }
  const what =
    path ??
    (source?.getAttribute('host')
      ? `${source.getAttribute('host')}:${source.getAttribute('service') ?? ''}`
      : undefined);
  if (
    c.mustChange({
      rule: 'chardevs',
      element: `devices/${label}`,
      detail: what ? `type ${type}, ${what}` : `type ${type}`,
      reason: `reaches outside QEMU (a host file, device, pipe, socket or network peer); the port became a ${kind === 'parallel' ? 'null device' : 'pty'}`,
    })
  )
    toContained(c, el, kind);
}

/** Removes a channel that is not virtio or reaches outside QEMU. */
function dropChannel(c: RuleContext, el: Element, label: string): void {
  const type = el.getAttribute('type') || 'pty';
  const target = c.xml.child(el, 'target')?.getAttribute('type');
  const path = sourcePath(c, el);
  if (target === 'virtio' && (CONTAINED.has(type) || type === 'unix' || (type === 'file' && path))) return;
  c.remove(el, {
    rule: 'chardevs',
    element: `devices/${label}`,
    detail: target === 'virtio' ? `type ${type}${path ? `, ${path}` : ''}` : `target ${target ?? 'none'}`,
    reason:
      target === 'virtio'
        ? 'reaches outside QEMU (a host file, device, pipe, socket or network peer)'
        : 'only virtio channels stay (a guestfwd channel makes the DR host open connections for the guest)',
  });
}

/** A virtio channel that stays: files get Haven's names, unix sockets libvirt's. */
function channel(c: RuleContext, el: Element, label: string, namer: Namer): void {
  if (keptOrRenamed(c, el, label, namer) || el.getAttribute('type') !== 'unix') return;
  const source = c.xml.child(el, 'source');
  const path = sourcePath(c, el);
  if (!source) return;
  if (
    path &&
    !c.mustChange({
      rule: 'chardevs',
      element: `devices/${label}`,
      detail: path,
      reason: 'a socket path the sender chose; libvirt names it instead',
    })
  )
    return;
  source.removeAttribute('path');
  source.setAttribute('mode', 'bind');
}

/** A pty's `<source path>` and `tty` describe a running domain's terminal: never an input. */
function dropLiveState(c: RuleContext, el: Element): void {
  for (const s of c.xml.children(el, 'source')) el.removeChild(s);
  el.removeAttribute('tty');
}

function toContained(c: RuleContext, el: Element, kind: Chardev): void {
  el.setAttribute('type', kind === 'parallel' ? 'null' : 'pty');
  for (const name of ['source', 'protocol', 'log'])
    for (const s of c.xml.children(el, name)) el.removeChild(s);
  el.removeAttribute('tty');
}
