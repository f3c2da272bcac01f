/**
 * A small loop-mounted ext4 filesystem for tests of a full filesystem (store-full-disk.test.ts,
 * store-fault-matrix.test.ts, host-store-full.test.ts): no reserved blocks, no journal, unmounted
 * and removed afterwards (also when the test fails). An error makes the kernel remount it
 * read-only (errors=remount-ro), which `forceReadOnly` uses.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
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
  execFileSync('mount', ['-o', 'loop,errors=remount-ro', img, mnt]);
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

/**
 * Makes the filesystem read-only under whoever writes to it, as the kernel does after an error
 * (ext4's test hook `trigger_fs_error`, with errors=remount-ro): from now on writes fail with
 * EROFS. A plain `mount -o remount,ro` is refused while a file is open for writing.
 */
export function forceReadOnly(mnt: string): void {
  const dev = basename(execFileSync('findmnt', ['-n', '-o', 'SOURCE', mnt]).toString().trim());
  writeFileSync(`/sys/fs/ext4/${dev}/trigger_fs_error`, 'haven fault matrix');
}

/** What an operator does after such an error: unmount, e2fsck, mount again read-write. */
export function repairAndRemount(mnt: string): void {
  const dev = execFileSync('findmnt', ['-n', '-o', 'SOURCE', mnt]).toString().trim();
  let img = execFileSync('losetup', ['-n', '-O', 'BACK-FILE', dev]).toString().trim();
  execFileSync('umount', [mnt]);
  // The old mount's superblock may still be released (and write its error state) after umount
  // returns: wait for its loop device to go, check the filesystem, and mount it again, until it
  // comes up read-write (-w: never the read-only fallback of mount(8)).
  for (let attempt = 1; ; attempt++) {
    if (!waitDetached(img) || attempt > 1) {
      // The old superblock is still alive on its loop device (a loaded machine has kept it for
      // minutes), and mount(8) reuses a loop device already attached to the same file, and with
      // it that superblock, read-only (emergency_ro). A copy of the image is a new file: a new
      // loop device and a fresh superblock; the old one writes nothing more (it is read-only).
      const copy = `${img.replace(/\.copy\d+$/, '')}.copy${attempt}`;
      execFileSync('cp', ['--sparse=always', img, copy]);
      img = copy;
    }
    try {
      execFileSync('e2fsck', ['-fy', img], { stdio: 'pipe' });
    } catch (e) {
      // Exit status 1: errors were corrected (e2fsck(8)).
      if ((e as { status?: number }).status !== 1) throw e;
    }
    let options = '';
    try {
      execFileSync('mount', ['-w', '-o', 'loop,errors=remount-ro', img, mnt], { stdio: 'pipe' });
      options = execFileSync('findmnt', ['-n', '-o', 'OPTIONS', mnt]).toString();
      if (/^rw,/.test(options) && !options.includes('emergency_ro')) return;
      execFileSync('umount', [mnt]);
    } catch (e) {
      if (attempt >= 8) throw e;
    }
    if (attempt >= 8) throw new Error(`${mnt} mounts read-only: ${options}`);
    execFileSync('sleep', ['0.5']);
  }
}

/**
 * Waits until no loop device is attached to `img`: e2fsck on an image the old mount still writes
 * (its error state, on a loaded machine seconds after umount) corrupts it, which then shows as
 * EUCLEAN or as a mount that comes up emergency_ro. A loop device still attached after 30 s is
 * asked to detach (it does once its superblock goes), and false says it is still there.
 */
function waitDetached(img: string): boolean {
  const attached = () => execFileSync('losetup', ['-j', img]).toString().trim();
  for (let i = 0; i < 300; i++) {
    if (!attached()) return true;
    execFileSync('sleep', ['0.1']);
  }
  for (const line of attached().split('\n')) {
    const dev = line.split(':')[0];
    if (dev) execFileSync('losetup', ['-d', dev], { stdio: 'pipe' });
  }
  return !attached();
}
