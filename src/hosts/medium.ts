/**
 * The backup medium (docs/hosts.md): an ext4 filesystem labelled HAVEN-BACKUP holding
 * a stored archive at `haven/backup.tar.gz`, where Haven's ReaR configuration looks for it at
 * recovery (rear-config.ts). A drill attaches it as a disk; `haven host medium` writes it to a
 * file or a USB stick for a recovery on new hardware. Made with `mke2fs -d` (e2fsprogs), without
 * mounting anything; the archive is linked into the staging tree where the filesystem allows,
 * else copied.
 */
import { constants } from 'node:fs';
import { copyFile, link, mkdir, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../core/exec.ts';
import { ARCHIVE_PREFIX, MEDIUM_LABEL } from './rear-config.ts';

const MiB = 1024 * 1024;

/** Room the filesystem needs beyond the archive: metadata, the journal, a margin. */
export function mediumBytes(archiveBytes: number): number {
  return Math.ceil((archiveBytes * 1.04 + 32 * MiB) / MiB) * MiB;
}

export async function makeBackupMedium(archive: string, output: string, workDir: string): Promise<number> {
  const root = join(workDir, 'medium-root');
  await rm(root, { recursive: true, force: true });
  await mkdir(join(root, ARCHIVE_PREFIX), { recursive: true });
  const inTree = join(root, ARCHIVE_PREFIX, 'backup.tar.gz');
  try {
    await link(archive, inTree);
  } catch {
    await copyFile(archive, inTree, constants.COPYFILE_FICLONE);
  }
  try {
    const size = mediumBytes((await stat(archive)).size);
    const out = await stat(output).catch(() => null);
    if (!out?.isBlockDevice()) {
      const fh = await open(output, 'w', 0o644);
      await fh.truncate(size);
      await fh.close();
    }
    // No reserved blocks and root-owned files: a read-only medium for the rescue system.
    await exec(
      'mke2fs',
      ['-q', '-F', '-t', 'ext4', '-L', MEDIUM_LABEL, '-m', '0', '-E', 'root_owner=0:0', '-d', root, output],
      {
        timeoutMs: 3600_000,
      },
    );
    return out?.isBlockDevice() ? out.size : size;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
