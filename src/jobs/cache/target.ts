/**
 * Target-side cache drives (`haven receive --staging auto`, docs/design.md §4.6): staged deltas go to
 * the largest signed cache drive of the target (equal sizes: by device path), mounted by Haven
 * under its run directory when it is not mounted, and unmounted when the session (or listener)
 * ends and no other Haven process uses it. Without one, deltas are staged inside the store.
 */
import type { Logger } from '../../core/log.ts';
import { discoverCacheDrives } from './drives.ts';
import { useDrive } from './mounts.ts';

export interface TargetStaging {
  /** Directory the store stages under (`<path>/haven-staging/<store id>/...`). */
  path: string;
  device: string;
  release(): Promise<void>;
}

export async function targetStaging(o: {
  signature: string;
  runDir: string;
  log: Logger;
}): Promise<TargetStaging | undefined> {
  const found = await discoverCacheDrives({ signature: o.signature, runDir: o.runDir, log: o.log });
  for (const s of found.skipped) o.log.warn(`cache drive ${s.device} cannot be used: ${s.reason}`);
  const drive = found.drives[0];
  if (!drive) {
    o.log.warn(`no cache drive (a filesystem with ${o.signature} at its root): staging inside the store`);
    return undefined;
  }
  const m = await useDrive(drive, o.runDir, o.log);
  o.log.info('staging deltas on the cache drive', { device: drive.device, path: m.path });
  return { path: m.path, device: drive.device, release: () => m.release() };
}
