/**
 * Whole-image copies for a new slot while fewer than N generations exist (DESIGN §4.2): a
 * reflink where the filesystem has them (XFS, btrfs: instant, no space used), otherwise a copy
 * that keeps holes as holes (GNU cp: --sparse=auto copies only the data extents, in the kernel
 * with copy_file_range; =always would also read every byte looking for zeros).
 */
import { CommandError, exec } from '../../core/exec.ts';
import { storeError } from '../errors.ts';
import { fsyncFile } from './files.ts';

export async function copyImage(from: string, to: string): Promise<void> {
  try {
    await exec('cp', ['--reflink=auto', '--sparse=auto', '--', from, to]);
  } catch (e) {
    if (e instanceof CommandError && /No space left/i.test(e.result.stderr)) {
      throw storeError('NO_SPACE', 'resource', `no space left copying ${from} to ${to}`, {
        hint: 'Free space on the target filesystem (or keep fewer copies), then run again; stored generations are intact.',
        cause: e,
      });
    }
    throw e;
  }
  await fsyncFile(to);
}
