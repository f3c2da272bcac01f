/**
 * qemu-img: image facts (format, virtual size, persistent dirty bitmaps and their flags) and
 * bitmap maintenance on images no QEMU has open.
 *
 * `info` always runs with -U (force share) so it also works on the image of a running server.
 * On such an image the bitmaps listed are the ones written at QEMU's last start and carry the
 * `in-use` flag; bitmaps created since exist only in QEMU's memory, so for a running server ask
 * libvirt instead (checkpoints.ts validates through libvirt there).
 */
import { CommandError, exec } from '../core/exec.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { qemuToolError, VirtError } from './errors.ts';

/** Flags qemu-img reports on a persistent bitmap (qapi Qcow2BitmapInfoFlags). */
export type BitmapFlag = 'in-use' | 'auto' | string;

export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: BitmapFlag[];
}

export interface ImageInfo {
  path: string;
  format: string;
  virtualSize: number;
  /** Bytes the image occupies on its filesystem. */
  actualSize: number | undefined;
  clusterSize: number | undefined;
  backingFile: string | undefined;
  /** Persistent bitmaps (qcow2 only; empty for raw). */
  bitmaps: BitmapInfo[];
  /** qcow2's "corrupt" bit. */
  corrupt: boolean;
}

interface RawInfo {
  'virtual-size'?: number;
  'actual-size'?: number;
  'cluster-size'?: number;
  format?: string;
  'backing-filename'?: string;
  'format-specific'?: {
    type?: string;
    data?: {
      bitmaps?: Array<{ name?: string; granularity?: number; flags?: string[] }>;
      corrupt?: boolean;
    };
  };
}

async function qemuImg(args: string[], log: Logger, timeoutMs = 120_000): Promise<string> {
  log.debug('qemu-img', { args });
  try {
    return (await exec('qemu-img', args, { timeoutMs, env: { ...process.env, LC_ALL: 'C' } })).stdout;
  } catch (e) {
    if (e instanceof CommandError) throw qemuToolError('qemu-img', args, e.result.stderr, e.result.code);
    throw e;
  }
}

/** `qemu-img info -U --output=json`: format (probed unless given), sizes and bitmaps. */
export async function qemuImgInfo(
  path: string,
  options: { format?: string; log?: Logger } = {},
): Promise<ImageInfo> {
  const args = ['info', '-U', '--output=json', ...(options.format ? ['-f', options.format] : []), path];
  const out = await qemuImg(args, options.log ?? silentLogger);
  let raw: RawInfo;
  try {
    raw = JSON.parse(out) as RawInfo;
  } catch (e) {
    throw new VirtError('VIRT_QEMU_IMG_FAILED', `qemu-img info ${path}: output is not JSON`, { cause: e });
  }
  const data = raw['format-specific']?.data;
  return {
    path,
    format: raw.format ?? 'unknown',
    virtualSize: raw['virtual-size'] ?? 0,
    actualSize: raw['actual-size'],
    clusterSize: raw['cluster-size'],
    backingFile: raw['backing-filename'],
    bitmaps: (data?.bitmaps ?? []).map((b) => ({
      name: b.name ?? '',
      granularity: b.granularity ?? 0,
      flags: b.flags ?? [],
    })),
    corrupt: data?.corrupt === true,
  };
}

export interface BitmapOptions {
  log?: Logger;
}

/** Adds a persistent, enabled bitmap (qcow2 only). */
export async function bitmapAdd(
  path: string,
  name: string,
  options: BitmapOptions & { granularity?: number; disabled?: boolean } = {},
): Promise<void> {
  const args = ['bitmap', '--add', '-f', 'qcow2'];
  if (options.granularity) args.push('-g', String(options.granularity));
  if (options.disabled) args.push('--disable');
  await qemuImg([...args, path, name], options.log ?? silentLogger);
}

export async function bitmapRemove(path: string, name: string, options: BitmapOptions = {}): Promise<void> {
  await qemuImg(['bitmap', '--remove', '-f', 'qcow2', path, name], options.log ?? silentLogger);
}

/** Clears a bitmap: afterwards it records only changes from now on. */
export async function bitmapClear(path: string, name: string, options: BitmapOptions = {}): Promise<void> {
  await qemuImg(['bitmap', '--clear', '-f', 'qcow2', path, name], options.log ?? silentLogger);
}

/** The problem with one bitmap, or undefined when it can be trusted for an incremental read. */
export function bitmapProblem(
  info: ImageInfo,
  name: string,
): 'missing' | 'in-use' | 'inconsistent' | 'disabled' | undefined {
  const b = info.bitmaps.find((x) => x.name === name);
  if (!b) return 'missing';
  if (b.flags.includes('inconsistent')) return 'inconsistent';
  // On an image nobody has open, in-use means the QEMU that had it open died without saving it.
  if (b.flags.includes('in-use')) return 'in-use';
  // A disabled bitmap stopped recording at some point: changes after that are not in it.
  if (!b.flags.includes('auto')) return 'disabled';
  return undefined;
}
