/**
 * Cache drive discovery (docs/design.md §4.6): every filesystem whose root holds the signature file
 * (`.dr_cache` unless configured otherwise), mounted or not. Block devices and their filesystem
 * types come from `blkid` (it probes the devices itself, so freshly attached drives and loop
 * devices are seen without udev); where each is mounted from /proc/self/mountinfo. An unmounted
 * ext2/3/4 filesystem is read with e2fsprogs without mounting it; any other one through a short
 * read-only mount under the run directory (without journal replay, so nothing is written to it).
 *
 * Result: largest first (by device size), equal sizes by device path in alphabetical order.
 * `totalBytes` is the device's size, `freeBytes` what a mounted filesystem reports available.
 */
import { constants } from 'node:fs';
import { access, readFile, realpath, stat, statfs } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { HavenError } from '../../core/errors.ts';
import { CommandError, exec } from '../../core/exec.ts';
import { type Logger, silentLogger } from '../../core/log.ts';
import { cleanStaleProbes, type MountableDrive, withProbeMount } from './mounts.ts';
import { type MountEntry, majMinOf, parseBlkidExport, parseMountinfo } from './parse.ts';
import { orderDrives, usableBytes } from './plan.ts';

/** Filesystems a cache drive may carry: ones Linux mounts read-write and that hold large files. */
export const CACHE_FILESYSTEMS = ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'f2fs', 'vfat', 'exfat'];

export interface CacheDrive extends MountableDrive {
  label: string | undefined;
  totalBytes: number;
  freeBytes: number;
  usableBytes: number;
}

export interface Discovery {
  drives: CacheDrive[];
  /** Signed filesystems that cannot be used, with the reason (read-only, unreadable). */
  skipped: Array<{ device: string; reason: string }>;
}

async function space(path: string): Promise<{ total: number; free: number }> {
  const s = await statfs(path);
  return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

async function hasSignature(root: string, signature: string): Promise<boolean> {
  try {
    return (await stat(join(root, signature))).isFile();
  } catch {
    return false;
  }
}

/** The block device's size (what "largest" compares, the same whether mounted or not). */
async function deviceSize(device: string): Promise<number | undefined> {
  try {
    const name = basename(await realpath(device));
    return Number((await readFile(`/sys/class/block/${name}/size`, 'utf8')).trim()) * 512;
  } catch {
    return undefined;
  }
}

const EXT = ['ext2', 'ext3', 'ext4'];

/**
 * An unmounted ext2/3/4 filesystem is read with e2fsprogs, without mounting it: mounting, even
 * read-only, would share its superblock with anyone mounting it read-write meanwhile (they would
 * silently get a read-only mount). debugfs looks the signature up; dumpe2fs gives the free space
 * as statfs will once mounted: free blocks less the root reserve and the driver's own reserve
 * (2% of the blocks, at most 4096).
 */
async function readExt(device: string, signature: string): Promise<{ signed: boolean; free: number }> {
  const found = await exec('debugfs', ['-R', `stat /${signature}`, device], { timeoutMs: 60_000 });
  const signed = !/File not found|not found by ext2_lookup/.test(found.stdout + found.stderr);
  if (!signed) return { signed, free: 0 };
  const head = (await exec('dumpe2fs', ['-h', device], { timeoutMs: 60_000 })).stdout;
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(head)?.[1] ?? Number.NaN);
  const blocks = field('Block count');
  const bsize = field('Block size');
  const free = field('Free blocks');
  const reserved = field('Reserved block count');
  if (![blocks, bsize, free, reserved].every(Number.isFinite)) {
    throw new Error(`dumpe2fs -h ${device}: unexpected output`);
  }
  const driverReserve = Math.min(4096, Math.floor(blocks / 50));
  return { signed, free: Math.max(0, free - reserved - driverReserve) * bsize };
}

async function listFilesystems(log: Logger) {
  try {
    // -c /dev/null: no cache, probe the devices now; exit 2 means "nothing found".
    const r = await exec('blkid', ['-c', '/dev/null', '-o', 'export'], {
      okCodes: [0, 2],
      timeoutMs: 60_000,
    });
    return parseBlkidExport(r.stdout).filter((f) => CACHE_FILESYSTEMS.includes(f.fstype));
  } catch (e) {
    if (e instanceof CommandError || (e instanceof HavenError && e.code === 'TOOL_MISSING')) {
      log.warn('cannot list block devices (blkid); no cache drives', { err: e });
      return [];
    }
    throw e;
  }
}

export async function discoverCacheDrives(options: {
  signature: string;
  runDir: string;
  log?: Logger;
}): Promise<Discovery> {
  const log = options.log ?? silentLogger;
  await cleanStaleProbes(options.runDir, log);
  const filesystems = await listFilesystems(log);
  const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  const drives: CacheDrive[] = [];
  const skipped: Discovery['skipped'] = [];
  let probes = 0;
  for (const fs of filesystems) {
    let majMin: string | undefined;
    try {
      majMin = majMinOf((await stat(fs.device)).rdev);
    } catch {
      continue; // gone since blkid looked
    }
    // Whole-filesystem mounts only: a bind mount of a subdirectory is not the drive's root.
    const where = mounts.filter(
      (m: MountEntry) => m.root === '/' && (m.majMin === majMin || m.source === fs.device),
    );
    const rw = where.find((m) => m.options.includes('rw'));
    try {
      if (where.length > 0) {
        const mp = (rw ?? where[0]!).mountpoint;
        if (!(await hasSignature(mp, options.signature))) continue;
        if (!rw) {
          skipped.push({ device: fs.device, reason: `mounted read-only at ${mp}` });
          continue;
        }
        try {
          await access(mp, constants.W_OK);
        } catch {
          skipped.push({ device: fs.device, reason: `not writable at ${mp}` });
          continue;
        }
        const s = await space(mp);
        const size = (await deviceSize(fs.device)) ?? s.total;
        drives.push({
          device: fs.device,
          uuid: fs.uuid,
          label: fs.label,
          fstype: fs.fstype,
          mountpoint: mp,
          totalBytes: size,
          freeBytes: s.free,
          usableBytes: usableBytes(size, s.free),
        });
        continue;
      }
      let free: number;
      let total: number;
      if (EXT.includes(fs.fstype)) {
        const r = await readExt(fs.device, options.signature);
        if (!r.signed) continue;
        free = r.free;
        total = 0;
      } else {
        const found = await withProbeMount(fs, options.runDir, probes++, async (p) =>
          (await hasSignature(p, options.signature)) ? await space(p) : undefined,
        );
        if (!found) continue;
        free = found.free;
        total = found.total;
      }
      const size = (await deviceSize(fs.device)) ?? total;
      drives.push({
        device: fs.device,
        uuid: fs.uuid,
        label: fs.label,
        fstype: fs.fstype,
        mountpoint: undefined,
        totalBytes: size,
        freeBytes: free,
        usableBytes: usableBytes(size, free),
      });
    } catch (e) {
      // A filesystem that will not mount is not ours to judge unless it is signed; say so in the log.
      log.verbose('could not look at a filesystem for the cache signature', { device: fs.device, err: e });
    }
  }
  const ordered = orderDrives(drives);
  log.verbose('cache drives', {
    signature: options.signature,
    drives: ordered.map((d) => ({
      device: d.device,
      total: d.totalBytes,
      free: d.freeBytes,
      at: d.mountpoint,
    })),
  });
  return { drives: ordered, skipped };
}
