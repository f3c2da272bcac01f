/**
 * `haven restore`: writes a generation back as images in a directory and defines the server
 * there (under a new name and UUID when asked), for a primary that lost its disks or a copy to
 * examine.
 *
 * Streaming, never loading an image: raw output is copied 4 MiB at a time, each chunk checked
 * against its stored digest on the way (a damaged generation is refused, not restored), and
 * chunks of zeroes are left as holes, so the output is as sparse as the generation. qcow2 output
 * is checked first, then converted by `qemu-img convert`, which keeps zeroes unallocated too.
 * Images are written under a temporary name and renamed when complete; nothing that exists is
 * overwritten. The server stays held (Store.holdServer) while its generation is read.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { DefinitionRules } from '../core/definition-rules.ts';
import { chunkDigests, DIGEST_BYTES } from '../core/digest.ts';
import { ioError, UsageError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { checkName } from '../core/names.ts';
import { type ProgressSnapshot, ProgressTracker } from '../engine/progress.ts';
import { CHUNK_SIZE, type Generation, type Store } from '../store/types.ts';
import { defineDomain, domainState, qemuToolError, type Virsh, VirtError } from '../virt/index.ts';
import {
  type DefinitionSummary,
  type PreparedBoot,
  prepareBoot,
  readSafeDefinition,
  summary,
} from './boot.ts';
import { type Relocation, setImageSource } from './definition.ts';
import { recoveryError } from './errors.ts';
import { checkGeneration, chooseGeneration, holdServer } from './generation.ts';
import { type NetworkRequest, type NicPlan, serverNetworks } from './networks.ts';
import { makeDir } from './overlay.ts';

export type RestoreFormat = 'raw' | 'qcow2';

/** One image a restore writes: the disk it holds, its size and where it goes. */
export interface RestoreTarget {
  disk: string;
  size: number;
  path: string;
}

export interface RestoreOptions {
  store: Store;
  server: string;
  /** Sequence number (1 = newest). */
  generation: number;
  /** Directory for the images (created if missing). */
  to: string;
  /** Define the server under this name, with a new UUID. */
  name?: string;
  format?: RestoreFormat;
  /** Define the server in libvirt (default true). */
  define?: boolean;
  /** Check the generation's digests while reading it (default true). */
  verify?: boolean;
  virsh: Virsh;
  onProgress?: (s: ProgressSnapshot) => void;
  signal?: AbortSignal;
  /** The settings for definitions of the host it runs on (config `definitions`). */
  rules?: DefinitionRules;
  /** The failover network mapping of the host it is defined on (config `networks`, flags). */
  networks?: NetworkRequest;
  /** Check everything and say what would be written and defined; write nothing. */
  dryRun?: boolean;
  log: Logger;
}

export interface RestoredDisk {
  disk: string;
  path: string;
  size: number;
  /** Bytes the image occupies on disk (sparse output allocates less). */
  allocated: number;
}

export interface RestoreResult {
  server: string;
  /** The domain name the restored server got. */
  name: string;
  uuid: string | undefined;
  generation: Pick<Generation, 'id' | 'seq' | 'takenAt'>;
  format: RestoreFormat;
  disks: RestoredDisk[];
  defined: boolean;
  /** Console files and sockets given Haven's names in the restore directory. */
  moved: Relocation[];
  /** What the definition rules removed, and what they kept on the operator's word. */
  definition?: DefinitionSummary;
  /** What each network interface joins on this host (when defined). */
  networks?: NicPlan[];
  /** Nothing was written: `disks` are the images a restore would write (allocated 0). */
  dryRun: boolean;
  /** A point of the journal was restored (`--at`); `generation` then names the point. */
  point?: boolean;
  seconds: number;
}

const PIECE = 4 * 1024 * 1024;

/** `web01_0` restored as `web02` is written as `web02_0`; other disk names are kept. */
export function restoredDiskName(server: string, disk: string, name: string | undefined): string {
  if (name === undefined || name === server) return disk;
  return disk.startsWith(server) ? `${name}${disk.slice(server.length)}` : `${name}_${disk}`;
}

export async function restoreServer(o: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const format = o.format ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2')
    throw new UsageError(`--format must be raw or qcow2, got ${format}`);
  const name = o.name === undefined ? o.server : checkName('server', o.name);
  const log = o.log.child({ server: o.server });
  // libvirt needs absolute paths in a definition.
  const dir = resolve(o.to);
  const define = o.define !== false;
  if (define) await checkDomainFree(o.virsh, name);

  const hold = o.dryRun ? undefined : await holdServer(o.store, o.server, 'restore', 60_000);
  try {
    const { generation } = await chooseGeneration(o.store, o.server, o.generation);
    await checkGeneration(o.store, o.server, generation);
    const { targets, result } = await planRestore(o, generation, name, dir, format, log);
    if (!o.dryRun) await restoreImages(o, generation, name, dir, targets, format, result, log);
    result.seconds = (Date.now() - started) / 1000;
    return result;
  } finally {
    await hold?.release();
  }
}

/**
 * The images a restore of `generation` writes (one per disk, in `dir`) and the result it reports
 * before writing them (all a dry run answers), once everything that must hold was checked.
 */
