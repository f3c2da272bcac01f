/**
 * A small ext4 filesystem on a loop device, for tests of what happens when a store fills up.
 * Unmounted and removed after the test (also when it fails).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';

/** Mounts a fresh `sizeMiB` ext4 (no reserved blocks, no journal) and returns its mount point. */
export async function loopFs(t: TestContext, sizeMiB: number, prefix = 'full-disk-'): Promise<string> {
  await mkdir(ROOT, { recursive: true });
  const dir = await mkdtemp(join(ROOT, prefix));
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

/** Fills the filesystem with a file until `leaveBytes` remain free. */
export function fill(mnt: string, name: string, leaveBytes: number): string {
  const path = join(mnt, name);
  const fs = execFileSync('stat', ['-f', '-c', '%a %S', mnt]).toString().trim().split(' ').map(Number);
  const free = fs[0]! * fs[1]!;
  execFileSync('fallocate', ['-l', String(Math.max(0, free - leaveBytes)), path]);
  return path;
}
