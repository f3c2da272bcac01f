/**
 * What the definition rules (definition-rules.ts) work with: the operator's settings, the facts
 * of the boot at hand, the report of what was changed and why, and the bookkeeping every rule
 * shares. docs/recovery.md ("What a DR definition may hold") is the rule in words.
 */
import { isAbsolute, join, normalize } from 'node:path';
import type { Element, Node } from '@xmldom/xmldom';
import type { DomainDisk, DomainXml } from './domain-xml.ts';

/**
 * What an operator may allow beyond the rule, per server, at the DR site only (config
 * `definitions.allow.<server>`). Every change the rule makes names the one that would keep it.
 */
export const DEFINITION_ALLOWANCES = [
  'all',
  'disks',
  'boot-files',
  'nvram',
  'emulator',
  'chardevs',
  'interfaces',
  'graphics',
  'audio',
  'input',
  'hostdev',
  'redirdev',
  'smartcard',
  'filesystem',
  'shmem',
  'tpm',
  'rng',
  'memory-devices',
  'lease',
  'seclabel',
  'sysinfo',
  'memory-backing',
  'blkiotune',
  'resource',
  'namespaces',
  'elements',
] as const;
export type DefinitionAllowance = (typeof DEFINITION_ALLOWANCES)[number];

/** The DR host's settings for definitions (config `definitions`). */
export interface DefinitionRules {
  /**
   * Directories whose files a definition may name as kernel, initrd, device tree, ACPI table,
   * ROM or firmware, besides DEFAULT_BOOT_DIRS.
   */
  bootFiles: string[];
  /** Per server name: what its definition may keep beyond the rule. */
  allow: Record<string, DefinitionAllowance[]>;
}

/**
 * Where firmware and kernels live on a Debian or RHEL host by their packages' choice (OVMF,
 * AAVMF, SeaBIOS, QEMU's ROMs) or by libvirt's convention for guest kernels (virt-install
 * downloads them to /var/lib/libvirt/boot): files the DR host's own administrator put there.
 */
export const DEFAULT_BOOT_DIRS: readonly string[] = [
  '/usr/share/OVMF',
  '/usr/share/ovmf',
  '/usr/share/AAVMF',
  '/usr/share/edk2',
  '/usr/share/edk2-ovmf',
  '/usr/share/qemu',
  '/usr/share/qemu-efi-aarch64',
  '/usr/share/seabios',
  '/usr/share/ipxe',
  '/usr/lib/ipxe',
  '/var/lib/libvirt/boot',
];

export const NO_DEFINITION_RULES: DefinitionRules = { bootFiles: [], allow: {} };

/** Where Haven puts the host files of a domain's character devices. */
export interface HostFiles {
  /** Console logs and other file-backed devices (virtlogd or QEMU writes them). */
  files: string;
  /** Unix sockets QEMU creates as its own user: a directory it may write. */
  sockets: string;
  /** Put before every name Haven gives (a restore directory holds several domains). */
  prefix?: string;
}

/**
 * The directory activation prepares for a server of a filesystem store: overlays, console files,
 * sockets, the domain XML started. Definitions the receiver writes name their console files
 * there too, so activation finds them in place.
 */
export function activationHostFiles(storeRoot: string, server: string): HostFiles {
  const files = join(storeRoot, '.haven', 'active', server);
  return { files, sockets: join(files, 'sockets') };
}

export interface DefinitionFacts {
  server: string;
  /** Whether a disk is one of the store's images (the only disks a definition may use). */
  isStoreImage: (disk: DomainDisk) => boolean;
  hostFiles: HostFiles;
}

/** One thing the rule changed (or kept because the operator allows it). */
export interface DefinitionChange {
  /** The allowance that keeps it. */
  rule: DefinitionAllowance;
  /** Which element, e.g. `devices/filesystem`, `os/kernel`, `devices/serial[1]`. */
  element: string;
  /** What it named: a host path, a type. */
  detail?: string;
  /** Why the rule does not let it through. */
  reason: string;
}

export interface Relocation {
  from: string;
  to: string;
}

export interface DefinitionReport {
  /** Removed or rewritten, each with why. */
  removed: DefinitionChange[];
  /** Kept only because `definitions.allow.<server>` says so. */
  allowed: DefinitionChange[];
  /** Console files and sockets given the names Haven chose. */
  moved: Relocation[];
  /**
   * What an earlier pass removed, as its comments in the file say (`haven: removed …`, at most
   * EARLIER_MAX): mostly the receiver's, when the definition arrived. The file is never rewritten,
   * so allowing such an element afterwards does not bring it back: the operator edits the file.
   */
  earlier: string[];
}