export async function planRestore(
  o: RestoreOptions,
  generation: Generation,
  name: string,
  dir: string,
  format: RestoreFormat,
  log: Logger,
): Promise<{ targets: RestoreTarget[]; result: RestoreResult }> {
  const targets = generation.disks.map((d) => ({
    disk: d.name,
    size: d.size,
    path: join(dir, `${restoredDiskName(o.server, d.name, o.name)}.${format}`),
  }));
  const plan = await checkRestore(o, generation, name, dir, targets, log);
  const result: RestoreResult = {
    server: o.server,
    name,
    uuid: undefined,
    generation: { id: generation.id, seq: generation.seq, takenAt: generation.takenAt },
    format,
    disks: targets.map((t) => ({ ...t, allocated: 0 })),
    defined: false,
    moved: [],
    ...(plan ? { definition: summary(plan.report), networks: plan.networks } : {}),
    dryRun: Boolean(o.dryRun),
    seconds: 0,
  };
  return { targets, result };
}

/**
 * What must hold before anything is written: no image to write exists, and the definition (when
 * the server is to be defined) passes the rule and finds its networks here. Returns it, checked.
 */
export async function checkRestore(
  o: RestoreOptions,
  generation: Generation,
  name: string,
  dir: string,
  targets: readonly { path: string }[],
  log: Logger,
): Promise<{ report: PreparedBoot['report']; networks: NicPlan[] } | undefined> {
  for (const t of targets) {
    if (existsSync(t.path)) {
      throw recoveryError('RESTORE_TARGET_EXISTS', 'conflict', `${t.path} exists; restore never overwrites`, {
        hint: 'Restore into another directory, or under another name (--name), or move the file away.',
        details: { path: t.path },
      });
    }
  }
  if (o.define === false) return undefined;
  return readSafeDefinition(o.store, o.server, generation, {
    rules: o.rules,
    hostFiles: { files: dir, sockets: join(dir, 'sockets'), prefix: `${name}-` },
    networks: serverNetworks(o.networks ?? {}, o.server, o.virsh),
    log: o.dryRun ? log : silentLogger,
  });
}

/** Writes the images (whole or not at all) and defines the server; fills in `result`. */
async function restoreImages(
  o: RestoreOptions,
  generation: Generation,
  name: string,
  dir: string,
  targets: readonly RestoreTarget[],
  format: RestoreFormat,
  result: RestoreResult,
  log: Logger,
): Promise<void> {
  await mkdir(dir, { recursive: true }).catch((e) => Promise.reject(ioError(e, dir)));
  const total = targets.reduce((n, t) => n + t.size, 0) * (format === 'qcow2' && o.verify !== false ? 2 : 1);
  const progress = new ProgressTracker(total, o.server, undefined, o.onProgress);
  const disks: RestoredDisk[] = [];
  // A server is restored whole or not at all: what this run wrote goes again on a failure.
  const undo = async () => {
    for (const d of disks) await rm(d.path, { force: true });
  };
  try {
    for (const t of targets) {
      o.signal?.throwIfAborted();
      if (format === 'raw') await copyRaw(o, generation, t, progress);
      else await convertQcow2(o, generation, t, progress);
      disks.push({ ...t, allocated: await allocated(t.path) });
      log.info('disk restored', { disk: t.disk, path: t.path });
    }
  } catch (e) {
    await undo();
    throw e;
  }
  progress.setPhase('done');
  result.disks = disks;
  if (o.define === false) return;
  const booted = await restoredXml(o, generation, name, dir, targets, format, log);
  try {
    await defineDomain(o.virsh, booted.xml.toString());
  } catch (e) {
    await undo();
    throw e;
  }
  log.info('server defined', { name, uuid: booted.xml.uuid });
  Object.assign(result, {
    uuid: booted.xml.uuid,
    defined: true,
    moved: booted.report.moved,
    definition: summary(booted.report),
    networks: booted.networks,
  });
}

/**
 * The boot recipe (boot.ts) for a restored server: its disks pointed at the restored images, its
 * console files and sockets in the restore directory under names that start with its name (a
 * directory may hold several restored servers), under the new name with a new UUID if renamed.
 */
export async function restoredXml(
  o: RestoreOptions,
  generation: Generation,
  name: string,
  dir: string,
  targets: readonly { disk: string; path: string }[],
  format: RestoreFormat,
  log: Logger,
): Promise<PreparedBoot> {
  const renamed = o.name !== undefined && o.name !== o.server;
  const byDisk = new Map(targets.map((t) => [t.disk, t.path]));
  // QEMU creates sockets itself, as its own user: they get a directory it may write.
  const sockets = join(dir, 'sockets');
  const booted = await prepareBoot({
    purpose: 'restore',
    store: o.store,
    server: o.server,
    generation,
    rename: renamed ? name : undefined,
    rules: o.rules,
    hostFiles: { files: dir, sockets, prefix: `${name}-` },
    networks: serverNetworks(o.networks ?? {}, o.server, o.virsh),
    log,
    placeDisk: async (x, m) => setImageSource(x, m.disk, byDisk.get(m.name) ?? '', format),
    // A renamed copy must not share its UEFI variables with the original.
    nvram: async (kept) =>
      kept && !renamed && existsSync(dirname(kept)) ? kept : join(dir, `${name}_VARS.fd`),
  });
  if (booted.report.moved.some((m) => m.to.startsWith(`${sockets}/`))) await makeDir(sockets, 0o1777);
  return booted;
}

