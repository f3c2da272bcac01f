/**
 * A small loop-mounted ext4 filesystem for tests of a full filesystem (store-full-disk.test.ts,
 * store-fault-matrix.test.ts): no reserved blocks, no journal, unmounted and removed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

export async function loopFs(t: TestContext, sizeMiB: number): Promise<string> {
  await mkdir(ROOT, { recursive: true });
  const dir = await mkdtemp(join(ROOT, 'full-disk-'));
  const img = join(dir, 'fs.img');
  const mnt = join(dir, 'mnt');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', img]);
  execFileSync('mkdir', ['-p', mnt]);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  t.after(async () => {
    try {
      execFileSync('umount', [mnt]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  return mnt;
}

/**
 * Fills the filesystem with a file until about `leaveBytes` remain free (less when the exact
 * amount cannot be allocated: the file's own block map takes room too).
 */
export function fill(mnt: string, name: string, leaveBytes: number): string {
  const path = join(mnt, name);
  const fs = execFileSync('stat', ['-f', '-c', '%a %S', mnt]).toString().trim().split(' ').map(Number);
  const free = fs[0]! * fs[1]!;
  for (let want = Math.max(0, free - leaveBytes); ; want -= 64 * 1024) {
    try {
      execFileSync('fallocate', ['-l', String(Math.max(0, want)), path], { stdio: 'pipe' });
      return path;
    } catch (e) {
      if (want <= 0) throw e;
    }
  }
}
