/**
 * Pull-mode backups (https://libvirt.org/formatbackup.html, kbase/incrementalbackupinternals):
 * libvirt freezes a point-in-time view of the chosen disks and QEMU serves it over NBD on a
 * unix socket, one export per disk (named after the target), while the guest keeps running.
 * Writes the guest makes meanwhile first copy the old data into a scratch file.
 *
 * An incremental backup also offers, per disk, the meta context
 * `qemu:dirty-bitmap:<exportbitmap>` (libvirt names the bitmap `backup-<target>`, and we read
 * the name back from the job XML rather than assume it) listing what changed since the
 * checkpoint it starts from. With a checkpoint name, the backup creates that checkpoint at the
 * same instant, so the next incremental run starts exactly where this one's view was taken.
 *
 * The job ends with `backupEnd` (virsh domjobabort: for a pull backup that is the normal end).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DomainXml } from '../core/domain-xml.ts';
import { exec } from '../core/exec.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { buildCheckpointXml, checkpointDisks, getCheckpoint } from './checkpoints.ts';
import { VirtError } from './errors.ts';
import { checkSocketPath, socketAccepts } from './qemu-nbd.ts';
import type { Virsh } from './virsh.ts';
import { attr, childElement, childElements, childText, escapeXml, parseXmlRoot } from './xml.ts';

export interface BackupExport {
  /** The disk's target (vda). */
  disk: string;
  exportName: string;
  /** Meta context with the changed blocks; only for disks backed up incrementally. */
  bitmapContext: string | undefined;
  /** 'full' or 'incremental', as libvirt runs it for this disk. */
  mode: 'full' | 'incremental';
  /** Checkpoint this disk's increment starts from. */
  incrementalFrom: string | undefined;
  scratchFile: string | undefined;
}

export interface BackupJob {
  socketPath: string;
  /** Checkpoint the whole backup is incremental from (per-disk values in exports). */
  incrementalFrom: string | undefined;
  exports: BackupExport[];
  /** Disks of the domain that are not part of the backup. */
  excluded: string[];
}

export interface BackupBeginOptions {
  /** Checkpoint created at the backup's instant (start of the next increment). */
  checkpointName?: string;
  /** Make the backup incremental from this checkpoint (for the disks that have its bitmap). */
  incrementalFrom?: string;
  /** Unix socket for the NBD server; its directory must be writable by QEMU (run dir). */
  socketPath: string;
  /**
   * Directory for the per-disk scratch files `<domain>.<target>.<run>.scratch` (writable by
   * QEMU); `<run>` is new for every backup, so no backup ever touches another's.
   */
  scratchDir: string;
  /** Targets to back up; default every disk that is not removable media. */
  disks?: readonly string[];
  log?: Logger;
}

export function parseBackupXml(xml: string): BackupJob {
  const root = parseXmlRoot(xml, 'domainbackup', 'backup');
  if (attr(root, 'mode') !== 'pull') {
    throw new VirtError('VIRT_UNSUPPORTED', 'the running backup job is a push-mode backup, not pull mode', {
      details: { mode: attr(root, 'mode') ?? 'push' },
    });
  }
  const server = childElement(root, 'server');
  const incremental = childText(root, 'incremental');
  const disksEl = childElement(root, 'disks');
  const exports: BackupExport[] = [];
  const excluded: string[] = [];
  for (const d of disksEl ? childElements(disksEl, 'disk') : []) {
    const name = attr(d, 'name') ?? '';
    if (attr(d, 'backup') === 'no') {
      excluded.push(name);
      continue;
    }
    const mode = attr(d, 'backupmode') === 'incremental' ? 'incremental' : 'full';
    const bitmap = attr(d, 'exportbitmap');
    exports.push({
      disk: name,
      exportName: attr(d, 'exportname') ?? name,
      bitmapContext: mode === 'incremental' && bitmap ? `qemu:dirty-bitmap:${bitmap}` : undefined,
      mode,
      incrementalFrom: mode === 'incremental' ? (attr(d, 'incremental') ?? incremental) : undefined,
      scratchFile: attr(childElement(d, 'scratch'), 'file') ?? attr(childElement(d, 'scratch'), 'dev'),
    });
  }
  return { socketPath: attr(server, 'socket') ?? '', incrementalFrom: incremental, exports, excluded };
}

