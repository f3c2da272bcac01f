/**
 * The live guest the replication benchmark copies: the test guest (TCG, docs/design.md §8) with one
 * qcow2 disk whose first part holds random data, written into the image before boot (the guest's
 * own writes are slow under TCG), and changed later by the guest itself, so that incremental
 * runs find the change through the dirty bitmap of a running domain.
 *
 * Its files live under the benchmark root (guests/), not the test root.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../src/core/exec.ts';
import type { TestGuest } from '../../test/fixtures/guest/index.ts';
import { BENCH_ROOT } from './fixtures.ts';
import { type MeasuredRun, mustRun } from './proc.ts';

/** The guest's 64 KiB write unit (test/fixtures/guest/init). */
export const GUEST_BLOCK = 65536;

export interface BenchGuest {
  guest: TestGuest;
  /** The qcow2 image of vda. */
  image: string;
  cleanup(): Promise<void>;
}

/**
 * Creates the domain with a `diskSize` qcow2 holding `randomSource` at offset 0, and starts it.
 * The image is written by qemu-img before the domain exists: the guest sees it as its own data.
 */
export async function createBenchGuest(o: {
  prefix: string;
  diskSize: number;
  randomSource: string;
  /** Receives the cleanup at once, so an interrupt while the guest is made still removes it. */
  onCleanup?: (cleanup: () => Promise<void>) => void;
}): Promise<BenchGuest> {
  process.env.HAVEN_TEST_ROOT ??= join(BENCH_ROOT, 'guests');
  mkdirSync(process.env.HAVEN_TEST_ROOT, { recursive: true });
  // Loaded only now: the fixture reads HAVEN_TEST_ROOT when it is first imported.
  const { createTestGuest } = await import('../../test/fixtures/guest/index.ts');
  const after: Array<() => unknown> = [];
  const cleanup = async () => {
    for (const fn of after.reverse()) await fn();
    after.length = 0;
  };
  o.onCleanup?.(cleanup);
  try {
    const guest = await createTestGuest(
      { after: (fn) => after.push(fn) },
      { prefix: o.prefix, disks: [{ sizeMiB: o.diskSize / 1024 / 1024 }], start: false },
    );
    const image = guest.disks[0]!.path;
    await exec('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', o.randomSource, image]);
    await exec('qemu-img', ['resize', '-q', '-f', 'qcow2', image, String(o.diskSize)]);
    await guest.start();
    return { guest, image, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * The guest writes `blocks` random 64 KiB blocks at random places of vda (as fast as it can,
 * each with O_DIRECT), then flushes. Returns the number of writes the guest reports.
 */
export async function guestChange(guest: TestGuest, blocks: number): Promise<number> {
  await controlReady(guest);
  const from = (await guest.serial()).length;
  const started = await guest.command(`random start vda 0 ${blocks}`);
  if (started !== 'ok') throw new Error(`guest ${guest.name}: random start answered ${started}`);
  const done = await guest.waitForSerial(/^HAVEN random done disk=vda writes=(\d+)/m, 30 * 60_000, from);
  // The writer has finished; stop clears its state so the next change can start one.
  const stopped = await guest.command('random stop');
  if (!stopped.startsWith('ok')) throw new Error(`guest ${guest.name}: random stop answered ${stopped}`);
  const synced = await guest.command('sync');
  if (synced !== 'ok') throw new Error(`guest ${guest.name}: sync answered ${synced}`);
  return Number(done[1]);
}

/**
 * Waits until the guest's control channel answers (a harmless `sync`). The guest says "ready"
 * a moment before its reader opens the port, and bytes arriving in between are lost: a command
 * sent right after a start may lose its first characters (seen as "ack random error
 * unknown-command"), so a probe whose loss is harmless goes first, repeated until acked.
 */
async function controlReady(guest: TestGuest, attempts = 6): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      const r = await guest.command('sync', 10_000);
      if (r === 'ok') return;
      throw new Error(`sync answered ${r}`);
    } catch (e) {
      if (i >= attempts) throw new Error(`guest ${guest.name}: control channel not answering: ${String(e)}`);
    }
  }
}

async function virsh(args: string[]): Promise<string> {
  return (await exec('virsh', ['-c', 'qemu:///system', ...args])).stdout;
}