export async function checkDomainFree(virsh: Virsh, name: string): Promise<void> {
  try {
    const { state } = await domainState(virsh, name);
    throw recoveryError(
      'RECOVERY_NAME_TAKEN',
      'conflict',
      `a domain named ${name} already exists (${state})`,
      {
        hint: 'Restore under another name (--name NEW), or without defining it (--no-define).',
        details: { domain: name, state },
      },
    );
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') return;
    throw e;
  }
}

export async function allocated(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    return (await fh.stat()).blocks * 512;
  } finally {
    await fh.close();
  }
}

function damaged(server: string, g: Generation, disk: string, offset: number): Error {
  return recoveryError(
    'RECOVERY_GENERATION_DAMAGED',
    'integrity',
    `generation _${g.seq} of ${server} is damaged: disk ${disk} differs from its digest at byte ${offset}`,
    {
      hint: 'Restore another generation (--generation K); nothing was left in the target directory.',
      details: { server, generation: g.id, disk, offset },
    },
  );
}

/** Raw output: positioned writes of the non-zero chunks into a file of the right size. */
async function copyRaw(
  o: RestoreOptions,
  g: Generation,
  t: { disk: string; size: number; path: string },
  progress: ProgressTracker,
): Promise<void> {
  const tmp = `${t.path}.haven-partial`;
  const verify = o.verify !== false;
  const alg = o.store.descriptor.digest;
  const zero = Buffer.alloc(CHUNK_SIZE);
  const reader = await o.store.openImage(o.server, g.id, t.disk);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    const out = await open(tmp, 'wx', 0o600).catch((e) => Promise.reject(ioError(e, tmp)));
    fh = out;
    await out.truncate(t.size);
    progress.setPhase('restoring', t.disk);
    for (let off = 0; off < t.size; off += PIECE) {
      o.signal?.throwIfAborted();
      const len = Math.min(PIECE, t.size - off);
      const buf = await reader.read(off, len);
      if (verify) {
        const first = off / CHUNK_SIZE;
        const count = Math.ceil(len / CHUNK_SIZE);
        const want = await o.store.readDigests(o.server, g.id, t.disk, first, count);
        const got = chunkDigests(alg, buf, CHUNK_SIZE);
        if (!got.equals(want)) {
          for (let i = 0; i < count; i++) {
            const a = i * DIGEST_BYTES;
            if (got.compare(want, a, a + DIGEST_BYTES, a, a + DIGEST_BYTES) !== 0)
              throw damaged(o.server, g, t.disk, off + i * CHUNK_SIZE);
          }
        }
      }
      for (let c = 0; c < len; c += CHUNK_SIZE) {
        const piece = buf.subarray(c, Math.min(c + CHUNK_SIZE, len));
        if (piece.equals(zero.subarray(0, piece.length))) continue;
        await out.write(piece, 0, piece.length, off + c).catch((e) => Promise.reject(ioError(e, tmp)));
      }
      progress.add(len);
    }
    await out.sync();
    fh = undefined;
    await out.close();
    await rename(tmp, t.path);
  } catch (e) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await reader.close();
  }
}

/** qcow2 output: the digests are checked first, then qemu-img converts (sparse). */
async function convertQcow2(
  o: RestoreOptions,
  g: Generation,
  t: { disk: string; size: number; path: string },
  progress: ProgressTracker,
): Promise<void> {
  if (o.verify !== false) {
    progress.setPhase('checking', t.disk);
    let last = 0;
    await checkGeneration(o.store, o.server, g, {
      full: true,
      signal: o.signal,
      onProgress: (done) => {
        progress.add(Math.max(0, done - last));
        last = done;
      },
    });
  }
  progress.setPhase('converting', t.disk);
  const src = await o.store.imagePath(o.server, g.id, t.disk);
  const tmp = `${t.path}.haven-partial`;
  const args = ['convert', '-p', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=65536', src, tmp];
  let converted = 0;
  try {
    await runQemuImg(args, o.signal, (pct) => {
      const now = (pct / 100) * t.size;
      progress.add(Math.max(0, now - converted));
      converted = Math.max(converted, now);
    });
    await rename(tmp, t.path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Runs qemu-img with -p, reporting its percentage ("    (12.34/100%)", rewritten with \r). */
function runQemuImg(
  args: string[],
  signal: AbortSignal | undefined,
  onPct: (pct: number) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-img', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      for (const m of s.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) onPct(Number(m[1]));
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 8192) stderr += b.toString('utf8');
    });
    const abort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', abort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal?.removeEventListener('abort', abort);
      if (code === 0) resolve();
      else reject(qemuToolError('qemu-img', args, stderr, code ?? 1));
    });
  });
}