export const EARLIER_MAX = 20;
const REMOVED_NOTE = ' haven: removed ';

/**
 * The `haven: removed …` comments already in the definition (RuleContext.removeQuietly). A sender
 * can write such comments too, so each is flattened to one line of at most 300 characters
 * before it reaches a log or a result.
 */
export function earlierRemovals(xml: DomainXml): string[] {
  const out: string[] = [];
  const walk = (n: Node): void => {
    for (let c = n.firstChild; c && out.length < EARLIER_MAX; c = c.nextSibling) {
      if (c.nodeType === 8 && (c.nodeValue ?? '').startsWith(REMOVED_NOTE))
        out.push(commentText((c.nodeValue ?? '').slice(REMOVED_NOTE.length)).trim());
      else if (c.nodeType === 1) walk(c);
    }
  };
  walk(xml.root);
  return out;
}

/** The operator's settings as they apply to one server. */
export interface ServerRules {
  bootDirs: readonly string[];
  allow: ReadonlySet<DefinitionAllowance>;
}

export function rulesForServer(rules: DefinitionRules | undefined, server: string): ServerRules {
  const r = rules ?? NO_DEFINITION_RULES;
  return {
    bootDirs: [...DEFAULT_BOOT_DIRS, ...r.bootFiles],
    allow: new Set(Object.hasOwn(r.allow, server) ? r.allow[server] : []),
  };
}

/** True when `path` is absolute and lies inside `dir` once `.` and `..` are resolved. */
export function isInside(path: string, dir: string): boolean {
  if (!isAbsolute(path) || !isAbsolute(dir)) return false;
  const p = normalize(path);
  const d = normalize(dir).replace(/\/+$/, '');
  return p.startsWith(`${d}/`) && !p.includes('\0');
}

/** Text safe inside an XML comment: no `--` (which would end it early), no trailing `-`. */
export function commentText(text: string): string {
  const flat = Array.from(text.slice(0, 300), (ch) => (ch < ' ' || ch === '\x7f' ? ' ' : ch)).join('');
  return flat.replace(/-(?=-)/g, '- ').replace(/-$/, '- ');
}

/** The bookkeeping every rule shares: what may stay, what was changed, and the XML comments. */
export class RuleContext {
  readonly report: DefinitionReport = { removed: [], allowed: [], moved: [], earlier: [] };

  constructor(
    readonly xml: DomainXml,
    readonly rules: ServerRules,
    readonly facts: DefinitionFacts,
  ) {}

  allows(rule: DefinitionAllowance): boolean {
    return this.rules.allow.has(rule) || this.rules.allow.has('all');
  }

  isBootFile(path: string): boolean {
    return this.rules.bootDirs.some((d) => isInside(path, d));
  }

  /**
   * True when the rule must change what `change` describes; false when the operator allows it
   * for this server (recorded, so it is reported loudly).
   */
  mustChange(change: DefinitionChange): boolean {
    if (this.allows(change.rule)) {
      this.report.allowed.push(change);
      return false;
    }
    this.report.removed.push(change);
    return true;
  }

  /** Removes `el` unless the operator allows it, leaving a comment that says what and why. */
  remove(el: Element, change: DefinitionChange): boolean {
    if (!this.mustChange(change)) return false;
    this.removeQuietly(el, change);
    return true;
  }

  /** Removes `el` (already recorded, or a leftover not worth a record) with a comment. */
  removeQuietly(el: Element, change?: DefinitionChange): void {
    const parent = el.parentNode;
    if (!parent) return;
    if (change) {
      const what = change.detail ? `${change.element} (${change.detail})` : change.element;
      parent.insertBefore(
        this.xml.doc.createComment(commentText(`${REMOVED_NOTE}${what}: ${change.reason} `)),
        el,
      );
    }
    parent.removeChild(el);
  }
}

/** Element children of `parent`, whatever their name. */
export function elementChildren(parent: Node): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) out.push(n as Element);
  return out;
}

/** The text of an element, trimmed; undefined when empty. */
export function textOf(el: Element | undefined): string | undefined {
  return el?.textContent?.trim() || undefined;
}
