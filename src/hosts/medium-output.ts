/**
 * Where `haven host medium` may write (docs/hosts.md): a new file, an existing regular file only
 * with --force, or a whole block device that nothing mounts (itself, a partition or a volume on
 * it: lsblk reads the kernel's mount table and the device's holders) and that is large enough.
 * Never a path inside the store: nothing stored is overwritten. Everything here only looks; the
 * checks run before a byte is written.
 */
import { realpath, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { exec } from '../core/exec.ts';
import { formatBytes } from '../core/units.ts';
import { hostError } from './errors.ts';

export interface OutputTarget {
  path: string;
  /** A block device (written in place), else a regular file. */
  device: boolean;
  /** A file that exists already (overwritten: --force was given). */
  exists: boolean;
  /** A device's size in bytes. */
  deviceBytes?: number;
}

interface LsblkNode {
  path?: string;
  name: string;
  size?: number | string;
  mountpoint?: string | null;
  mountpoints?: (string | null)[];
  children?: LsblkNode[];
}

function invalid(path: string, flag: string, why: string) {
  return hostError('HOST_OUTPUT_INVALID', 'usage', `${flag} ${path}: ${why}`, {
    hint: 'Name a file in an existing directory outside the store, or a whole block device (`lsblk` lists them).',
    details: { path },
  });
}

/** What is mounted from the device or anything on it (partitions, volumes, swap). */
function mountsIn(node: LsblkNode): string[] {
  const own = [...(node.mountpoints ?? []), node.mountpoint].filter((m): m is string => !!m);
  return [
    ...new Set(own.map((m) => `${node.path ?? node.name} on ${m}`)),
    ...(node.children ?? []).flatMap(mountsIn),
  ];
}

async function blockDevice(path: string): Promise<OutputTarget> {
  const { stdout } = await exec('lsblk', ['-J', '-b', '-o', 'PATH,NAME,SIZE,MOUNTPOINT', path]);
  const root = (JSON.parse(stdout) as { blockdevices: LsblkNode[] }).blockdevices[0];
  if (!root) throw invalid(path, 'the device', 'lsblk does not know it');
  const mounts = [...new Set(mountsIn(root))];
  if (mounts.length > 0) {
    throw hostError('HOST_DEVICE_MOUNTED', 'refused', `${path} is in use: ${mounts.join(', ')}`, {
      hint: `Unmount it (\`umount\`) if it is the stick to write, or name another device (\`lsblk\` lists them); nothing was written.`,
      details: { path, mounts },
    });
  }
  return { path, device: true, exists: true, deviceBytes: Number(root.size ?? 0) };
}

/** Checks one output before anything is written (`flag` names it in messages). */
async function inspectOutput(
  given: string,
  o: { flag: string; force: boolean; storeLocation: string },
): Promise<OutputTarget> {
  const path = resolve(given);
  const st = await stat(path).catch(() => null);
  if (st?.isBlockDevice()) return blockDevice(path);
  if (st && !st.isFile()) throw invalid(path, o.flag, 'is neither a regular file nor a block device');
  const dir = await realpath(dirname(path)).catch(() => null);
  if (!dir) throw invalid(path, o.flag, `the directory ${dirname(path)} does not exist`);
  const store = await realpath(o.storeLocation);
  if (dir === store || dir.startsWith(store + sep))
    throw invalid(path, o.flag, `is inside the store ${store}`);
  if (st && !o.force) {
    throw hostError('HOST_OUTPUT_EXISTS', 'conflict', `${path} exists already (${formatBytes(st.size)})`, {
      hint: 'Name a new file, or give `--force` to overwrite it; nothing was written.',
      details: { path },
    });
  }
  return { path, device: false, exists: st !== null };
}

/** `--to` and, when given, `--iso`: each checked, and never the same. */
export async function inspectOutputs(
  output: string,
  iso: string | undefined,
  o: { force: boolean; storeLocation: string },
): Promise<{ medium: OutputTarget; iso?: OutputTarget }> {
  const medium = await inspectOutput(output, { ...o, flag: '--to' });
  if (iso === undefined) return { medium };
  const second = await inspectOutput(iso, { ...o, flag: '--iso' });
  if (second.path === medium.path) throw invalid(second.path, '--iso', 'is the --to path too');
  return { medium, iso: second };
}

/** A device must hold `bytes`; a file grows to whatever is written. */
export function requireRoom(target: OutputTarget, bytes: number, what: string): void {
  if (target.deviceBytes === undefined || target.deviceBytes >= bytes) return;
  throw hostError(
    'HOST_DEVICE_TOO_SMALL',
    'resource',
    `${target.path} holds ${formatBytes(target.deviceBytes)}; ${what} needs ${formatBytes(bytes)}`,
    {
      hint: 'Use a larger USB stick or disk, or write a file (`--to FILE`) and copy it where it fits; nothing was written.',
      details: { path: target.path, deviceBytes: target.deviceBytes, needed: bytes },
    },
  );
}
