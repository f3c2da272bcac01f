/**
 * The rule a DR definition passes before it is stored or booted (issue 13.1): the receiver builds
 * `definitions/<server>.xml` with it from what a sender sent, and activation, drills and restore
 * apply it again to what they read from that file, since a store on disk can be edited too. One
 * pure function for both, here in core/ because store/ and recovery/ may not import each other.
 *
 * It is an allow-list, not a deny-list: the domain keeps what a server needs to boot at the DR
 * site and nothing that names a host path or runs a host program the sender chose, whatever
 * libvirt version reads it. Each change is reported (what, why, and the allowance that would keep
 * it) and left as an XML comment in place; the DR site's operator may allow more for one server
 * (config `definitions.allow.<server>`), which is reported as loudly. docs/recovery.md ("What a
 * DR definition may hold") is the rule in words. Devices: definition-devices.ts; character
 * devices: definition-chardevs.ts.
 */
import type { Element } from '@xmldom/xmldom';
import {
  type DefinitionAllowance,
  type DefinitionFacts,
  type DefinitionReport,
  type DefinitionRules,
  earlierRemovals,
  elementChildren,
  RuleContext,
  rulesForServer,
  textOf,
} from './definition-context.ts';
import { deviceRules } from './definition-devices.ts';
import type { DomainXml } from './domain-xml.ts';
import { HavenError } from './errors.ts';
import type { Logger } from './log.ts';

export * from './definition-context.ts';

/** A definition that cannot be made safe by removing parts of it. */
export class DefinitionUnsafeError extends HavenError {
  constructor(server: string, problems: string[], hint: string) {
    super(
      'DEFINITION_UNSAFE',
      `the definition of ${server} cannot be booted safely: ${problems.join('; ')}`,
      {
        kind: 'refused',
        hint,
        details: { server, problems },
      },
    );
  }
}

/**
 * What no removal can fix: a definition that is not a QEMU/KVM virtual machine (an LXC
 * container's init runs a host program; Xen's bootloader runs on the host), or one in a namespace
 * libvirt does not read. Haven replicates only QEMU/KVM domains, so a receiver refuses these
 * outright; `all` does not change that.
 */
export function unsafeProblems(xml: DomainXml): string[] {
  const problems: string[] = [];
  const root = xml.root;
  if (root.namespaceURI) problems.push(`the <domain> element is in namespace ${root.namespaceURI}`);
  const type = root.getAttribute('type');
  if (type !== 'kvm' && type !== 'qemu')
    problems.push(`domain type ${JSON.stringify(type ?? '')} is not kvm or qemu`);
  const os = xml.child(root, 'os');
  const osType = textOf(os ? xml.child(os, 'type') : undefined);
  if (osType !== undefined && osType !== 'hvm') problems.push(`os type ${JSON.stringify(osType)} is not hvm`);
  return problems;
}

export function refuseUnsafe(xml: DomainXml, server: string, hint: string): void {
  const problems = unsafeProblems(xml);
  if (problems.length) throw new DefinitionUnsafeError(server, problems, hint);
}

/**
 * Applies the rule to `xml` in place and says what it changed. Throws DefinitionUnsafeError for
 * what cannot be removed (`unsafeProblems`).
 */
export function applyDefinitionRules(
  xml: DomainXml,
  rules: DefinitionRules | undefined,
  facts: DefinitionFacts,
): DefinitionReport {
  refuseUnsafe(
    xml,
    facts.server,
    `Haven starts only QEMU/KVM virtual machines: fix definitions/${facts.server}.xml (docs/recovery.md, "What a DR definition may hold").`,
  );
  const c = new RuleContext(xml, rulesForServer(rules, facts.server), facts);
  c.report.earlier.push(...earlierRemovals(xml));
  // A document type declaration can declare entities, processing instructions can carry
  // anything: only the <domain> element is a definition.
  for (let n = xml.doc.firstChild; n; ) {
    const next = n.nextSibling;
    if (n !== xml.root && n.nodeType !== 8) xml.doc.removeChild(n);
    n = next;
  }
  domainRules(c);
  osRules(c);
  deviceRules(c);
  return c.report;
}

/** Children of `<domain>` kept as they are: nothing in them names a host path. */
const PLAIN = new Set([
  'name',
  'uuid',
  'genid',
  'title',
  'description',
  'metadata',
  'maxMemory',
  'memory',
  'currentMemory',
  'memtune',
  'vcpu',
  'vcpus',
  'cputune',
  'iothreads',
  'iothreadids',
  'defaultiothread',
  'numatune',
  'features',
  'clock',
  'on_poweroff',
  'on_reboot',
  'on_crash',
  'on_lockfailure',
  'pm',
  'perf',
  'cpu',
  'keywrap',
  'launchSecurity',
  'os',
  'devices',
]);

