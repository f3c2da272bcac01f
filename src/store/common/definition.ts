/**
 * The DR definition of a server (docs/design.md §4.5): the source domain XML with every replicated disk
 * pointing at its newest DR image (raw, absolute path, no backing chain). A disk that was not
 * replicated (a network disk, a disk left out of the job) would point at a path that does not
 * exist at the DR site and stop the boot too, so it is removed and an XML comment says so.
 *
 * The sender is not trusted (issue 13.1): what it sent then passes the definition rules
 * (core/definition-rules.ts, docs/recovery.md), which keep only what a server needs to boot at
 * the DR site, so the stored file names no host path or program the sender chose. Console files
 * and sockets get the names activation gives them in the server's activation directory.
 */
import {
  activationHostFiles,
  applyDefinitionRules,
  commentText,
  type DefinitionRules,
  logDefinitionReport,
} from '../../core/definition-rules.ts';
import { type DiskSourceSpec, type DomainDisk, DomainXml } from '../../core/domain-xml.ts';
import type { Logger } from '../../core/log.ts';

/**
 * The store disk name of a domain disk (docs/design.md §4.1): the image file's base name without its
 * extension, or the LV's or volume's name. Both spellings are offered, so `web.data` (an LV with
 * a dot) and `Web01_0.qcow2` (a file) both match what the sender used.
 */
export function storeDiskNameCandidates(d: DomainDisk): string[] {
  const src = d.volume ?? d.path;
  if (!src) return [];
  const base = src.split('/').pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? [base, base.slice(0, dot)] : [base];
}

export interface DrDefinitionOptions {
  server: string;
  /** The DR host's settings for definitions (config `definitions`); none: the rule as is. */
  rules?: DefinitionRules;
  /** The store's directory: console files and sockets are named in its activation directory. */
  storeRoot: string;
  /** The images are block devices (an LVM store): disks become `<disk type='block'>`. */
  blockDevices?: boolean;
  /** Where each disk's image is when it is not a path (an rbd store's network disks); wins over the path. */
  diskSource?: (disk: string) => DiskSourceSpec | undefined;
}

export function buildDrDefinition(
  sourceXml: string,
  disks: readonly string[],
  imagePathOf: (disk: string) => string,
  log: Logger,
  options: DrDefinitionOptions,
): string {
  const xml = DomainXml.parse(sourceXml);
  const placed = new Map<string, DomainDisk['element']>();
  for (const d of xml.disks()) {
    if (d.device === 'cdrom' || d.device === 'floppy') continue;
    const name = storeDiskNameCandidates(d).find((n) => disks.includes(n) && !placed.has(n));
    if (name !== undefined) {
      const path = imagePathOf(name);
      xml.setDiskSource(
        d,
        options.diskSource?.(name) ?? (options.blockDevices ? { dev: path } : { file: path }),
      );
      placed.set(name, d.element);
      continue;
    }
    const src = xml.child(d.element, 'source');
    const what =
      d.path ??
      (d.volume ? `${d.pool}/${d.volume}` : undefined) ??
      (src?.getAttribute('name')
        ? `${src.getAttribute('protocol') ?? d.type}:${src.getAttribute('name')}`
        : d.type);
    log.warn('definition: disk not replicated, removed from the DR definition', {
      target: d.target,
      source: what,
    });
    // A disk element always sits in <devices>; one without a parent is not in the document.
    const parent = d.element.parentNode;
    if (!parent) continue;
    parent.insertBefore(
      xml.doc.createComment(
        commentText(` haven: disk ${d.target} (${what}) is not replicated to this store and was removed `),
      ),
      d.element,
    );
    parent.removeChild(d.element);
  }
  for (const n of disks) {
    if (!placed.has(n))
      log.warn('definition: replicated disk not found in the source definition', { disk: n });
  }
  const stored = new Set(placed.values());
  const report = applyDefinitionRules(xml, options.rules, {
    server: options.server,
    isStoreImage: (d) => stored.has(d.element),
    hostFiles: activationHostFiles(options.storeRoot, options.server),
  });
  logDefinitionReport(log, options.server, report);
  return `${xml.toString()}\n`;
}
