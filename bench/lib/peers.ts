/**
 * The peer tools the replication benchmark measures Haven against, each run exactly as an
 * operator would run it here (Debian packages), measured with runMeasured:
 *
 * - `qemu-img convert` of the live image to raw (`-U`: the guest holds the image's lock), the
 *   local copy limit. It never flushes its output (strace shows no fsync or fdatasync), so its
 *   copy may still be in the page cache when it returns; `flushFile` then times making it
 *   durable, as Haven's copy is when `haven protect` returns. The same with `-t none -T none`
 *   (O_DIRECT on both sides, a final fdatasync: durable as it returns) is issue 19's reference;
 * - `virtnbdbackup` (full or inc, into one backup directory) and `virtnbdrestore` of that
 *   directory's whole chain into a fresh directory: the restored qcow2 is the bootable copy;
 * - `rsync --inplace` of the stopped image onto the previous copy, with `--no-whole-file` (its
 *   delta algorithm; local rsync defaults to whole-file) or without it. rsync does not flush
 *   either, so `flushFile` times that too;
 * - `durableWriteFloor`, not a peer but the target disk's lower bound: the changed bytes written
 *   once, sequentially, through O_DIRECT and fsynced. No tool that leaves a durable copy of an
 *   incremental change can finish faster than this on the same filesystem.
 */
import { join } from 'node:path';
import { type MeasuredRun, mustRun } from './proc.ts';

export function qemuImgConvert(image: string, out: string): Promise<MeasuredRun> {
  return mustRun('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', image, out]);
}

/**
 * Issue 19 goal 3's reference: `qemu-img convert -U -t none -T none`, past the page cache on
 * both sides (O_DIRECT). With `-t none` qemu-img fdatasyncs its output before it exits (seen
 * under strace, qemu-img 7.2), so its copy is durable when it returns.
 */
export function qemuImgConvertDirect(image: string, out: string): Promise<MeasuredRun> {
  return mustRun('qemu-img', [
    'convert',
    '-U',
    '-t',
    'none',
    '-T',
    'none',
    '-f',
    'qcow2',
    '-O',
    'raw',
    image,
    out,
  ]);
}

/** `sync --data FILE`: fdatasync of one file (what a durable copy costs after qemu-img). */
export function flushFile(path: string): Promise<MeasuredRun> {
  return mustRun('sync', ['--data', path]);
}

/** `sync` of everything, untimed before each measured tool: no tool pays for another's writeback. */
export function settle(): Promise<MeasuredRun> {
  return mustRun('sync', []);
}

/**
 * One virtnbdbackup run. Its NBD socket and scratch files go to `runDir`, which QEMU (as
 * libvirt-qemu) must be able to write. No progress bar, no compression (its default).
 */
export function virtnbdbackup(o: {
  domain: string;
  level: 'full' | 'inc';
  backupDir: string;
  runDir: string;
}): Promise<MeasuredRun> {
  return mustRun('virtnbdbackup', [
    '-d',
    o.domain,
    '-l',
    o.level,
    '-o',
    o.backupDir,
    '-n',
    '-S',
    o.runDir,
    '-f',
    join(o.runDir, 'virtnbdbackup.sock'),
  ]);
}

/** Restores a backup directory's whole chain (full + every inc) into `outDir` (qcow2 images). */
export function virtnbdrestore(o: {
  backupDir: string;
  outDir: string;
  runDir: string;
}): Promise<MeasuredRun> {
  return mustRun('virtnbdrestore', [
    '-i',
    o.backupDir,
    '-o',
    o.outDir,
    '-n',
    '-f',
    join(o.runDir, 'virtnbdrestore.sock'),
    '-L',
    join(o.runDir, 'virtnbdrestore.log'),
  ]);
}

export function rsyncInplace(src: string, dst: string, wholeFile: boolean): Promise<MeasuredRun> {
  return mustRun('rsync', [wholeFile ? '--whole-file' : '--no-whole-file', '--inplace', src, dst]);
}

/**
 * `dd` of `bytes` (rounded up to 4 MiB) from `src` (page-cached) into a fresh file `dst`, in
 * 4 MiB O_DIRECT writes, then fsync: the cheapest durable write of that many bytes here.
 */
export function durableWriteFloor(src: string, dst: string, bytes: number): Promise<MeasuredRun> {
  const count = String(Math.max(1, Math.ceil(bytes / (4 << 20))));
  return mustRun('dd', [
    `if=${src}`,
    `of=${dst}`,
    'bs=4M',
    `count=${count}`,
    'oflag=direct',
    'conv=fsync',
    'status=none',
  ]);
}

/** The first line of a tool's --version output, for the report. */
export async function toolVersion(command: string, args = ['--version']): Promise<string> {
  try {
    const r = await mustRun(command, args);
    return (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? '';
  } catch (e) {
    return `unavailable (${(e as Error).message.split('\n')[0]})`;
  }
}
