/**
 * Copy-on-write overlays: a qcow2 file whose backing file is a raw generation image. A domain
 * booted through overlays writes only into them, so the generation stays byte-identical (the
 * store's invariants hold while a copy runs), and a persistent bitmap in each overlay gives
 * failback its map of what changed.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, exec } from '../core/exec.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { qemuToolError } from '../virt/index.ts';

/** Creates `path` as a qcow2 overlay of the raw image `backing` (absolute path). */
export async function createOverlay(
  path: string,
  backing: string,
  options: { log?: Logger } = {},
): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', backing, '-F', 'raw', path];
  (options.log ?? silentLogger).debug('qemu-img', { args });
  try {
    await exec('qemu-img', args, { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
  } catch (e) {
    if (e instanceof CommandError) throw qemuToolError('qemu-img', args, e.result.stderr, e.result.code);
    throw e;
  }
}

/** The overlay file of a store disk inside an overlay directory. */
export function overlayPath(dir: string, disk: string): string {
  return join(dir, `${disk}.qcow2`);
}

/**
 * Creates a directory with exactly this mode (the umask would narrow it): 0o755 for overlays and
 * logs, 0o1777 where QEMU, running as its own user, creates sockets.
 */
export async function makeDir(dir: string, mode = 0o755): Promise<string> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, mode);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
