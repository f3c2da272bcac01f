/**
 * `haven host medium <host> --store PATH --to FILE|DEVICE [--iso FILE|DEVICE]`
 * (docs/hosts.md, docs/host-recovery.md): what a recovery on new hardware needs, from one stored
 * backup generation. The backup medium (medium.ts) goes to `--to`; the rescue ISO that
 * generation names goes to `--iso` as it is. The host is held meanwhile, so no backup rotates the
 * files away; both outputs are checked (medium-output.ts) and the files' digests compared before
 * anything is written. A file this run created is removed when writing it fails.
 */
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../core/log.ts';
import { ensureRunDir } from '../core/paths.ts';
import type { HostGeneration, HostHold } from '../store/host/index.ts';
import { HostStore } from '../store/host/index.ts';
import { checkGenerations, chooseBackup, rescueMissing } from './generation.ts';
import { makeBackupMedium, mediumBytes } from './medium.ts';
import { inspectOutputs, type OutputTarget, requireRoom } from './medium-output.ts';

export interface HostMediumOptions {
  store: { location: string; descriptor: HostStore['descriptor'] };
  host: string;
  /** Backup generation (1 = newest). */
  generation?: number;
  output: string;
  iso?: string;
  /** Overwrite existing regular files. */
  force?: boolean;
  /** Check the outputs and say what would be written; read no archive, write nothing. */
  dryRun?: boolean;
  /** Where a device's staging directory goes (a file's goes beside it). */
  runDir: string;
  log: Logger;
  /** How long to wait for a backup of the host to finish storing (default 10 min). */
  lockWaitMs?: number;
  signal?: AbortSignal;
  /** Bytes read or written so far of all the run's reading and writing (`total` bytes). */
  onProgress?: (phase: 'checking' | 'writing', done: number, total: number) => void;
}

export interface MediumOutput {
  path: string;
  device: boolean;
  /** Bytes written (would be, in a dry run): the medium's filesystem, or the ISO. */
  bytes: number;
}

export interface HostMediumReport {
  host: string;
  store: string;
  dryRun: boolean;
  /** The store's digest algorithm; `digestChecked` says whether the files were compared. */
  digest: string;
  digestChecked: boolean;
  backup: { id: string; seq: number; takenAt: string; bytes: number };
  rescue: { id: string; seq: number; takenAt: string; bytes: number } | null;
  medium: MediumOutput;
  iso: MediumOutput | null;
  seconds: number;
}

const BUFFER_BYTES = 4 * 1024 * 1024;

function about(g: HostGeneration) {
  return { id: g.id, seq: g.seq, takenAt: g.takenAt, bytes: g.size };
}

export async function writeHostMedium(o: HostMediumOptions): Promise<HostMediumReport> {
  const t0 = Date.now();
  const log = o.log.child({ host: o.host });
  const hosts = new HostStore(o.store.location, o.store.descriptor, { log });
  const seq = o.generation ?? 1;
  const hold: HostHold | undefined = o.dryRun
    ? undefined
    : await hosts.hold(o.host, 'writing a backup medium', o.lockWaitMs ?? 600_000);
  try {
    const { backup, rescue } = await chooseBackup(hosts, o.host, seq);
    if (o.iso !== undefined && !rescue) {
      throw rescueMissing(
        o.host,
        seq,
        'Write the medium of a newer backup (--generation), or leave out --iso and boot rescue media made for the same layout.',
      );
    }
    const { medium, iso } = await inspectOutputs(o.output, o.iso, {
      force: o.force === true,
      storeLocation: o.store.location,
    });
    const mediumSize = mediumBytes(backup.size);
    requireRoom(medium, mediumSize, 'the backup medium');
    if (iso && rescue) requireRoom(iso, rescue.size, 'the rescue ISO');
    const report: HostMediumReport = {
      host: o.host,
      store: o.store.location,
      dryRun: o.dryRun === true,
      digest: o.store.descriptor.digest,
      digestChecked: false,
      backup: about(backup),
      rescue: rescue ? about(rescue) : null,
      medium: { path: medium.path, device: medium.device, bytes: medium.deviceBytes ?? mediumSize },
      iso: iso && rescue ? { path: iso.path, device: iso.device, bytes: rescue.size } : null,
      seconds: 0,
    };
    if (o.dryRun) return report;
    const files = iso && rescue ? [backup, rescue] : [backup];
    const total = files.reduce((n, g) => n + g.size, 0);
    let done = 0;
    await checkGenerations(
      hosts,
      o.host,
      files,
      `Write an older generation (--generation), and run \`haven verify --store ${o.store.location}\`; nothing was written.`,
      {
        ...(o.signal ? { signal: o.signal } : {}),
        onBytes: (n) => {
          done += n;
          o.onProgress?.('checking', done, total);
        },
      },
    );
    report.digestChecked = true;
    if (iso && rescue) {
      log.info('writing the rescue ISO', { to: iso.path, bytes: rescue.size });
      await created(iso, () => copyTo(hosts.filePath(o.host, rescue), iso, rescue.size, o));
    }
    log.info('writing the backup medium', { to: medium.path, archiveBytes: backup.size });
    await created(medium, () => writeMedium(hosts.filePath(o.host, backup), medium, o));
    report.seconds = (Date.now() - t0) / 1000;
    return report;
  } finally {
    await hold?.release();
  }
}

/** Claims a new file (O_EXCL: nobody else's file is overwritten without --force), runs `write`; removes it on failure. */
async function created(target: OutputTarget, write: () => Promise<void>): Promise<void> {
  if (!target.device) await (await open(target.path, target.exists ? 'w' : 'wx', 0o644)).close();
  try {
    await write();
  } catch (e) {
    if (!target.device) await rm(target.path, { force: true });
    throw e;
  }
}

async function writeMedium(archive: string, target: OutputTarget, o: HostMediumOptions): Promise<void> {
  // Staged beside a file (a hard link when the store shares its filesystem), in the run
  // directory for a device.
  const base = target.device ? ensureRunDir(o.runDir, 'host-media') : dirname(target.path);
  const work = await mkdtemp(join(base, '.haven-medium-'));
  try {
    await makeBackupMedium(archive, target.path, work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The ISO as it is, in one bounded buffer, flushed to the medium before it counts as written.
 * A device is opened O_EXCL: Linux refuses that while anything mounts it (open(2)).
 */
async function copyTo(
  source: string,
  target: OutputTarget,
  size: number,
  o: HostMediumOptions,
): Promise<void> {
  const input = await open(source, 'r');
  const flags = target.device ? constants.O_WRONLY | constants.O_EXCL : 'r+';
  const output = await open(target.path, flags);
  try {
    const buf = Buffer.allocUnsafe(BUFFER_BYTES);
    for (let pos = 0; pos < size; ) {
      o.signal?.throwIfAborted();
      const { bytesRead } = await input.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      await output.write(buf, 0, bytesRead, pos);
      pos += bytesRead;
      o.onProgress?.('writing', pos, size);
    }
    if (!target.device) await output.truncate(size);
    await output.sync();
  } finally {
    await output.close();
    await input.close();
  }
}
