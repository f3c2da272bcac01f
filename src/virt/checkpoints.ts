/**
 * libvirt checkpoints (https://libvirt.org/formatcheckpoint.html): named points in time, each
 * backed by a persistent dirty bitmap per qcow2 disk, from which the next incremental backup
 * reads only what changed (docs/design.md §6).
 *
 * The engine keeps each checkpoint's full XML (`checkpointXml`, which embeds the domain) in its
 * catalog so it can redefine the checkpoint when libvirt lost its metadata (a transient domain
 * that stopped, a host rebuilt from backups); whether the bitmaps behind it can still be trusted
 * is `validateCheckpoint`'s answer.
 */
import { type DomainDisk, DomainXml } from '../core/domain-xml.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { VirtError } from './errors.ts';
import { domainState, isActiveState } from './lifecycle.ts';
import { bitmapAdd, bitmapProblem, bitmapRemove, qemuImgInfo } from './qemu-img.ts';
import type { Virsh } from './virsh.ts';
import { attr, childElement, childElements, childText, escapeXml, parseXmlRoot } from './xml.ts';

export interface CheckpointDisk {
  /** The disk's target (vda). */
  name: string;
  checkpoint: 'bitmap' | 'no';
  /** The bitmap's name in the image (libvirt uses the checkpoint's name). */
  bitmap: string | undefined;
  /** Bytes changed since the checkpoint, when asked for (`checkpoint-dumpxml --size`). */
  size: number | undefined;
}

export interface Checkpoint {
  name: string;
  parent: string | undefined;
  creationTime: Date;
  description: string | undefined;
  disks: CheckpointDisk[];
}

export function parseCheckpointXml(xml: string): Checkpoint {
  const root = parseXmlRoot(xml, 'domaincheckpoint', 'checkpoint');
  const name = childText(root, 'name');
  if (!name) throw new VirtError('VIRT_XML_INVALID', 'checkpoint XML has no <name>');
  const parentEl = childElement(root, 'parent');
  const created = Number(childText(root, 'creationTime') ?? '0');
  const disksEl = childElement(root, 'disks');
  return {
    name,
    parent: parentEl ? childText(parentEl, 'name') : undefined,
    creationTime: new Date(created * 1000),
    description: childText(root, 'description'),
    disks: (disksEl ? childElements(disksEl, 'disk') : []).map((d) => {
      const size = attr(d, 'size');
      return {
        name: attr(d, 'name') ?? '',
        checkpoint: attr(d, 'checkpoint') === 'bitmap' ? 'bitmap' : 'no',
        bitmap: attr(d, 'bitmap'),
        size: size === undefined ? undefined : Number(size),
      };
    }),
  };
}

/**
 * Decides which disks carry a bitmap: the requested targets (each must be a qcow2 disk), or by
 * default every qcow2 disk (not cdroms or floppies). Every other disk gets checkpoint='no'.
 */
export function checkpointDisks(
  disks: readonly DomainDisk[],
  include?: readonly string[],
): Array<{ target: string; bitmap: boolean }> {
  const isBitmapCapable = (d: DomainDisk) =>
    (d.device === 'disk' || d.device === 'lun') && d.format === 'qcow2';
  if (include) {
    for (const t of include) {
      const d = disks.find((x) => x.target === t);
      if (!d)
        throw new VirtError('VIRT_BAD_ARGUMENT', `the domain has no disk ${t}`, { details: { disk: t } });
      if (!isBitmapCapable(d)) {
        throw new VirtError(
          'VIRT_BAD_ARGUMENT',
          `disk ${t} is ${d.format ?? 'of unknown format'} ${d.device}: only qcow2 disks can carry a checkpoint bitmap`,
          { details: { disk: t, format: d.format, device: d.device } },
        );
      }
    }
  }
  const out = disks.map((d) => ({
    target: d.target,
    bitmap: include ? include.includes(d.target) : isBitmapCapable(d),
  }));
  if (!out.some((d) => d.bitmap)) {
    throw new VirtError('VIRT_BAD_ARGUMENT', 'no qcow2 disk to put a checkpoint bitmap on', {
      hint: 'Raw disks have no dirty bitmaps; they are copied by checksum resync instead.',
    });
  }
  return out;
}

export function buildCheckpointXml(
  name: string,
  disks: ReadonlyArray<{ target: string; bitmap: boolean }>,
  description?: string,
): string {
  const lines = ['<domaincheckpoint>', `  <name>${escapeXml(name)}</name>`];
  if (description) lines.push(`  <description>${escapeXml(description)}</description>`);
  lines.push('  <disks>');
  for (const d of disks) {
    lines.push(`    <disk name='${escapeXml(d.target)}' checkpoint='${d.bitmap ? 'bitmap' : 'no'}'/>`);
  }
  lines.push('  </disks>', '</domaincheckpoint>');
  return `${lines.join('\n')}\n`;
}