function domainRules(c: RuleContext): void {
  const seen = new Set<string>();
  for (const el of elementChildren(c.xml.root)) {
    const name = el.localName ?? el.nodeName;
    const again = !el.namespaceURI && name !== 'seclabel' && seen.has(name);
    seen.add(name);
    if (again) {
      // libvirt reads some parts by path across all of them (a second <devices>, a second <os>
      // with a kernel), and the rule looks at the first: only one may stay.
      c.remove(el, {
        rule: 'elements',
        element: name,
        reason: `a second <${name}> element; the rule and libvirt read one`,
      });
    } else if (el.namespaceURI) {
      c.remove(el, {
        rule: 'namespaces',
        element: el.nodeName,
        reason: 'an element of another namespace (qemu:commandline and the like pass anything to QEMU)',
      });
    } else if (name === 'seclabel') domainSeclabel(c, el);
    else if (name === 'sysinfo') {
      if (el.getAttribute('type') !== 'smbios')
        c.remove(el, {
          rule: 'sysinfo',
          element: 'sysinfo',
          detail: `type ${el.getAttribute('type')}`,
          reason: 'firmware config entries can read host files into the guest',
        });
    } else if (name === 'memoryBacking') {
      for (const s of c.xml.children(el, 'source')) {
        const t = s.getAttribute('type') ?? '';
        if (t !== 'anonymous' && t !== 'memfd')
          c.remove(s, {
            rule: 'memory-backing',
            element: 'memoryBacking/source',
            detail: `type ${t}`,
            reason: 'guest memory in a host file',
          });
      }
    } else if (name === 'blkiotune') {
      for (const d of c.xml.children(el, 'device'))
        c.remove(d, {
          rule: 'blkiotune',
          element: 'blkiotune/device',
          detail: textOf(c.xml.child(d, 'path')),
          reason: 'names a host block device',
        });
    } else if (name === 'resource') {
      const partition = textOf(c.xml.child(el, 'partition'));
      const plain =
        elementChildren(el).every((x) => x.nodeName === 'partition') &&
        (partition ?? '/machine') === '/machine';
      if (!plain)
        c.remove(el, {
          rule: 'resource',
          element: 'resource',
          detail: partition,
          reason: 'places the domain in a host cgroup of the sender’s choosing',
        });
    } else if (!PLAIN.has(name)) {
      c.remove(el, {
        rule: 'elements',
        element: name,
        reason:
          'not an element a QEMU/KVM server needs (bootloader, idmap and the like run or map host things)',
      });
    }
  }
}

/**
 * The domain's `<seclabel>`: the ordinary dynamic label is dropped without a word (the DR host's
 * security driver, possibly another one, chooses its own); anything else (type none, a static
 * label, relabel='no') relaxes or fixes the DR host's confinement and is reported.
 */
function domainSeclabel(c: RuleContext, el: Element): void {
  const ordinary = el.getAttribute('type') === 'dynamic' && el.getAttribute('relabel') !== 'no';
  if (ordinary) {
    c.removeQuietly(el);
    return;
  }
  c.remove(el, {
    rule: 'seclabel',
    element: 'seclabel',
    detail: [el.getAttribute('type'), el.getAttribute('model')].filter(Boolean).join(' '),
    reason: 'relaxes or fixes how the DR host confines the domain',
  });
}

/** Children of `<os>` that name nothing on the host. */
const OS_PLAIN = new Set(['type', 'boot', 'bootmenu', 'smbios', 'bios', 'firmware']);

function osRules(c: RuleContext): void {
  const os = c.xml.child(c.xml.root, 'os');
  if (!os) return;
  directBoot(c, os);
  for (const el of elementChildren(os)) {
    const name = el.nodeName;
    if (OS_PLAIN.has(name) || ['kernel', 'initrd', 'cmdline', 'dtb'].includes(name)) continue;
    if (name === 'loader') loader(c, os, el);
    else if (name === 'nvram') nvram(c, el);
    else if (name === 'acpi') {
      for (const t of c.xml.children(el, 'table')) bootFile(c, t, 'os/acpi/table', 'an ACPI table');
    } else {
      c.remove(el, {
        rule: 'elements',
        element: `os/${name}`,
        detail: textOf(el),
        reason: 'not how a QEMU/KVM server boots (container init, Xen root and the like)',
      });
    }
  }
}

/**
 * Direct kernel boot: kernel, initrd and device tree must come from the DR host's boot
 * directories (QEMU reads them into the guest, so any host file would do). If one does not, all
 * of them go with the command line, and the server boots from its disk.
 */