/** Checkpoint names of a domain, oldest first. */
export async function checkpointNames(domain: string): Promise<string[]> {
  const out = await virsh(['checkpoint-list', '--domain', domain, '--name', '--topological']);
  return out
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Hides the checkpoints whose names start with `prefix` from other tools: their metadata is
 * removed from libvirt (`--metadata`: the bitmaps stay in the image and keep recording), their
 * XML kept for `restoreCheckpoints`. virtnbdbackup refuses to run beside checkpoints it did not
 * create ("Foreign checkpoint found"), and both tools must copy the same live disk.
 */
export async function hideCheckpoints(domain: string, prefix: string): Promise<string[]> {
  const xmls: string[] = [];
  for (const name of await checkpointNames(domain)) {
    if (!name.startsWith(prefix)) continue;
    xmls.push(await virsh(['checkpoint-dumpxml', '--domain', domain, '--checkpointname', name]));
  }
  // Newest first, so that no checkpoint loses its parent's metadata while it still exists.
  for (const xml of [...xmls].reverse()) {
    const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!;
    await virsh(['checkpoint-delete', '--domain', domain, '--checkpointname', name, '--metadata']);
  }
  return xmls;
}

/**
 * Redefines checkpoints hidden by `hideCheckpoints`, oldest first. A parent the other tool has
 * deleted meanwhile is dropped from the XML: libvirt keeps one bitmap per checkpoint, each
 * recording since its own creation, so the parent link does not change what a bitmap holds.
 */
export async function restoreCheckpoints(domain: string, xmls: string[], scratchDir: string): Promise<void> {
  const existing = new Set(await checkpointNames(domain));
  for (const [i, xml] of xmls.entries()) {
    const parent = /<parent>\s*<name>([^<]+)<\/name>\s*<\/parent>/.exec(xml);
    const fixed = parent && !existing.has(parent[1]!) ? xml.replace(parent[0], '') : xml;
    const file = join(scratchDir, `checkpoint-${i}.xml`);
    writeFileSync(file, fixed);
    await virsh(['checkpoint-create', '--domain', domain, '--xmlfile', file, '--redefine']);
    existing.add(/<name>([^<]+)<\/name>/.exec(xml)![1]!);
  }
}

/** Deletes checkpoints (metadata and bitmaps) whose names start with `prefix`, newest first. */
export async function deleteCheckpoints(domain: string, prefix: string): Promise<void> {
  const names = (await checkpointNames(domain)).filter((n) => n.startsWith(prefix)).reverse();
  for (const name of names) await virsh(['checkpoint-delete', '--domain', domain, '--checkpointname', name]);
}

export interface SourceFloor {
  /** libvirt starting the incremental pull backup (virsh's own start taken off). */
  backupBeginSeconds: number;
  /** nbdcopy reading exactly the dirty extents of the export (fixed costs taken off, below). */
  readSeconds: number;
  /** The bytes the bitmap marked dirty, which that read read. */
  dirtyBytes: number;
}

/**
 * Times what every incremental run needs from the source, with no Haven code: libvirt starting
 * an incremental pull-mode backup of `disk` from checkpoint `from`, exported on a unix socket
 * (bare `virsh backup-begin`; virsh's own start is timed apart and not counted), and `nbdcopy`
 * reading the changed extents of that export to `null:`. Then it aborts the backup, untimed. It
 * creates no checkpoint and leaves `from` and its bitmap as they were, so the next run of any
 * tool is unaffected.
 *
 * nbdcopy cannot select a dirty-bitmap context itself (it reads every allocated extent, and the
 * export reports the whole image's allocation), so the dirty extents (`nbdinfo --map` of
 * `qemu:dirty-bitmap:backup-<disk>`, untimed) go into an nbdkit extentlist filter in front of
 * the export, which reports them as the only data and everything else as holes; nbdcopy, with
 * requests of the bitmap's 64 KiB granularity, then reads exactly those bytes (nbdkit's stats
 * filter confirmed it). The same nbdcopy with an empty list (nbdcopy and nbdkit starting, the
 * handshakes, no read) is timed right before and taken off, so what is left is the read itself,
 * through one proxy hop; the map query is not counted either, so this part of the floor is a
 * lower bound of what reading the change costs any tool.
 */
export async function timeSourceFloor(o: {
  domain: string;
  disk: string;
  from: string;
  runDir: string;
}): Promise<SourceFloor> {
  const xml = join(o.runDir, 'floor-backup.xml');
  const scratch = join(o.runDir, 'floor.scratch');
  const socket = join(o.runDir, 'floor.sock');
  writeFileSync(
    xml,
    `<domainbackup mode='pull'><incremental>${o.from}</incremental>` +
      `<server transport='unix' socket='${socket}'/>` +
      `<disks><disk name='${o.disk}' backup='yes' type='file'><scratch file='${scratch}'/></disk></disks>` +
      `</domainbackup>`,
  );
  const timed = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return (performance.now() - t) / 1000;
  };
  // virsh's own start and connection, timed alone and taken off, so only libvirt's work is left.
  const noop = await timed(() => virsh(['domid', o.domain]));
  const backupBeginSeconds = Math.max(
    0,
    (await timed(() => virsh(['backup-begin', '--domain', o.domain, '--backupxml', xml]))) - noop,
  );
  try {
    const dirty = await dirtyExtents(socket, o.disk);
    const list = join(o.runDir, 'floor-dirty.list');
    const none = join(o.runDir, 'floor-none.list');
    writeFileSync(list, dirty.map((e) => `${e.offset} ${e.length}\n`).join(''));
    writeFileSync(none, '');
    const copy = (extents: string) =>
      exec('nbdcopy', [
        `--request-size=${GUEST_BLOCK}`,
        '--',
        '[',
        'nbdkit',
        '-r',
        '--filter=extentlist',
        'nbd',
        `socket=${socket}`,
        `export=${o.disk}`,
        `extentlist=${extents}`,
        ']',
        'null:',
      ]);
    const fixed = await timed(() => copy(none));
    const whole = await timed(() => copy(list));
    return {
      backupBeginSeconds,
      readSeconds: Math.max(0, whole - fixed),
      dirtyBytes: dirty.reduce((n, e) => n + e.length, 0),
    };
  } finally {
    await endBackup(o.domain);
  }
}