export interface CreateCheckpointOptions {
  name: string;
  /** Targets that get a bitmap (each qcow2); default every qcow2 disk. */
  disks?: readonly string[];
  description?: string;
  /** Freeze guest filesystems through the agent around the checkpoint (fails without agent). */
  quiesce?: boolean;
}

/** Creates a checkpoint now (without a backup; backupBegin creates one together with a backup). */
export async function createCheckpoint(
  virsh: Virsh,
  domain: string,
  options: CreateCheckpointOptions,
): Promise<Checkpoint> {
  checkName('checkpoint', options.name);
  const xml = DomainXml.parse(await virsh.run(['dumpxml', '--domain', domain]));
  const body = buildCheckpointXml(
    options.name,
    checkpointDisks(xml.disks(), options.disks),
    options.description,
  );
  await virsh.runWithFiles({ checkpoint: body }, (f) => [
    'checkpoint-create',
    '--domain',
    domain,
    '--xmlfile',
    f.checkpoint as string,
    ...(options.quiesce ? ['--quiesce'] : []),
  ]);
  return getCheckpoint(virsh, domain, options.name);
}

/** One checkpoint's metadata (without the embedded domain). */
export async function getCheckpoint(
  virsh: Virsh,
  domain: string,
  name: string,
  options: { size?: boolean } = {},
): Promise<Checkpoint> {
  const args = ['checkpoint-dumpxml', '--domain', domain, '--checkpointname', name, '--no-domain'];
  if (options.size) args.push('--size');
  return parseCheckpointXml(await virsh.run(args));
}

/** All checkpoints of a domain, oldest first. */
export async function listCheckpoints(virsh: Virsh, domain: string): Promise<Checkpoint[]> {
  const names = (await virsh.run(['checkpoint-list', '--domain', domain, '--name']))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (names.length === 0) return [];
  const results = await virsh.batch(
    names.map((n) => ['checkpoint-dumpxml', '--domain', domain, '--checkpointname', n, '--no-domain']),
  );
  const list: Checkpoint[] = [];
  results.forEach((r) => {
    // A checkpoint deleted between the two calls is simply not listed.
    if (r.ok) list.push(parseCheckpointXml(r.stdout));
  });
  return list.sort(
    (a, b) => a.creationTime.getTime() - b.creationTime.getTime() || a.name.localeCompare(b.name),
  );
}

/** The checkpoint's full XML including `<domain>`: what `redefineCheckpoint` needs later. */
export async function checkpointXml(virsh: Virsh, domain: string, name: string): Promise<string> {
  return virsh.run(['checkpoint-dumpxml', '--domain', domain, '--checkpointname', name]);
}

export interface DeleteCheckpointOptions {
  /** Keep the bitmaps in the images: the checkpoint can be redefined from its XML. */
  metadataOnly?: boolean;
  /** Delete the checkpoint's descendants too. */
  children?: boolean;
  log?: Logger;
}

/**
 * Deletes a checkpoint and its bitmaps. On a running domain libvirt does both. On a shut-off one
 * libvirt refuses ("cannot delete checkpoint for inactive domain", libvirt 9.0), so, as
 * createOfflineCheckpoint does when it makes one, the bitmaps are removed from the qcow2 images
 * with qemu-img and only libvirt's metadata is deleted (libvirt re-parents the children; the
 * rules are kbase/internals/incremental-backup's). qemu-img takes the image's write lock, so a
 * QEMU started meanwhile makes it fail with VIRT_IMAGE_IN_USE and nothing is half-deleted: the
 * metadata goes only after every bitmap did.
 */
