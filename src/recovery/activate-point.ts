/**
 * `haven activate --at <time|point>` (docs/continuous.md): what activation takes from a point of
 * a server's journal instead of a generation. The point is materialised as raw images into the
 * activation's directory (the journal is only read: no segment, no generation is written), and
 * the copy boots through qcow2 overlays over them, as over a generation, so the persistent
 * bitmap in each overlay gives `haven failback` its map of what the DR copy changed.
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Generation, ServerManifest, Store } from '../store/types.ts';
import type { BootRecipe } from './boot.ts';
import { setOverlaySource } from './definition.ts';
import { chooseGeneration } from './generation.ts';
import { createOverlay, overlayPath } from './overlay.ts';
import { choosePoint, pointAsGeneration } from './restore-point.ts';

/** What an activation starts from: a generation, or a journal point shaped as one. */
export interface ActivationSource {
  manifest: ServerManifest | null;
  generation: Generation;
  /** The source is a journal point (`--at`), not a generation. */
  point: boolean;
}

export async function chooseSource(
  store: Store,
  server: string,
  o: { generation?: number | undefined; at?: string | undefined },
): Promise<ActivationSource> {
  if (o.at === undefined) return { ...(await chooseGeneration(store, server, o.generation)), point: false };
  if (o.generation !== undefined) throw new UsageError('give --generation or --at, not both');
  const point = await choosePoint(store, server, o.at);
  return {
    manifest: await store.manifest(server),
    generation: pointAsGeneration(point, server),
    point: true,
  };
}

/**
 * The disk step of an activation at a point: the point's raw images in `dir` (`<disk>.point.raw`),
 * each under a qcow2 overlay the domain writes into.
 */
export async function pointOverlays(
  store: Store,
  server: string,
  point: Generation,
  dir: string,
  log: Logger,
  signal?: AbortSignal,
): Promise<BootRecipe['placeDisk']> {
  if (!store.materialisePoint) throw new UsageError('this store keeps no journal of points');
  const images = new Map(point.disks.map((d) => [d.name, join(dir, `${d.name}.point.raw`)]));
  await store.materialisePoint(server, point.id, images, signal);
  // QEMU runs as its own user and opens backing files as they are (libvirt relabels only the
  // overlay it writes): readable, as a generation's images are.
  for (const image of images.values()) await chmod(image, 0o644);
  log.info('point materialised', { point: point.id, takenAt: point.takenAt });
  return async (xml, m) => {
    const overlay = overlayPath(dir, m.name);
    const image = images.get(m.name) ?? '';
    await createOverlay(overlay, image, { log });
    setOverlaySource(xml, m.disk, overlay, image);
  };
}