export interface FullCopyFloor {
  /** libvirt starting the full pull backup (virsh's own start taken off). */
  backupBeginSeconds: number;
  /** `nbdcopy --flush` of the whole export into a raw file: durable when it returns. */
  copy: MeasuredRun;
}

/**
 * Times a full copy as any tool that copies a live disk through libvirt must make it, with no
 * Haven code: a full pull-mode backup of `disk` exported on a unix socket (bare `virsh
 * backup-begin`, virsh's own start timed apart and taken off), then `nbdcopy --flush` of the
 * whole export into the raw file `out` (nbdcopy follows the export's allocation, so it reads the
 * data and leaves holes, as Haven does; `--flush` makes the copy durable before it exits). The
 * backup is aborted afterwards, untimed; no checkpoint is created.
 */
export async function timeFullCopyFloor(o: {
  domain: string;
  disk: string;
  out: string;
  runDir: string;
}): Promise<FullCopyFloor> {
  const xml = join(o.runDir, 'full-floor-backup.xml');
  const scratch = join(o.runDir, 'full-floor.scratch');
  const socket = join(o.runDir, 'full-floor.sock');
  writeFileSync(
    xml,
    `<domainbackup mode='pull'><server transport='unix' socket='${socket}'/>` +
      `<disks><disk name='${o.disk}' backup='yes' type='file'><scratch file='${scratch}'/></disk></disks>` +
      `</domainbackup>`,
  );
  const t0 = performance.now();
  await virsh(['domid', o.domain]);
  const t1 = performance.now();
  await virsh(['backup-begin', '--domain', o.domain, '--backupxml', xml]);
  const backupBeginSeconds = Math.max(0, (performance.now() - t1 - (t1 - t0)) / 1000);
  try {
    const copy = await mustRun('nbdcopy', ['--flush', `nbd+unix:///${o.disk}?socket=${socket}`, o.out]);
    return { backupBeginSeconds, copy };
  } finally {
    await endBackup(o.domain);
  }
}

/** The dirty extents of a pull-mode backup export (libvirt names its bitmap context backup-<disk>). */
async function dirtyExtents(
  socket: string,
  disk: string,
): Promise<Array<{ offset: number; length: number }>> {
  const out = await exec('nbdinfo', [
    '--json',
    `--map=qemu:dirty-bitmap:backup-${disk}`,
    `nbd+unix:///${disk}?socket=${socket}`,
  ]);
  const map = JSON.parse(out.stdout) as Array<{ offset: number; length: number; type: number }>;
  return map.filter((e) => e.type !== 0);
}

/** Aborts the domain's backup job and waits until QEMU has torn the export down. */
async function endBackup(domain: string): Promise<void> {
  await virsh(['domjobabort', '--domain', domain]);
  // The abort returns before QEMU has torn the export down; the next backup must not overlap it.
  for (let i = 0; i < 100; i++) {
    const r = await exec('virsh', ['-c', 'qemu:///system', 'backup-dumpxml', '--domain', domain], {
      okCodes: [0, 1],
    });
    if (r.code !== 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
}