export async function deleteCheckpoint(
  virsh: Virsh,
  domain: string,
  name: string,
  options: DeleteCheckpointOptions = {},
): Promise<void> {
  const args = ['checkpoint-delete', '--domain', domain, '--checkpointname', name];
  if (options.metadataOnly) args.push('--metadata');
  if (options.children) args.push('--children');
  try {
    await virsh.run(args);
  } catch (e) {
    if (options.metadataOnly || !(e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_RUNNING')) throw e;
    await deleteOfflineCheckpoint(virsh, domain, name, options);
  }
}

async function deleteOfflineCheckpoint(
  virsh: Virsh,
  domain: string,
  name: string,
  options: DeleteCheckpointOptions,
): Promise<void> {
  const log = options.log ?? silentLogger;
  if (options.children) {
    const all = await listCheckpoints(virsh, domain);
    // Newest first, so each child goes before its parent.
    for (const c of descendants(all, name).reverse()) await deleteOfflineCheckpoint(virsh, domain, c, {});
  }
  const cp = await getCheckpoint(virsh, domain, name);
  const disks = await inactiveDisks(virsh, domain);
  for (const d of cp.disks.filter((x) => x.checkpoint === 'bitmap')) {
    const bitmap = d.bitmap ?? name;
    const disk = disks.find((x) => x.target === d.name);
    const path = await imagePath(virsh, disk);
    if (!path) {
      log.verbose('checkpoint disk has no image any more; nothing to remove there', { domain, disk: d.name });
      continue;
    }
    const info = await qemuImgInfo(path, { format: disk?.format, log });
    if (!info.bitmaps.some((b) => b.name === bitmap)) continue;
    await bitmapRemove(path, bitmap, { log });
    log.verbose('removed a checkpoint bitmap from a shut-off server’s image', {
      domain,
      disk: d.name,
      bitmap,
      path,
    });
  }
  await virsh.run(['checkpoint-delete', '--domain', domain, '--checkpointname', name, '--metadata']);
}

/** Names of the checkpoints below `name` in the parent tree, oldest first. */
function descendants(all: readonly Checkpoint[], name: string): string[] {
  const below = new Set([name]);
  const out: string[] = [];
  for (const c of all) {
    if (c.parent !== undefined && below.has(c.parent)) {
      below.add(c.name);
      out.push(c.name);
    }
  }
  return out;
}

/** The disks of the domain's inactive definition (what qemu-img works on while it is off). */
async function inactiveDisks(virsh: Virsh, domain: string): Promise<DomainDisk[]> {
  return DomainXml.parse(await virsh.run(['dumpxml', '--domain', domain, '--inactive'])).disks();
}

/** A disk's image path; a storage pool volume is asked for its path. */
async function imagePath(virsh: Virsh, disk: DomainDisk | undefined): Promise<string | undefined> {
  if (disk?.path) return disk.path;
  if (disk?.pool && disk.volume) {
    return (await virsh.run(['vol-path', '--pool', disk.pool, '--vol', disk.volume])).trim();
  }
  return undefined;
}

/**
 * Recreates libvirt's metadata for a checkpoint from XML saved earlier. On a running domain
 * libvirt also checks (unless `validate: false`) that every bitmap exists and is consistent, and
 * refuses with VIRT_BITMAP_INCONSISTENT otherwise.
 */
export async function redefineCheckpoint(
  virsh: Virsh,
  domain: string,
  xml: string,
  options: { validate?: boolean } = {},
): Promise<Checkpoint> {
  const { name } = parseCheckpointXml(xml);
  const running = isActiveState((await domainState(virsh, domain)).state);
  // libvirt validates only against a running QEMU ("domain is not running" otherwise).
  const validate = running && options.validate !== false ? ['--redefine-validate'] : [];
  await redefine(virsh, domain, xml, validate);
  return getCheckpoint(virsh, domain, name);
}

export interface BitmapIssue {
  disk: string;
  bitmap: string;
  problem: 'missing' | 'inconsistent' | 'in-use' | 'disabled' | 'no-image';
}

export interface CheckpointValidation {
  checkpoint: string;
  ok: boolean;
  /** How it was checked: libvirt against the running QEMU, or qemu-img on the images. */
  method: 'libvirt' | 'qemu-img';
  issues: BitmapIssue[];
  /** libvirt's own words when it refused. */
  message?: string;
}

/**
 * Can this checkpoint's bitmaps be trusted for an incremental backup?
 *
 * Running domain: bitmaps created since QEMU started live only in QEMU's memory, so qemu-img
 * cannot see them; libvirt's redefine-validate checks them inside QEMU (the checkpoint is
 * redefined with its own current XML, which changes nothing). Shut-off domain: qemu-img reads
 * each image's bitmap table and its flags.
 */
export async function validateCheckpoint(
  virsh: Virsh,
  domain: string,
  name: string,
  options: { log?: Logger } = {},
): Promise<CheckpointValidation> {
  const log = options.log ?? silentLogger;
  const cp = await getCheckpoint(virsh, domain, name);
  const withBitmap = cp.disks.filter((d) => d.checkpoint === 'bitmap');
  if (isActiveState((await domainState(virsh, domain)).state)) {
    const xml = await checkpointXml(virsh, domain, name);
    try {
      await redefine(virsh, domain, xml, ['--redefine-validate']);
      return { checkpoint: name, ok: true, method: 'libvirt', issues: [] };
    } catch (e) {
      if (!(e instanceof VirtError && e.code === 'VIRT_BITMAP_INCONSISTENT')) throw e;
      const text = String(e.details?.message ?? e.message);
      const issues: BitmapIssue[] = withBitmap
        .filter((d) => text.includes(`'${d.name}'`))
        .map((d) => ({ disk: d.name, bitmap: d.bitmap ?? name, problem: 'inconsistent' }));
      return { checkpoint: name, ok: false, method: 'libvirt', issues, message: text };
    }
  }
  const disks = await inactiveDisks(virsh, domain);
  const issues: BitmapIssue[] = [];
  for (const d of withBitmap) {
    const bitmap = d.bitmap ?? name;
    const disk = disks.find((x) => x.target === d.name);
    const path = await imagePath(virsh, disk);
    if (!path) {
      issues.push({ disk: d.name, bitmap, problem: 'no-image' });
      continue;
    }
    try {
      const problem = bitmapProblem(await qemuImgInfo(path, { format: disk?.format, log }), bitmap);
      if (problem) issues.push({ disk: d.name, bitmap, problem });
    } catch (e) {
      log.verbose('cannot read image for checkpoint validation', { domain, disk: d.name, path, err: e });
      issues.push({ disk: d.name, bitmap, problem: 'no-image' });
    }
  }
  return { checkpoint: name, ok: issues.length === 0, method: 'qemu-img', issues };
}

/** validateCheckpoint, throwing VIRT_BITMAP_INCONSISTENT (the engine's cue to resync) when not ok. */
export async function assertCheckpointValid(
  virsh: Virsh,
  domain: string,
  name: string,
  options: { log?: Logger } = {},
): Promise<void> {
  const v = await validateCheckpoint(virsh, domain, name, options);
  if (!v.ok) {
    const what = v.issues.map((i) => `${i.disk}: bitmap ${i.bitmap} ${i.problem}`).join(', ') || v.message;
    throw new VirtError(
      'VIRT_BITMAP_INCONSISTENT',
      `checkpoint ${name} of ${domain} cannot be trusted: ${what}`,
      {
        details: { domain, checkpoint: name, issues: v.issues, message: v.message },
      },
    );
  }
}

/**
 * A checkpoint for a shut-off domain, which libvirt cannot create itself (it needs a running
 * QEMU): the bitmap is added to each qcow2 image with qemu-img, enabled so that QEMU keeps
 * recording into it at the next start, and libvirt's metadata is redefined around it, following
 * the rules of kbase/internals/incremental-backup ("modification of bitmaps outside of libvirt
 * ... adhering to the same semantics"). The next live backup can then be incremental from it.
 */
export async function createOfflineCheckpoint(
  virsh: Virsh,
  domain: string,
  options: {
    name: string;
    /** Targets and image paths of the qcow2 disks that get the bitmap. */
    disks: ReadonlyArray<{ target: string; path: string }>;
    /** The checkpoint this one follows (the domain's newest), if any. */
    parent?: string;
    log?: Logger;
  },
): Promise<Checkpoint> {
  checkName('checkpoint', options.name);
  const inactive = await virsh.run(['dumpxml', '--domain', domain, '--inactive']);
  const all = DomainXml.parse(inactive).disks();
  for (const d of options.disks) await bitmapAdd(d.path, options.name, { log: options.log });
  const withBitmap = new Set(options.disks.map((d) => d.target));
  const diskLines = all
    .filter((d) => d.device === 'disk' || d.device === 'lun')
    .map((d) =>
      withBitmap.has(d.target)
        ? `    <disk name='${escapeXml(d.target)}' checkpoint='bitmap' bitmap='${escapeXml(options.name)}'/>`
        : `    <disk name='${escapeXml(d.target)}' checkpoint='no'/>`,
    );
  const xml = [
    '<domaincheckpoint>',
    `  <name>${escapeXml(options.name)}</name>`,
    ...(options.parent ? [`  <parent><name>${escapeXml(options.parent)}</name></parent>`] : []),
    `  <creationTime>${Math.floor(Date.now() / 1000)}</creationTime>`,
    '  <disks>',
    ...diskLines,
    '  </disks>',
    inactive.replace(/<\?xml[^>]*>/, '').trim(),
    '</domaincheckpoint>',
    '',
  ].join('\n');
  return redefineCheckpoint(virsh, domain, xml, { validate: false });
}

/** `checkpoint-create --redefine`: libvirt takes the checkpoint's metadata back as given. */
async function redefine(virsh: Virsh, domain: string, xml: string, extra: string[]): Promise<void> {
  await virsh.runWithFiles({ checkpoint: xml }, (f) => [
    'checkpoint-create',
    '--domain',
    domain,
    '--xmlfile',
    f.checkpoint as string,
    '--redefine',
    ...extra,
  ]);
}