export function buildBackupXml(options: {
  socketPath: string;
  incrementalFrom?: string;
  disks: ReadonlyArray<{ target: string; backup: boolean; incremental: boolean; scratchFile?: string }>;
  /** The format of scratch files the caller made (with `--reuse-external`). */
  scratchFormat?: 'qcow2';
}): string {
  const lines = ["<domainbackup mode='pull'>"];
  if (options.incrementalFrom)
    lines.push(`  <incremental>${escapeXml(options.incrementalFrom)}</incremental>`);
  lines.push(`  <server transport='unix' socket='${escapeXml(options.socketPath)}'/>`, '  <disks>');
  for (const d of options.disks) {
    if (!d.backup) {
      lines.push(`    <disk name='${escapeXml(d.target)}' backup='no'/>`);
      continue;
    }
    // backupmode per disk: in a mixed backup, a raw disk (no bitmap) is exported in full.
    const mode =
      d.incremental && options.incrementalFrom
        ? `backupmode='incremental' incremental='${escapeXml(options.incrementalFrom)}'`
        : "backupmode='full'";
    lines.push(
      `    <disk name='${escapeXml(d.target)}' backup='yes' type='file' ${mode}>`,
      `      <scratch file='${escapeXml(d.scratchFile ?? '')}'/>`,
      ...(options.scratchFormat ? [`      <driver type='${options.scratchFormat}'/>`] : []),
      '    </disk>',
    );
  }
  lines.push('  </disks>', '</domainbackup>');
  return `${lines.join('\n')}\n`;
}

function scratchPrefix(domain: string): string {
  return `${domain.replace(/[^A-Za-z0-9._+-]/g, '_')}.`;
}

/**
 * Removes the domain's scratch files: libvirt deletes a job's scratch files when the job ends, so
 * any found while no backup job of the domain runs were left by a libvirtd or host that went down
 * mid-backup. Only for a caller that knows no backup of the domain runs or is starting meanwhile
 * (the engine, which holds the server for its run); returns the files removed.
 */
export function removeStaleScratch(domain: string, scratchDir: string): string[] {
  const prefix = scratchPrefix(domain);
  const removed: string[] = [];
  for (const name of existsSync(scratchDir) ? readdirSync(scratchDir) : []) {
    const path = join(scratchDir, name);
    if (!name.startsWith(prefix) || !name.endsWith('.scratch')) continue;
    // Another domain whose name extends this one's ("web" and "web.1") has a target in between.
    const target = name.slice(prefix.length).split('.')[0];
    if (!target || !/^[a-z]+[0-9a-z]*$/.test(target)) continue;
    rmSync(path, { force: true });
    removed.push(path);
  }
  return removed;
}

/** The running backup job of a domain, or null when there is none. */
export async function activeBackup(virsh: Virsh, domain: string): Promise<BackupJob | null> {
  try {
    return parseBackupXml(await virsh.run(['backup-dumpxml', '--domain', domain]));
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_NO_BACKUP_JOB') return null;
    throw e;
  }
}

/**
 * Starts a pull-mode backup. Fails at once with VIRT_BACKUP_ACTIVE when one already runs (the
 * caller may reuse it, see activeBackup), and with VIRT_BITMAP_INCONSISTENT when the incremental
 * checkpoint's bitmaps are missing or broken.
 */
