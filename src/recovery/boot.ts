/**
 * The one boot recipe of activation, drills and restore (issue 14.4): the server's DR definition
 * (`definitions/<server>.xml`) under the definition rules (core/definition-rules.ts: the file may
 * have been edited, or written by an older Haven, so what was checked when it was received is
 * checked again), each store disk pointed at what the domain boots from, console files and
 * sockets in Haven's own directory, each network interface on what the failover network mapping
 * names at this site (networks.ts), the UEFI variables in a file Haven names, and Haven's marker.
 * The callers differ only in those places and in what they do with the XML (start it, isolate
 * it for a drill, define it).
 */
import { stat } from 'node:fs/promises';
import {
  applyDefinitionRules,
  type DefinitionChange,
  type DefinitionReport,
  type DefinitionRules,
  type HostFiles,
  logDefinitionReport,
} from '../core/definition-rules.ts';
import type { DomainXml } from '../core/domain-xml.ts';
import type { Logger } from '../core/log.ts';
import type { Generation, Store } from '../store/types.ts';
import { ensureCephSecret, Virsh } from '../virt/index.ts';
import {
  type MappedDisk,
  mapDisks,
  markStartedByHaven,
  nvramPath,
  setNvramPath,
  setOverlayBlockSource,
  setOverlayNetworkSource,
  setOverlaySource,
} from './definition.ts';
import { imagePaths, readDefinition } from './generation.ts';
import { type BootNetworks, checkNetworks, mapInterfaces, type NicPlan } from './networks.ts';
import { createOverlay, overlayPath } from './overlay.ts';

export type BootPurpose = 'activation' | 'drill' | 'restore';

/** What the definition rules removed or kept on the operator's word, for a result. */
export interface DefinitionSummary {
  removed: DefinitionChange[];
  allowed: DefinitionChange[];
  /** Removed before this boot, when the file was written (DefinitionReport.earlier). */
  earlier: string[];
}

export interface SafeDefinitionOptions {
  /** The DR host's settings for definitions (config `definitions`); none: the rule as is. */
  rules?: DefinitionRules | undefined;
  /** Where console files and sockets go. */
  hostFiles: HostFiles;
  /**
   * The failover network mapping, and the libvirt whose networks must exist. undefined: the
   * interfaces stay as the rule leaves them, unchecked (a drill that removes them).
   */
  networks?: BootNetworks | undefined;
  log: Logger;
}

export interface SafeDefinition {
  xml: DomainXml;
  /** The definition's disks that are the generation's, by store disk name. */
  mapped: MappedDisk[];
  report: DefinitionReport;
  /** What each network interface joins at this site (empty without `networks`). */
  networks: NicPlan[];
}

/**
 * `definitions/<server>.xml` as the rule leaves it, with its disks matched to the generation's
 * and its interfaces mapped to this site's networks: what every boot starts from, and what a dry
 * run checks. Throws RECOVERY_DEFINITION_MISSING, RECOVERY_DEFINITION_MISMATCH (a store disk it
 * does not use), DEFINITION_UNSAFE or RECOVERY_NETWORK_MISSING.
 */
export async function readSafeDefinition(
  store: Store,
  server: string,
  generation: Generation,
  o: SafeDefinitionOptions,
): Promise<SafeDefinition> {
  const xml = await readDefinition(store, server);
  const mapped = mapDisks(
    xml,
    server,
    generation.disks.map((d) => d.name),
  );
  const images = new Set(mapped.map((m) => m.disk.element));
  const report = applyDefinitionRules(xml, o.rules, {
    server,
    isStoreImage: (d) => images.has(d.element),
    hostFiles: o.hostFiles,
  });
  logDefinitionReport(o.log, server, report);
  const networks = o.networks ? mapInterfaces(xml, o.networks) : [];
  if (o.networks) await checkNetworks(networks, server, o.networks.virsh, o.log);
  return { xml, mapped, report, networks };
}

export interface BootRecipe extends SafeDefinitionOptions {
  purpose: BootPurpose;
  store: Store;
  server: string;
  generation: Generation;
  /** Run under this domain name, with a new UUID. */
  rename?: string | undefined;
  /** Points one store disk at what the domain boots from: an overlay, a restored image. */
  placeDisk: (xml: DomainXml, m: MappedDisk) => Promise<void>;
  /**
   * The UEFI variables file of a domain that has one, given the path the definition still names
   * (only where the operator allows `nvram`, else undefined). undefined leaves it to libvirt.
   */
  nvram: (kept: string | undefined) => Promise<string | undefined>;
}

export interface PreparedBoot {
  xml: DomainXml;
  report: DefinitionReport;
  networks: NicPlan[];
}

export async function prepareBoot(r: BootRecipe): Promise<PreparedBoot> {
  const { xml, mapped, report, networks } = await readSafeDefinition(r.store, r.server, r.generation, r);
  if (r.rename !== undefined) {
    xml.name = r.rename;
    xml.newUuid();
  }
  for (const m of mapped) await r.placeDisk(xml, m);
  const nvram = await r.nvram(nvramPath(xml));
  if (nvram !== undefined) setNvramPath(xml, nvram);
  markStartedByHaven(xml, {
    purpose: r.purpose,
    store: r.store.descriptor.id,
    server: r.server,
    generation: r.generation.id,
  });
  return { xml, report, networks };
}

/**
 * The disk step of a copy that boots through qcow2 overlays in `dir` (activation, drills): the
 * generation stays byte-identical while the copy runs (overlay.ts).
 */
export async function throughOverlays(
  store: Store,
  server: string,
  generation: Generation,
  dir: string,
  log: Logger,
): Promise<BootRecipe['placeDisk']> {
  const images = await imagePaths(store, server, generation);
  const secrets = new Set<string>();
  return async (xml, m) => {
    const overlay = overlayPath(dir, m.name);
    if (store.networkImage) {
      // An rbd store: QEMU reads the generation from the cluster, with the user's key in a
      // libvirt secret (made or refreshed once per boot).
      const net = await store.networkImage(server, generation.id, m.name);
      if (!secrets.has(net.secret.usage)) {
        await ensureCephSecret(new Virsh({ log }), net.secret.usage, net.secret.key, log);
        secrets.add(net.secret.usage);
      }
      await createOverlay(overlay, net.qemuFilename, { log });
      setOverlayNetworkSource(xml, m.disk, overlay, net.source);
      return;
    }
    const image = images.get(m.name) ?? '';
    await createOverlay(overlay, image, { log });
    if ((await stat(image)).isBlockDevice()) setOverlayBlockSource(xml, m.disk, overlay, image);
    else setOverlaySource(xml, m.disk, overlay, image);
  };
}

export function summary(report: DefinitionReport): DefinitionSummary {
  return { removed: report.removed, allowed: report.allowed, earlier: report.earlier };
}
