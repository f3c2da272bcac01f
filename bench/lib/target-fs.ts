/**
 * Where the benchmark's copies go: a directory of the run (the machine's own filesystem, ext4
 * here), or a fresh XFS filesystem with reflinks on a loop device, as an RHEL-style DR target has.
 * Every tool writes its copies to the same place, so the comparison stays fair; the source image
 * stays where it is.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export type TargetFs = 'local' | 'xfs';

export interface TargetDir {
  dir: string;
  fs: string;
  /** Unmounts and detaches what was made (idempotent). */
  release(): void;
}

export function parseTargetFs(v: string): TargetFs {
  if (v === 'local' || v === 'xfs') return v;
  throw new Error(`--target-fs must be local or xfs, not ${v}`);
}

/**
 * `xfs`: a sparse file of `sizeBytes` under `work`, attached with direct I/O (so the loop device
 * adds no second page cache), made XFS with reflink=1, mounted at `work/targets`.
 */
export function targetDir(work: string, kind: TargetFs, sizeBytes: number): TargetDir {
  if (kind === 'local') return { dir: work, fs: 'local', release: () => {} };
  const file = join(work, 'targets.xfs');
  const dir = join(work, 'targets');
  mkdirSync(dir, { recursive: true });
  execFileSync('truncate', ['-s', String(sizeBytes), file]);
  const device = execFileSync('losetup', ['--direct-io=on', '--find', '--show', file], {
    encoding: 'utf8',
  }).trim();
  let mounted = false;
  const release = () => {
    if (mounted) execFileSync('umount', [dir]);
    mounted = false;
    execFileSync('losetup', ['-d', device], { stdio: 'ignore' });
    rmSync(file, { force: true });
  };
  try {
    execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', device]);
    execFileSync('mount', [device, dir]);
    mounted = true;
    // QEMU (libvirt-qemu) and the tools write here too.
    chmodSync(dir, 0o1777);
  } catch (e) {
    release();
    throw e;
  }
  let released = false;
  return {
    dir,
    fs: `xfs (reflink) on ${device}`,
    release: () => {
      if (released) return;
      released = true;
      release();
    },
  };
}