export async function backupBegin(
  virsh: Virsh,
  domain: string,
  options: BackupBeginOptions,
): Promise<BackupJob> {
  const log = options.log ?? silentLogger;
  checkSocketPath(options.socketPath);
  if (options.checkpointName) checkName('checkpoint', options.checkpointName);
  const running = await activeBackup(virsh, domain);
  if (running) {
    throw new VirtError('VIRT_BACKUP_ACTIVE', `a backup job is already running on ${domain}`, {
      details: { domain, socketPath: running.socketPath, incrementalFrom: running.incrementalFrom },
    });
  }
  const xml = DomainXml.parse(await virsh.run(['dumpxml', '--domain', domain]));
  const all = xml.disks();
  const wanted =
    options.disks ?? all.filter((d) => d.device === 'disk' || d.device === 'lun').map((d) => d.target);
  for (const t of wanted) {
    if (!all.some((d) => d.target === t)) {
      throw new VirtError('VIRT_BAD_ARGUMENT', `${domain} has no disk ${t}`, {
        details: { domain, disk: t },
      });
    }
  }
  if (wanted.length === 0) throw new VirtError('VIRT_BAD_ARGUMENT', `${domain} has no disk to back up`);

  // Disks that carry the base checkpoint's bitmap go incremental; the others (raw) go full.
  let incrementalDisks = new Set<string>();
  if (options.incrementalFrom) {
    const base = await getCheckpoint(virsh, domain, options.incrementalFrom);
    incrementalDisks = new Set(base.disks.filter((d) => d.checkpoint === 'bitmap').map((d) => d.name));
  }
  // Named after domain, disk and this backup: servers share the directory, and a backup another
  // process starts meanwhile (whose job this one's check could not see yet) keeps its own files.
  const run = randomBytes(4).toString('hex');
  const disks = all.map((d) => {
    const backup = wanted.includes(d.target);
    const scratchFile = join(options.scratchDir, `${scratchPrefix(domain)}${d.target}.${run}.scratch`);
    return { target: d.target, backup, incremental: incrementalDisks.has(d.target), scratchFile };
  });
  // Likewise a stale socket: QEMU (another user) could not replace it. A live one is not ours.
  if (existsSync(options.socketPath)) {
    if (await socketAccepts(options.socketPath)) {
      throw new VirtError('VIRT_BAD_ARGUMENT', `socket ${options.socketPath} is in use by another server`, {
        details: { domain, socketPath: options.socketPath },
      });
    }
    unlinkSync(options.socketPath);
  }

  const backupXml = buildBackupXml({
    socketPath: options.socketPath,
    incrementalFrom: options.incrementalFrom,
    disks,
  });
  const checkpointXml = options.checkpointName
    ? buildCheckpointXml(
        options.checkpointName,
        checkpointDisks(
          all,
          wanted.filter((t) => all.find((d) => d.target === t)?.format === 'qcow2'),
        ),
      )
    : undefined;
  log.debug('backup-begin', { domain, backupXml, checkpointXml });
  const documents: Record<string, string> = { backup: backupXml };
  if (checkpointXml) documents.checkpoint = checkpointXml;
  await virsh.runWithFiles(documents, (f) => [
    'backup-begin',
    '--domain',
    domain,
    '--backupxml',
    f.backup as string,
    ...(f.checkpoint ? ['--checkpointxml', f.checkpoint] : []),
  ]);
  const job = await activeBackup(virsh, domain);
  if (!job) {
    throw new VirtError('VIRT_NO_BACKUP_JOB', `backup of ${domain} started but no job is present`, {
      hint: 'The job ended at once; check the libvirtd log for the reason.',
    });
  }
  log.verbose('backup started', { domain, socketPath: job.socketPath, incrementalFrom: job.incrementalFrom });
  return job;
}

/** A disk of a backup whose scratch file the caller made (backupBeginPrepared). */
export interface PreparedBackupDisk {
  target: string;
  /** Exported with the dirty map since `incrementalFrom` (a qcow2 disk that has its bitmap). */
  incremental: boolean;
  /** An empty qcow2 of the disk's size (prepareScratch), which libvirt uses as it is. */
  scratchFile: string;
}

/**
 * Creates a scratch file for backupBeginPrepared: an empty qcow2 of the disk's size. Done
 * outside a cycle's critical path, it takes from backup-begin the part that costs most
 * (libvirt formats scratch files through QEMU blockdev-create jobs: 1.2 s against 0.45 s per
 * begin, measured on a loaded host; docs/continuous.md).
 */