function directBoot(c: RuleContext, os: Element): void {
  const parts = ['kernel', 'initrd', 'dtb'].flatMap((n) => c.xml.children(os, n));
  const outside = parts.filter((p) => !c.isBootFile(textOf(p) ?? ''));
  if (!outside.length) return;
  const changes = outside.map((p) => ({
    rule: 'boot-files' as DefinitionAllowance,
    element: `os/${p.nodeName}`,
    detail: textOf(p),
    reason:
      'a host file outside the DR host’s boot directories (definitions.boot_files); the server boots from its disk instead',
  }));
  if (c.allows('boot-files')) {
    c.report.allowed.push(...changes);
    return;
  }
  c.report.removed.push(...changes);
  for (const p of [...parts, ...c.xml.children(os, 'cmdline')])
    c.removeQuietly(p, changes[outside.indexOf(p)]);
}

/** An element whose text is a host file, removed unless it lies in a boot directory. */
function bootFile(c: RuleContext, el: Element, element: string, what: string): void {
  const path = textOf(el) ?? '';
  if (!c.isBootFile(path))
    c.remove(el, {
      rule: 'boot-files',
      element,
      detail: path,
      reason: `${what} from outside the DR host’s boot directories`,
    });
}

/**
 * Firmware from outside the DR host's firmware directories: a UEFI (pflash) loader loses its path
 * and the domain asks libvirt to choose the DR host's own UEFI firmware (`firmware='efi'`); any
 * other loader goes (the default BIOS).
 */
function loader(c: RuleContext, os: Element, el: Element): void {
  const path = textOf(el);
  if (!path || c.isBootFile(path)) return;
  const uefi = el.getAttribute('type') === 'pflash' || os.getAttribute('firmware') === 'efi';
  const change = {
    rule: 'boot-files' as DefinitionAllowance,
    element: 'os/loader',
    detail: path,
    reason: uefi
      ? 'firmware from outside the DR host’s firmware directories; libvirt chooses the DR host’s own UEFI firmware instead'
      : 'firmware from outside the DR host’s firmware directories; the default BIOS is used',
  };
  if (!c.mustChange(change)) return;
  if (!uefi) {
    c.removeQuietly(el, change);
    return;
  }
  el.textContent = '';
  os.setAttribute('firmware', 'efi');
}

/**
 * UEFI variables: QEMU writes them (guest-controlled content), so the file is one Haven names at
 * each boot (or libvirt's default for the domain's name), never the sender's path. A template
 * comes from the DR host's firmware directories, or libvirt's matching one is used.
 */
function nvram(c: RuleContext, el: Element): void {
  const template = el.getAttribute('template');
  if (template && !c.isBootFile(template)) {
    if (
      c.mustChange({
        rule: 'boot-files',
        element: 'os/nvram',
        detail: template,
        reason: 'a variables template from outside the DR host’s firmware directories',
      })
    )
      el.removeAttribute('template');
  }
  const path =
    textOf(el) ??
    c.xml.child(el, 'source')?.getAttribute('file') ??
    c.xml.child(el, 'source')?.getAttribute('dev');
  if (!path && !el.hasAttribute('type')) return;
  if (
    !c.mustChange({
      rule: 'nvram',
      element: 'os/nvram',
      detail: path ?? el.getAttribute('type') ?? undefined,
      reason: 'a variables file QEMU writes, at a path the sender chose; Haven names it at each boot',
    })
  )
    return;
  for (const child of elementChildren(el)) el.removeChild(child);
  el.removeAttribute('type');
  el.textContent = '';
}

/**
 * Logs what the rule did, as warnings: a removal changes how the copy boots, and a kept element
 * is one the operator chose to trust.
 */
export function logDefinitionReport(log: Logger, server: string, report: DefinitionReport): void {
  for (const c of report.removed) {
    log.warn(`definition: ${c.element} removed or rewritten: ${c.reason}`, {
      server,
      rule: c.rule,
      ...(c.detail ? { detail: c.detail } : {}),
      allowWith: `definitions.allow.${server}: [${c.rule}]`,
    });
  }
  for (const text of report.earlier) {
    log.info(
      `definition: ${text} (removed when definitions/${server}.xml was written; edit it to add this back)`,
      {
        server,
      },
    );
  }
  for (const c of report.allowed) {
    log.warn(
      `definition: ${c.element} KEPT although the rule removes it (${c.reason}): definitions.allow.${server} includes ${c.rule}`,
      {
        server,
        rule: c.rule,
        ...(c.detail ? { detail: c.detail } : {}),
      },
    );
  }
}