export async function prepareScratch(path: string, size: number, log: Logger = silentLogger): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', path, String(size)];
  log.debug('qemu-img', { args });
  await exec('qemu-img', args, { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
}

/**
 * The continuous protector's backup-begin (docs/continuous.md): the caller holds the server, knows
 * its disks and has made their scratch files, so nothing is asked of libvirt before the begin and
 * libvirt formats nothing (`--reuse-external`). Two virsh calls instead of five. The job is read
 * back for its export and bitmap names (never assumed). The scratch files stay after the job ends:
 * the caller removes them.
 */
export async function backupBeginPrepared(
  virsh: Virsh,
  domain: string,
  o: {
    checkpointName: string;
    incrementalFrom?: string;
    socketPath: string;
    disks: readonly PreparedBackupDisk[];
    /** Every disk of the domain that is not part of the backup (removable media, raw disks). */
    excluded: readonly string[];
    log?: Logger;
  },
): Promise<BackupJob> {
  checkSocketPath(o.socketPath);
  checkName('checkpoint', o.checkpointName);
  if (existsSync(o.socketPath)) unlinkSync(o.socketPath);
  const disks = [
    ...o.disks.map((d) => ({ ...d, backup: true })),
    ...o.excluded.map((target) => ({ target, backup: false, incremental: false })),
  ];
  const backupXml = buildBackupXml({
    socketPath: o.socketPath,
    incrementalFrom: o.incrementalFrom,
    disks,
    scratchFormat: 'qcow2',
  });
  const checkpointXml = buildCheckpointXml(
    o.checkpointName,
    disks.map((d) => ({ target: d.target, bitmap: d.backup })),
  );
  (o.log ?? silentLogger).debug('backup-begin (prepared scratch)', { domain, backupXml });
  await virsh.runWithFiles({ backup: backupXml, checkpoint: checkpointXml }, (f) => [
    'backup-begin',
    '--domain',
    domain,
    '--backupxml',
    f.backup as string,
    '--checkpointxml',
    f.checkpoint as string,
    '--reuse-external',
  ]);
  const job = await activeBackup(virsh, domain);
  if (!job) {
    throw new VirtError('VIRT_NO_BACKUP_JOB', `backup of ${domain} started but no job is present`, {
      hint: 'The job ended at once; check the libvirtd log for the reason.',
    });
  }
  return job;
}

/** Asks libvirt to end the domain's backup job without waiting for the teardown (see backupEnd). */
export async function backupAbort(virsh: Virsh, domain: string): Promise<void> {
  try {
    await virsh.run(['domjobabort', '--domain', domain]);
  } catch (e) {
    if (!(e instanceof VirtError && /no job is active/i.test(String(e.details?.message)))) throw e;
  }
}

export interface BackupJobInfo {
  /** none, bounded, unbounded, completed, failed, cancelled. */
  type: string;
  /** backup when the job is a backup. */
  operation: string;
  elapsedMs: number | undefined;
  /** Scratch space used by copy-before-write so far, and the most it can take. */
  scratchUsed: number | undefined;
  scratchTotal: number | undefined;
  error: string | undefined;
}

const JOB_TYPES = ['none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled'];
const JOB_OPERATIONS = [
  'unknown',
  'start',
  'save',
  'restore',
  'incoming-migration',
  'outgoing-migration',
  'snapshot',
  'snapshot-revert',
  'dump',
  'backup',
  'snapshot-delete',
];

export function parseJobInfoRaw(text: string): BackupJobInfo {
  const f = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_ ]+?)\s*:\s*(.*)$/.exec(line);
    if (m?.[1]) f.set(m[1].trim().toLowerCase().replace(/\s+/g, '_'), (m[2] ?? '').trim());
  }
  const num = (k: string) => {
    const v = f.get(k);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  return {
    type: JOB_TYPES[num('job_type') ?? 0] ?? 'unknown',
    operation: JOB_OPERATIONS[num('operation') ?? 0] ?? 'unknown',
    elapsedMs: num('time_elapsed'),
    scratchUsed: num('disk_temp_used'),
    scratchTotal: num('disk_temp_total'),
    error: f.get('errmsg') || undefined,
  };
}

/** The domain's current job statistics (`domjobinfo --rawstats`). */
export async function backupJobInfo(virsh: Virsh, domain: string): Promise<BackupJobInfo> {
  return parseJobInfoRaw(await virsh.run(['domjobinfo', '--domain', domain, '--rawstats']));
}

/**
 * Ends the domain's backup job and waits until libvirt has torn it down (NBD server stopped,
 * scratch files removed), so a new backup can start right after. Returns false when no backup
 * job was running.
 */
export async function backupEnd(
  virsh: Virsh,
  domain: string,
  options: { timeoutMs?: number } = {},
): Promise<boolean> {
  if (!(await activeBackup(virsh, domain))) return false;
  try {
    await virsh.run(['domjobabort', '--domain', domain]);
  } catch (e) {
    // The job ended on its own between the two calls.
    if (!(e instanceof VirtError && /no job is active/i.test(String(e.details?.message)))) throw e;
  }
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  // The teardown usually takes a few milliseconds and ends every run, so the first polls come
  // quickly (5, 10, 20 ms), then every 50 ms.
  for (let wait = 5; await activeBackup(virsh, domain); wait = Math.min(wait * 2, 50)) {
    if (Date.now() > deadline) {
      throw new VirtError('VIRT_TIMEOUT', `the backup job of ${domain} did not end after domjobabort`, {
        details: { domain },
      });
    }
    await new Promise((r) => setTimeout(r, wait));
  }
  return true;
}
