/**
 * Benchmark: time until a bootable copy exists, Haven against its peers, on one live guest disk
 * (tracker issue 3, "Speed").
 *
 * One TCG test guest with one 2 GiB qcow2 disk holding 1 GiB of random data (written into the
 * image before boot). Measured, in alternating order over several repetitions:
 *
 * - full: `haven protect` to a fresh local store (its newest image is a bootable raw file),
 *   against `virtnbdbackup -l full` + `virtnbdrestore`, and `qemu-img convert -U` to raw, through
 *   the page cache and with `-t none -T none` (issue 19 goal 3's reference); Haven's CPU seconds
 *   per GiB of disk (and of data read), on each side;
 * - incremental: the guest itself writes ~2% of the disk in random 64 KiB blocks, then
 *   `haven protect` (found through the dirty bitmap of the running domain), against
 *   `virtnbdbackup -l inc` + `virtnbdrestore` of the whole chain, and (with the guest shut off)
 *   `rsync --inplace` of the image onto the previous copy, with and without --no-whole-file.
 *
 * Reference points, measured in the same reps: rsync's copy made durable (`sync --data`, as
 * Haven's is when it returns), and a perfect tool's floor: one process start, libvirt starting
 * the incremental pull backup (bare virsh), nbdcopy reading the dirty extents of that backup's
 * export, and the changed bytes written once, sequentially, with O_DIRECT and fsync, onto the
 * same filesystem. rsync's time over that floor is the largest ratio to rsync that any tool
 * taking its change from libvirt could reach on this machine; Haven's over it is issue 19's goal 2.
 *
 * `--serve` adds Haven as a daemon: an already-running `haven serve` whose job copies the guest
 * to an already-running `haven receive --listen` on this host (lib/serve-rig.ts), triggered
 * through the API in every incremental rep; its time over the floor without the process start
 * is reported beside `haven protect`'s over the whole floor.
 *
 * Every result is checked against the source disk (`qemu-img compare`, `cmp` for rsync), so a
 * fast wrong copy cannot win. Peak memory of Haven's sender and receiver is their VmHWM.
 * `--profile` runs Haven under V8's CPU profiler (lib/cpu-profile-preload.mjs; times are then
 * inflated a little) and prints where the sender and the receiver spent their time.
 * Progress and the report go to stderr; `--json` adds one JSON object with every figure on stdout.
 *
 *   node --import tsx bench/replicate.ts [--full-reps 3] [--inc-reps 5] [--copies 3]
 *        [--disk-size 2GiB] [--data-size 1GiB] [--change 2 | --change-size 40MiB] [--drop-source]
 *        [--target-fs local|xfs] [--profile] [--baseline <checkout>] [--haven-only] [--serve]
 *        [--keep] [--json]
 *
 * `--change-size` fixes the bytes the guest rewrites before each incremental rep (instead of a
 * percent of the disk), so that runs at several disk sizes move the same change. `--drop-source`
 * deletes the cached random data file once the guest's image holds it (at 20 GiB it is 10 GiB
 * the copies need).
 *
 * `--baseline <checkout>` times another checkout's Haven (`<checkout>/bin/haven.mjs`, a before
 * of some change) in the same reps, doing exactly what this checkout's Haven does with a state
 * directory and a store of its own, the two in alternating order per rep; its copies are checked
 * too, and the report gives both medians and the median per-rep ratio (this / baseline). Both
 * checkouts are built first (scripts/build), so both start from their compiled tree.
 * `--haven-only` leaves the peers (virtnbdbackup, qemu-img, rsync, the floor) out: the guest
 * then stays running through the incremental reps.
 *
 * `--target-fs xfs` puts every tool's copies (Haven's store too) on a fresh loop-mounted XFS with
 * reflinks, where Haven's rotation clones the newest generation instead of replaying deltas.
 */
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { parseSize } from '../src/core/units.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import { type BeforeAfter, beforeAfter, formatBeforeAfter } from './lib/before-after.ts';
import {
  type BenchGuest,
  checkpointNames,
  createBenchGuest,
  deleteCheckpoints,
  GUEST_BLOCK,
  guestChange,
  hideCheckpoints,
  restoreCheckpoints,
  type SourceFloor,
  timeFullCopyFloor,
  timeSourceFloor,
} from './lib/bench-guest.ts';
import { formatProfile, type ProfileSummary, summarizeProfile } from './lib/cpuprofile.ts';
import { benchDir, ensureRandomImage, warmPageCache } from './lib/fixtures.ts';
import {
  durableWriteFloor,
  flushFile,
  qemuImgConvert,
  qemuImgConvertDirect,
  rsyncInplace,
  settle,
  toolVersion,
  virtnbdbackup,
  virtnbdrestore,
} from './lib/peers.ts';
import { type Phase, phasesOf } from './lib/phases.ts';
import { cpuOf, mustRun, onInterrupt, peakOf, runMeasured } from './lib/proc.ts';
import { type ServeRig, type ServeRun, startServeRig } from './lib/serve-rig.ts';
import { formatRate, median } from './lib/stats.ts';
import { parseTargetFs, targetDir } from './lib/target-fs.ts';

const { values: args } = parseArgs({
  options: {
    'full-reps': { type: 'string', default: '3' },
    'inc-reps': { type: 'string', default: '5' },
    copies: { type: 'string', default: '3' },
    'disk-size': { type: 'string', default: '2GiB' },
    'data-size': { type: 'string', default: '1GiB' },
    change: { type: 'string' },
    'change-size': { type: 'string' },
    'drop-source': { type: 'boolean', default: false },
    'target-fs': { type: 'string', default: 'local' },
    profile: { type: 'boolean', default: false },
    baseline: { type: 'string' },
    'haven-only': { type: 'boolean', default: false },
    serve: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const fullReps = Number(args['full-reps']);
const incReps = Number(args['inc-reps']);
const copies = Number(args.copies);
const diskSize = parseSize(args['disk-size']);
const dataSize = parseSize(args['data-size']);
if (args.change !== undefined && args['change-size'] !== undefined) {
  throw new Error('give --change (a percent of the disk) or --change-size (bytes), not both');
}
/** What the guest rewrites before each incremental rep, in its 64 KiB blocks. */
const changeBlocks = Math.round(
  (args['change-size'] === undefined
    ? (diskSize * Number(args.change ?? '2')) / 100
    : parseSize(args['change-size'])) / GUEST_BLOCK,
);
const changeBytes = changeBlocks * GUEST_BLOCK;
const changePercent = (changeBytes / diskSize) * 100;
if (!Number.isInteger(changeBlocks) || changeBlocks < 1) {
  throw new Error('the change must be at least one 64 KiB block');
}
const targetFs = parseTargetFs(args['target-fs']);
for (const [name, v] of [
  ['full-reps', fullReps],
  ['inc-reps', incReps],
  ['copies', copies],
] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a whole number >= 1`);
}
if (dataSize > diskSize || diskSize % (1024 * 1024) !== 0) {
  throw new Error('--disk-size must be whole MiB and at least --data-size');
}
/** This checkout: the one whose bench runs (src/transport HAVEN_BIN is its bin/haven.mjs). */
const CURRENT_REPO = resolve(HAVEN_BIN, '..', '..');
const baselineRepo = args.baseline === undefined ? undefined : resolve(args.baseline);
if (baselineRepo !== undefined) {
  if (!existsSync(join(baselineRepo, 'bin', 'haven.mjs'))) {
    throw new Error(`--baseline ${args.baseline}: no bin/haven.mjs there (give a checkout of Haven)`);
  }
  if (baselineRepo === CURRENT_REPO) throw new Error('--baseline names this checkout itself');
}
if (baselineRepo !== undefined && (fullReps % 2 !== 0 || incReps % 2 !== 0)) {
  process.stderr.write('note: with an odd rep count this checkout runs first once more than the baseline\n');
}
/** Whether virtnbdbackup, qemu-img, rsync and the floor are measured beside Haven. */
const peers = !args['haven-only'];

const GOALS = {
  fullVsVirtnbdbackup: 1.5,
  fullVsQemuImg: 0.8,
  incVsVirtnbdbackup: 3,
  incVsRsync: 20,
  /** Issue 19 goal 2: at most this many times the floor, as a command and run by `haven serve`. */
  incOverFloorCommand: 3,
  incOverFloorServe: 2,
  /** Issue 19 goal 3: CPU seconds per GiB of disk, sender and receiver each, under this. */
  fullCpuPerGiB: 1,
};
/** Progress and the report go to stderr, also with --json (stdout then holds only the JSON). */
const say = (line: string) => process.stderr.write(`${line}\n`);
const secs = (s: number) => `${s.toFixed(2)} s`;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// ------------------------------------------------------------------------------------------------
// Haven runs

interface HavenRun {
  seconds: number;
  mode: string;
  readBytes: number;
  bytesSent: number;
  senderPeakRss: number;
  receiverPeakRss: number;
  /** CPU time (user + system) of the sender process, of the receiver, and of the whole tree (virsh…). */
  senderCpuSeconds: number;
  receiverCpuSeconds: number;
  cpuSeconds: number;
  /** From the run log's timestamps: how the wall time divides. */
  phases: Phase[];
  profiles?: { sender?: ProfileSummary; receiver?: ProfileSummary };
}

const PROFILE_PRELOAD = fileURLToPath(new URL('./lib/cpu-profile-preload.mjs', import.meta.url));

function findProfile(dir: string, pid: number): string | undefined {
  if (!existsSync(dir)) return undefined;
  const f = readdirSync(dir).find((n) => n.endsWith('.cpuprofile') && n.includes(`.${pid}.`));
  return f ? join(dir, f) : undefined;
}

// ------------------------------------------------------------------------------------------------

/** The Havens timed: this checkout's, and with --baseline another checkout's. */
type HavenKey = 'haven' | 'baseline';

interface QemuImgRun {
  seconds: number;
  flushSeconds: number;
  peakRss: number;
  cpuSeconds: number;
}

interface FullRep {
  order: string[];
  haven: HavenRun;
  /** With --baseline: the other checkout's Haven, same run. */
  baseline?: HavenRun;
  /** The peers (absent with --haven-only). */
  virtnbdbackup?: { backup: number; restore: number; total: number; peakRss: number; cpuSeconds: number };
  /** `flushSeconds`: fdatasync of qemu-img's output afterwards (qemu-img itself never flushes). */
  qemuImg?: QemuImgRun;
  /** `-t none -T none`: its own fdatasync is in `seconds`; the `sync --data` after it finds nothing. */
  qemuImgDirect?: QemuImgRun;
  /**
   * The full copy's floor through libvirt (bench-guest.ts `timeFullCopyFloor`): a bare full pull
   * backup-begin and `nbdcopy --flush` of its export into a raw file, what any tool copying the
   * live disk consistently must at least spend (qemu-img -U reads the file under a running guest).
   */
  nbdcopy?: { backupBeginSeconds: number; seconds: number; peakRss: number; cpuSeconds: number };
  checks: Record<string, boolean>;
}

interface IncRep {
  order: string[];
  guestWrites: number;
  /** The Haven generation's slot: a whole copy of the newest (fewer than N generations) or recycled. */
  havenSlot: 'copy' | 'recycle';
  haven: HavenRun;
  baseline?: HavenRun;
  /** With --serve: the job run by the already-running `haven serve` into `haven receive --listen`. */
  serve?: ServeRun;
  virtnbdbackup?: {
    backup: number;
    restore: number;
    total: number;
    chain: number;
    peakRss: number;
    cpuSeconds: number;
  };
  /** `deltaFlushSeconds`: fdatasync of the --no-whole-file copy right after it (rsync never flushes). */
  rsync?: {
    deltaSeconds: number;
    deltaFlushSeconds: number;
    wholeFileSeconds: number;
    deltaPeakRss: number;
    deltaCpuSeconds: number;
  };
  /**
   * What a perfect tool could not avoid, each part measured alone: a process start (`node -e 0`),
   * libvirt starting the incremental pull backup and nbdcopy reading its dirty extents
   * (bench-guest.ts `timeSourceFloor`), and Haven's changed bytes written once, sequentially and
   * durably (peers.ts `durableWriteFloor`).
   */
  floor?: {
    nodeStartSeconds: number;
    backupBeginSeconds: number;
    readSeconds: number;
    /** What the dirty bitmap marked (and nbdcopy read). */
    dirtyBytes: number;
    writeSeconds: number;
    bytes: number;
  };
  checks: Record<string, boolean>;
}

/** A rep in which the peers ran (not --haven-only). */
type WithPeers<T, K extends keyof T> = T & Required<Pick<T, K>>;
type FullPeerRep = WithPeers<FullRep, 'virtnbdbackup' | 'qemuImg' | 'qemuImgDirect' | 'nbdcopy'>;
type IncPeerRep = WithPeers<IncRep, 'virtnbdbackup' | 'rsync' | 'floor'>;
const fullHasPeers = (r: FullRep): r is FullPeerRep =>
  r.virtnbdbackup !== undefined &&
  r.qemuImg !== undefined &&
  r.qemuImgDirect !== undefined &&
  r.nbdcopy !== undefined;
const incHasPeers = (r: IncRep): r is IncPeerRep =>
  r.virtnbdbackup !== undefined && r.rsync !== undefined && r.floor !== undefined;

interface FullStats {
  reps: number;
  havenSeconds: number;
  virtnbdbackupSeconds: number;
  virtnbdbackupBackupSeconds: number;
  virtnbdbackupRestoreSeconds: number;
  qemuImgSeconds: number;
  /** qemu-img convert plus the fdatasync that makes its copy durable. */
  qemuImgDurableSeconds: number;
  /** Median over reps of (virtnbdbackup + virtnbdrestore) / Haven. */
  vsVirtnbdbackup: number;
  /** Median over reps of Haven's throughput / qemu-img's (same image: qemu-img time / Haven time). */
  throughputVsQemuImg: number;
  /** The same against qemu-img + fdatasync: both copies durable when the clock stops. */
  throughputVsQemuImgDurable: number;
  /** `qemu-img convert -U -t none -T none` (durable as it returns), and with a `sync --data` after. */
  qemuImgDirectSeconds: number;
  qemuImgDirectDurableSeconds: number;
  /** Issue 19 goal 3: median over reps of qemu-img -t none -T none's time / Haven's (at least 0.8). */
  throughputVsQemuImgDirect: number;
  throughputVsQemuImgDirectDurable: number;
  /** CPU seconds per GiB of disk (qemu-img's whole process; QEMU's NBD server is in neither). */
  qemuImgDirectCpuPerGiB: number;
  /** The floor through libvirt: backup-begin + nbdcopy --flush; Haven's throughput against it. */
  nbdcopyFloorSeconds: number;
  throughputVsNbdcopyFloor: number;
}

/**
 * Issue 19 goal 3's CPU figure: Haven's CPU seconds (user + system) per GiB copied, sender and
 * receiver apart, medians of the full reps; per GiB of the disk's size (the goal's measure) and
 * per GiB of the data Haven read (the allocated part, what it actually moved).
 */
interface CpuPerGiB {
  disk: { sender: number; receiver: number };
  data: { sender: number; receiver: number };
}

function cpuPerGiBOf(full: FullRep[]): CpuPerGiB {
  const m = (f: (h: HavenRun) => number) => median(full.map((r) => f(r.haven)));
  const perDisk = (cpu: number) => cpu / (diskSize / GiB);
  const perData = (cpu: number, h: HavenRun) => cpu / (h.readBytes / GiB);
  return {
    disk: {
      sender: m((h) => perDisk(h.senderCpuSeconds)),
      receiver: m((h) => perDisk(h.receiverCpuSeconds)),
    },
    data: {
      sender: m((h) => perData(h.senderCpuSeconds, h)),
      receiver: m((h) => perData(h.receiverCpuSeconds, h)),
    },
  };
}

interface IncStats {
  reps: number;
  havenSeconds: number;
  virtnbdbackupSeconds: number;
  virtnbdbackupBackupSeconds: number;
  virtnbdbackupRestoreSeconds: number;
  rsyncDeltaSeconds: number;
  rsyncWholeFileSeconds: number;
  /** rsync --no-whole-file plus the fdatasync that makes its copy durable. */
  rsyncDeltaDurableSeconds: number;
  floorNodeStartSeconds: number;
  floorBackupBeginSeconds: number;
  floorReadSeconds: number;
  floorWriteSeconds: number;
  /** Per rep, the four parts added up: a perfect tool's time. */
  floorSeconds: number;
  vsVirtnbdbackup: number;
  vsRsync: number;
  vsRsyncWholeFile: number;
  vsRsyncDurable: number;
  /**
   * Median over reps of rsync's time / the floor's: the largest ratio to rsync that any tool
   * taking its change from libvirt and leaving a durable copy could reach here (reading the
   * change out of QEMU is not even counted).
   */
  rsyncOverFloor: number;
  /** The same for a tool that is already running (a daemon): no process start in its floor. */
  rsyncOverFloorRunning: number;
  /** Median over reps of `haven protect`'s time / the floor's (goal 2: at most 3). */
  havenOverFloor: number;
  /** With --serve: the daemon's run / the floor without the process start (goal 2: at most 2). */
  serveOverFloorRunning: number | undefined;
  serveSeconds: number | undefined;
}

/** Medians of times, and medians of the per-rep ratios (each rep's tools saw the same change). */
function incStats(reps: IncPeerRep[]): IncStats {
  const m = (f: (r: IncPeerRep) => number) => median(reps.map(f));
  const served = reps.filter((r): r is IncPeerRep & { serve: ServeRun } => r.serve !== undefined);
  return {
    reps: reps.length,
    havenSeconds: m((r) => r.haven.seconds),
    virtnbdbackupSeconds: m((r) => r.virtnbdbackup.total),
    virtnbdbackupBackupSeconds: m((r) => r.virtnbdbackup.backup),
    virtnbdbackupRestoreSeconds: m((r) => r.virtnbdbackup.restore),
    rsyncDeltaSeconds: m((r) => r.rsync.deltaSeconds),
    rsyncWholeFileSeconds: m((r) => r.rsync.wholeFileSeconds),
    rsyncDeltaDurableSeconds: m((r) => r.rsync.deltaSeconds + r.rsync.deltaFlushSeconds),
    floorNodeStartSeconds: m((r) => r.floor.nodeStartSeconds),
    floorBackupBeginSeconds: m((r) => r.floor.backupBeginSeconds),
    floorReadSeconds: m((r) => r.floor.readSeconds),
    floorWriteSeconds: m((r) => r.floor.writeSeconds),
    floorSeconds: m((r) => floorOf(r)),
    vsVirtnbdbackup: m((r) => r.virtnbdbackup.total / r.haven.seconds),
    vsRsync: m((r) => r.rsync.deltaSeconds / r.haven.seconds),
    vsRsyncWholeFile: m((r) => r.rsync.wholeFileSeconds / r.haven.seconds),
    vsRsyncDurable: m((r) => (r.rsync.deltaSeconds + r.rsync.deltaFlushSeconds) / r.haven.seconds),
    rsyncOverFloor: m((r) => r.rsync.deltaSeconds / floorOf(r)),
    rsyncOverFloorRunning: m((r) => r.rsync.deltaSeconds / runningFloorOf(r)),
    havenOverFloor: m((r) => r.haven.seconds / floorOf(r)),
    serveOverFloorRunning: served.length
      ? median(served.map((r) => r.serve.seconds / runningFloorOf(r)))
      : undefined,
    serveSeconds: served.length ? median(served.map((r) => r.serve.seconds)) : undefined,
  };
}

const floorOf = (r: IncPeerRep) =>
  r.floor.nodeStartSeconds + r.floor.backupBeginSeconds + r.floor.readSeconds + r.floor.writeSeconds;
/** The floor of a tool already running (a daemon): no process start. */
const runningFloorOf = (r: IncPeerRep) => floorOf(r) - r.floor.nodeStartSeconds;

function fullStatsOf(reps: FullPeerRep[]): FullStats {
  const m = (f: (r: FullPeerRep) => number) => median(reps.map(f));
  return {
    reps: reps.length,
    havenSeconds: m((r) => r.haven.seconds),
    virtnbdbackupSeconds: m((r) => r.virtnbdbackup.total),
    virtnbdbackupBackupSeconds: m((r) => r.virtnbdbackup.backup),
    virtnbdbackupRestoreSeconds: m((r) => r.virtnbdbackup.restore),
    qemuImgSeconds: m((r) => r.qemuImg.seconds),
    qemuImgDurableSeconds: m((r) => r.qemuImg.seconds + r.qemuImg.flushSeconds),
    vsVirtnbdbackup: m((r) => r.virtnbdbackup.total / r.haven.seconds),
    throughputVsQemuImg: m((r) => r.qemuImg.seconds / r.haven.seconds),
    throughputVsQemuImgDurable: m((r) => (r.qemuImg.seconds + r.qemuImg.flushSeconds) / r.haven.seconds),
    qemuImgDirectSeconds: m((r) => r.qemuImgDirect.seconds),
    qemuImgDirectDurableSeconds: m((r) => r.qemuImgDirect.seconds + r.qemuImgDirect.flushSeconds),
    throughputVsQemuImgDirect: m((r) => r.qemuImgDirect.seconds / r.haven.seconds),
    throughputVsQemuImgDirectDurable: m(
      (r) => (r.qemuImgDirect.seconds + r.qemuImgDirect.flushSeconds) / r.haven.seconds,
    ),
    qemuImgDirectCpuPerGiB: m((r) => r.qemuImgDirect.cpuSeconds / (diskSize / GiB)),
    nbdcopyFloorSeconds: m((r) => r.nbdcopy.backupBeginSeconds + r.nbdcopy.seconds),
    throughputVsNbdcopyFloor: m((r) => (r.nbdcopy.backupBeginSeconds + r.nbdcopy.seconds) / r.haven.seconds),
  };
}

/** Haven against its peers: full reps, and incremental over all reps and the steady-state ones. */
interface PeerStats {
  full: FullStats;
  all: IncStats;
  steady: IncStats;
}

function peerStatsOf(full: FullPeerRep[], inc: IncPeerRep[]): PeerStats {
  const steady = inc.filter((r) => r.havenSlot === 'recycle');
  return { full: fullStatsOf(full), all: incStats(inc), steady: incStats(steady.length ? steady : inc) };
}

async function main(): Promise<void> {
  const root = benchDir('replicate');
  const work = mkdtempSync(join(root, 'run-'));
  // QEMU (libvirt-qemu) creates NBD sockets and scratch files here.
  chmodSync(work, 0o1777);
  const dir = (name: string) => {
    const d = join(work, name);
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o1777);
    return d;
  };
  const peerRun = dir('peer-run');
  const profiles = dir('profiles');
  // Room for every tool's copies: Haven's generations, virtnbdbackup's chain and restore,
  // qemu-img's copy and rsync's two; the baseline's generations besides.
  const targetBytes = Math.max(16 * 1024 * MiB, 10 * diskSize) + (baselineRepo ? (copies + 1) * diskSize : 0);
  const targets = targetDir(work, targetFs, targetBytes);
  /** Each Haven timed has its own state (catalog), run and log directories and its own store. */
  const havenUnderTest = (key: HavenKey, repo: string) => ({
    key,
    repo,
    bin: join(repo, 'bin', 'haven.mjs'),
    state: join(work, `${key}-state`),
    runDir: dir(`${key}-run`),
    logs: dir(`${key}-log`),
    store: join(targets.dir, `${key}-store`),
  });
  type HavenUnderTest = ReturnType<typeof havenUnderTest>;
  const havens: HavenUnderTest[] = [
    havenUnderTest('haven', CURRENT_REPO),
    ...(baselineRepo ? [havenUnderTest('baseline', baselineRepo)] : []),
  ];
  const vnbDir = join(targets.dir, 'vnb-backup');
  const vnbRestore = join(targets.dir, 'vnb-restore');
  const qemuImgOut = join(targets.dir, 'qemu-img.raw');
  const rsyncDelta = join(targets.dir, 'rsync-delta.qcow2');
  const rsyncWhole = join(targets.dir, 'rsync-whole.qcow2');
  const floorFile = join(targets.dir, 'floor.bin');
  // The floor's durable write reads this random file, page-cached: the change's size, so the
  // data's cached file may go (--drop-source). Haven reads at most the blocks the guest wrote.
  const floorSourceSize = Math.ceil(changeBytes / (4 * MiB)) * 4 * MiB + 4 * MiB;

  let bg: BenchGuest | undefined;
  // The guest's cleanup from the moment it is being made (bg is set only once it runs).
  let guestCleanup: (() => Promise<void>) | undefined;
  let hidden: string[] = [];
  let serve: ServeRig | undefined;
  const cleanup = async () => {
    await serve?.stop().catch(() => {});
    serve = undefined;
    if (bg && hidden.length) await restoreCheckpoints(bg.guest.name, hidden, peerRun).catch(() => {});
    hidden = [];
    if (args.keep) {
      say(`kept: ${work}${bg ? ` and domain ${bg.guest.name}` : ''}`);
      return;
    }
    await guestCleanup?.();
    guestCleanup = undefined;
    bg = undefined;
    targets.release();
    rmSync(work, { recursive: true, force: true });
  };
  const offInterrupt = onInterrupt(cleanup, say);

  const versions = {
    node: process.version,
    haven: await gitDescribe(CURRENT_REPO),
    ...(baselineRepo ? { baseline: await gitDescribe(baselineRepo) } : {}),
    qemuImg: await toolVersion('qemu-img'),
    virtnbdbackup: await toolVersion('virtnbdbackup', ['-V']),
    rsync: await toolVersion('rsync'),
  };
  const load: number[][] = [loadavg()];
  try {
    const source = ensureRandomImage(`random-${dataSize}.raw`, dataSize, say);
    say(`creating the guest: ${args['disk-size']} qcow2 with ${args['data-size']} of random data`);
    bg = await createBenchGuest({
      prefix: 'haven-t-bench',
      diskSize,
      randomSource: source,
      onCleanup: (c) => {
        guestCleanup = c;
      },
    });
    if (args['drop-source']) {
      rmSync(source, { force: true });
      say(`--drop-source: removed ${source}`);
    }
    const floorSource = peers ? ensureRandomImage(`random-${floorSourceSize}.raw`, floorSourceSize, say) : '';
    const { guest, image } = bg;
    const domain = guest.name;
    say(`guest ${domain} running; image ${image}; copies go to ${targets.dir} (${targets.fs})`);
    for (const h of havens) {
      // Every Haven measured starts from its compiled tree, as an installed one does (bin/haven.mjs
      // runs dist/ only while it is newer than every source file): through tsx, process and
      // receiver start would take most of an incremental, and two checkouts would compare
      // start-up, not the change.
      await mustRun(join(h.repo, 'scripts', 'build'), [], { cwd: h.repo });
      // Loads every module once, so the first measured run does not pay tsx's first compile.
      await mustRun(process.execPath, [h.bin, '--version']);
    }

    const havenEnv = (h: HavenUnderTest, label: string): NodeJS.ProcessEnv => ({
      ...process.env,
      HAVEN_STATE_DIR: h.state,
      HAVEN_RUN_DIR: h.runDir,
      HAVEN_LOG_DIR: h.logs,
      ...(args.profile
        ? {
            NODE_OPTIONS: `--import ${PROFILE_PRELOAD}`,
            HAVEN_BENCH_PROFILE_DIR: join(profiles, h.key, label),
          }
        : {}),
    });

    const havenProtect = async (h: HavenUnderTest, label: string): Promise<HavenRun> => {
      const logFile = join(h.logs, `${label}.log`);
      const r = await runMeasured(
        process.execPath,
        [
          h.bin,
          '--log-file',
          logFile,
          'protect',
          domain,
          '--to',
          h.store,
          '--copies',
          String(copies),
          '--json',
        ],
        { env: havenEnv(h, label) },
      );
      if (r.code !== 0) throw new Error(`${h.key} protect (${label}) failed: ${r.stderr.trim()}`);
      const out = JSON.parse(r.stdout) as {
        mode: string;
        bytesSent: number;
        disks: { readBytes: number }[];
      };
      const isReceiver = (p: { cmd: string }) => / receive --stdio/.test(p.cmd);
      const receiver = r.procs.find(isReceiver);
      const run: HavenRun = {
        seconds: r.seconds,
        mode: out.mode,
        readBytes: out.disks.reduce((s, d) => s + d.readBytes, 0),
        bytesSent: out.bytesSent,
        senderPeakRss: r.procs[0]?.peakRss ?? 0,
        receiverPeakRss: peakOf(r, isReceiver),
        senderCpuSeconds: r.procs[0]?.cpuSeconds ?? 0,
        receiverCpuSeconds: cpuOf(r, isReceiver),
        cpuSeconds: cpuOf(r),
        phases: phasesOf(logFile, r.startedAt, r.seconds),
      };
      if (args.profile) {
        const pdir = join(profiles, h.key, label);
        const sender = findProfile(pdir, r.procs[0]?.pid ?? -1);
        const recv = receiver && findProfile(pdir, receiver.pid);
        run.profiles = {
          ...(sender ? { sender: summarizeProfile(sender, h.repo) } : {}),
          ...(recv ? { receiver: summarizeProfile(recv, h.repo) } : {}),
        };
      }
      return run;
    };

    /** virtnbdbackup beside Haven: Haven's checkpoints are hidden while it runs (bench-guest.ts). */
    const withHavenHidden = async <T>(fn: () => Promise<T>): Promise<T> => {
      hidden = await hideCheckpoints(domain, 'haven-');
      try {
        return await fn();
      } finally {
        const xmls = hidden;
        hidden = [];
        await restoreCheckpoints(domain, xmls, peerRun);
      }
    };

    const vnbToBootable = async (level: 'full' | 'inc') =>
      withHavenHidden(async () => {
        if (level === 'full') rmSync(vnbDir, { recursive: true, force: true });
        const b = await virtnbdbackup({ domain, level, backupDir: vnbDir, runDir: peerRun });
        rmSync(vnbRestore, { recursive: true, force: true });
        const r = await virtnbdrestore({ backupDir: vnbDir, outDir: vnbRestore, runDir: peerRun });
        const chain = readdirSync(vnbDir).filter((f) => /^vda\.(full|inc\..*)\.data$/.test(f)).length;
        return {
          backup: b.seconds,
          restore: r.seconds,
          total: b.seconds + r.seconds,
          chain,
          peakRss: Math.max(peakOf(b), peakOf(r)),
          cpuSeconds: cpuOf(b) + cpuOf(r),
        };
      });

    const newestIn = (store: string) => {
      const f = readdirSync(store).find((n) => n.endsWith('_1.raw'));
      if (!f) throw new Error(`no newest generation (_1.raw) in ${store}`);
      return join(store, f);
    };
    const havenNewest = (h: HavenUnderTest) => newestIn(h.store);
    const vnbImage = () => {
      const f = readdirSync(vnbRestore).find((n) => n.endsWith('.qcow2'));
      if (!f) throw new Error(`virtnbdrestore left no qcow2 in ${vnbRestore}`);
      return join(vnbRestore, f);
    };
    /** qemu-img compare: identical guest-visible content (unallocated and zero are the same). */
    const sameContent = async (copy: string, format: 'raw' | 'qcow2', live: boolean) => {
      const r = await runMeasured('qemu-img', [
        'compare',
        ...(live ? ['-U'] : []),
        '-f',
        'qcow2',
        '-F',
        format,
        image,
        copy,
      ]);
      return r.code === 0;
    };

    // ---------------------------------------------------------------------------------------------
    /** The Havens of rep `n`, back to back: with --baseline in alternating order per rep. */
    const havenOrder = (n: number): HavenKey[] =>
      (n % 2 === 0 ? havens : [...havens].reverse()).map((h) => h.key);
    const havenOf = (tool: string) => havens.find((h) => h.key === tool);

    say(
      `\nfull copies: ${fullReps} repetitions, order rotating${baselineRepo ? '; haven and baseline alternating' : ''}`,
    );
    const full: FullRep[] = [];
    for (let i = 0; i < fullReps; i++) {
      const pair = havenOrder(i);
      const units = [
        pair,
        ...(peers ? [['virtnbdbackup'], ['qemu-img'], ['qemu-img-direct'], ['nbdcopy']] : []),
      ];
      const order = [...units.slice(i % units.length), ...units.slice(0, i % units.length)].flat();
      const rep: Partial<FullRep> = { order, checks: {} };
      for (const tool of order) {
        const h = havenOf(tool);
        // Each full run starts from a server never protected: no checkpoint, catalog or store.
        // With --baseline both Havens' go before the first of the pair (so the second sees the
        // first's checkpoint: Haven ignores checkpoints its catalog does not hold, each in turn),
        // and before the sync: the first must not pay for the writeback of both deletions.
        if (tool === pair[0]) {
          await deleteCheckpoints(domain, 'haven-');
          for (const x of havens) {
            rmSync(x.state, { recursive: true, force: true });
            rmSync(x.store, { recursive: true, force: true });
          }
        }
        await settle();
        if (h) {
          const run = await havenProtect(h, `full-${i + 1}`);
          if (run.mode !== 'full') throw new Error(`${h.key}'s first run was ${run.mode}, not full`);
          rep[h.key] = run;
        } else if (tool === 'virtnbdbackup') {
          const v = await vnbToBootable('full');
          const { chain: _, ...v2 } = v;
          rep.virtnbdbackup = v2;
        } else if (tool === 'nbdcopy') {
          rmSync(qemuImgOut, { force: true });
          const f = await timeFullCopyFloor({ domain, disk: 'vda', out: qemuImgOut, runDir: peerRun });
          rep.nbdcopy = {
            backupBeginSeconds: f.backupBeginSeconds,
            seconds: f.copy.seconds,
            peakRss: peakOf(f.copy),
            cpuSeconds: cpuOf(f.copy),
          };
          rep.checks!.nbdcopy = await sameContent(qemuImgOut, 'raw', true);
          rmSync(qemuImgOut, { force: true });
        } else {
          const key = tool === 'qemu-img-direct' ? 'qemuImgDirect' : 'qemuImg';
          rmSync(qemuImgOut, { force: true });
          const q = await (key === 'qemuImgDirect' ? qemuImgConvertDirect : qemuImgConvert)(
            image,
            qemuImgOut,
          );
          const fl = await flushFile(qemuImgOut);
          rep[key] = {
            seconds: q.seconds,
            flushSeconds: fl.seconds,
            peakRss: peakOf(q),
            cpuSeconds: cpuOf(q),
          };
          // Checked and removed at once: at 20 GiB two more raw copies beside the others do not fit.
          rep.checks![key] = await sameContent(qemuImgOut, 'raw', true);
          rmSync(qemuImgOut, { force: true });
        }
      }
      for (const h of havens) rep.checks![h.key] = await sameContent(havenNewest(h), 'raw', true);
      if (peers) {
        rep.checks!.virtnbdbackup = await sameContent(vnbImage(), 'qcow2', true);
        rmSync(qemuImgOut, { force: true });
      }
      const r = rep as FullRep;
      full.push(r);
      const times = havens.map((h) => `${h.key} ${secs(r[h.key]!.seconds)}`);
      if (fullHasPeers(r)) {
        times.push(
          `virtnbdbackup ${secs(r.virtnbdbackup.backup)} + restore ${secs(r.virtnbdbackup.restore)}`,
          `qemu-img ${secs(r.qemuImg.seconds)} + fdatasync ${secs(r.qemuImg.flushSeconds)}`,
          `qemu-img -t none -T none ${secs(r.qemuImgDirect.seconds)} + fdatasync ${secs(r.qemuImgDirect.flushSeconds)}`,
          `floor: backup-begin ${secs(r.nbdcopy.backupBeginSeconds)} + nbdcopy --flush ${secs(r.nbdcopy.seconds)}`,
        );
      }
      const checks = Object.entries(r.checks).map(([k, v]) => `${k} ${v}`);
      say(
        `rep ${i + 1} (${order.join(', ')}): ${times.join(', ')}; copies equal the source: ${checks.join(', ')}`,
      );
    }

    /**
     * The peers' part of incremental rep `j`, after the Havens and virtnbdbackup: the floor, then
     * rsync of the stopped image (the domain stays off for the checks; the caller starts it).
     */
    const incPeerPart = async (j: number, rep: Partial<IncRep>, read: SourceFloor): Promise<void> => {
      await settle();
      const nodeStartSeconds = (await mustRun(process.execPath, ['-e', '0'])).seconds;
      // rsync copies a stopped image; the domain is off only for it and the checks.
      await guest.poweroff();
      const rsyncOrder = j % 2 === 0 ? [false, true] : [true, false];
      const rs: Partial<NonNullable<IncRep['rsync']>> = {};
      for (const whole of rsyncOrder) {
        await settle();
        const r = await rsyncInplace(image, whole ? rsyncWhole : rsyncDelta, whole);
        if (whole) rs.wholeFileSeconds = r.seconds;
        else {
          rs.deltaSeconds = r.seconds;
          rs.deltaFlushSeconds = (await flushFile(rsyncDelta)).seconds;
          rs.deltaPeakRss = peakOf(r);
          rs.deltaCpuSeconds = cpuOf(r);
        }
      }
      rep.rsync = rs as IncRep['rsync'];
      await settle();
      const floorBytes = rep.haven!.readBytes;
      if (floorBytes > floorSourceSize) {
        throw new Error(
          `haven read ${floorBytes} bytes, more than the floor's source holds (${floorSourceSize})`,
        );
      }
      rmSync(floorFile, { force: true });
      warmPageCache(floorSource);
      rep.floor = {
        nodeStartSeconds,
        backupBeginSeconds: read.backupBeginSeconds,
        readSeconds: read.readSeconds,
        dirtyBytes: read.dirtyBytes,
        writeSeconds: (await durableWriteFloor(floorSource, floorFile, floorBytes)).seconds,
        bytes: floorBytes,
      };
      rmSync(floorFile, { force: true });
    };

    // ---------------------------------------------------------------------------------------------
    say(
      `\nincremental: ${incReps} repetitions, the guest rewrites ${changeBlocks} random blocks of 64 KiB each time (${(changeBytes / MiB).toFixed(1)} MiB, ${changePercent.toFixed(2)}% of the disk)`,
    );
    if (peers) {
      // rsync's previous copies: the image as it was after the last full runs, taken while stopped.
      await guest.poweroff();
      cpSync(image, rsyncDelta);
      cpSync(image, rsyncWhole);
      await guest.start();
    }
    if (args.serve) {
      say("haven serve and haven receive --listen: starting both, then the job's first (full) run, untimed");
      serve = await startServeRig({
        dir: dir('serve'),
        store: join(targets.dir, 'serve-store'),
        domain,
        copies,
      });
      const first = await serve.run();
      if (first.mode !== 'full') throw new Error(`haven serve's first run was ${first.mode}, not full`);
      if (!(await sameContent(newestIn(serve.store), 'raw', true))) {
        throw new Error("haven serve's full copy differs from the source");
      }
    }
    const inc: IncRep[] = [];
    for (let j = 0; j < incReps; j++) {
      const guestWrites = await guestChange(guest, changeBlocks);
      // The floor's source part comes first, from the newest checkpoint, which every tool's last
      // run took before this change: its bitmap holds exactly the change (a Haven run deletes the
      // checkpoint it started from, so after the runs there is none to measure from).
      let sourceFloor: SourceFloor | undefined;
      if (peers) {
        await settle();
        const from = (await checkpointNames(domain)).filter((n) => n.startsWith('haven-')).at(-1);
        if (!from) throw new Error('no haven checkpoint before an incremental rep');
        sourceFloor = await timeSourceFloor({ domain, disk: 'vda', from, runDir: peerRun });
      }
      const units = [havenOrder(j), ...(serve ? [['serve']] : []), ...(peers ? [['virtnbdbackup']] : [])];
      const order = (j % 2 === 0 ? units : units.reverse()).flat();
      const rep: Partial<IncRep> = { order, guestWrites, checks: {} };
      rep.havenSlot = j + 1 < copies ? 'copy' : 'recycle';
      for (const tool of order) {
        await settle();
        const h = havenOf(tool);
        if (h) {
          const run = await havenProtect(h, `inc-${j + 1}`);
          if (run.mode !== 'incremental') {
            throw new Error(`${h.key}'s run ${j + 1} after the full was ${run.mode}, not incremental`);
          }
          rep[h.key] = run;
        } else if (tool === 'serve' && serve) {
          const run = await serve.run();
          if (run.mode !== 'incremental') {
            throw new Error(`haven serve's run ${j + 1} after the full was ${run.mode}, not incremental`);
          }
          rep.serve = run;
        } else {
          rep.virtnbdbackup = await vnbToBootable('inc');
        }
      }
      if (sourceFloor) await incPeerPart(j, rep, sourceFloor);
      // With the peers the guest is off now (rsync's turn); with --haven-only it runs on, as in
      // the full reps' checks.
      for (const h of havens) rep.checks![h.key] = await sameContent(havenNewest(h), 'raw', !peers);
      if (serve) rep.checks!.serve = await sameContent(newestIn(serve.store), 'raw', !peers);
      if (peers) {
        rep.checks!.virtnbdbackup = await sameContent(vnbImage(), 'qcow2', false);
        for (const [name, f] of [
          ['rsyncDelta', rsyncDelta],
          ['rsyncWholeFile', rsyncWhole],
        ] as const) {
          rep.checks![name] = (await runMeasured('cmp', ['-s', image, f])).code === 0;
        }
        if (j + 1 < incReps) await guest.start();
      }
      const r = rep as IncRep;
      inc.push(r);
      const times = havens.map(
        (h) => `${h.key} ${secs(r[h.key]!.seconds)} (${(r[h.key]!.bytesSent / MiB).toFixed(1)} MiB)`,
      );
      if (r.serve) times.push(`serve ${secs(r.serve.seconds)} (${(r.serve.bytesSent / MiB).toFixed(1)} MiB)`);
      if (incHasPeers(r)) {
        times.push(
          `virtnbdbackup ${secs(r.virtnbdbackup.backup)} + restore of ${r.virtnbdbackup.chain} files ${secs(r.virtnbdbackup.restore)}`,
          `rsync --no-whole-file ${secs(r.rsync.deltaSeconds)} + fdatasync ${secs(r.rsync.deltaFlushSeconds)}`,
          `--whole-file ${secs(r.rsync.wholeFileSeconds)}`,
          `floor ${secs(floorOf(r))} = node ${secs(r.floor.nodeStartSeconds)} + backup-begin ${secs(r.floor.backupBeginSeconds)} + nbdcopy read of ${(r.floor.dirtyBytes / MiB).toFixed(1)} MiB ${secs(r.floor.readSeconds)} + durable write ${secs(r.floor.writeSeconds)}`,
        );
      }
      say(
        `rep ${j + 1} (${order.join(', ')}; guest wrote ${guestWrites} blocks; haven slot ${r.havenSlot}): ${times.join(', ')}; checks ${JSON.stringify(r.checks)}`,
      );
    }
    load.push(loadavg());

    // ---------------------------------------------------------------------------------------------
    const allHaven = [...full.map((r) => r.haven), ...inc.map((r) => r.haven)];
    const memory = {
      senderPeakRss: Math.max(...allHaven.map((h) => h.senderPeakRss)),
      receiverPeakRss: Math.max(...allHaven.map((h) => h.receiverPeakRss)),
      goal: 300 * MiB,
    };
    const checksOk = [...full, ...inc].every((r) => Object.values(r.checks).every(Boolean));
    const peerStats = peers ? peerStatsOf(full.filter(fullHasPeers), inc.filter(incHasPeers)) : undefined;
    const comparison = baselineRepo ? beforeAfter(full, inc) : undefined;
    const met = (v: number, goal: number) => ({ goal, value: v, met: v >= goal });
    const atMost = (v: number, goal: number) => ({ goal, value: v, met: v <= goal });
    const peak = Math.max(memory.senderPeakRss, memory.receiverPeakRss);
    const cpuPerGiB = cpuPerGiBOf(full);
    const memoryGoal = { goal: memory.goal, value: peak, met: peak < memory.goal };
    const result = {
      bench: 'replicate',
      config: {
        diskSize,
        dataSize,
        changePercent,
        changeBlocks,
        changeBytes,
        dropSource: args['drop-source'],
        fullReps,
        incReps,
        copies,
        targetFs: targets.fs,
        profile: args.profile,
        havenOnly: !peers,
        ...(baselineRepo ? { baseline: baselineRepo } : {}),
      },
      versions,
      loadAverage: load,
      full: peerStats ? { ...peerStats.full, reps: full } : { reps: full },
      incremental: peerStats ? { reps: inc, all: peerStats.all, steady: peerStats.steady } : { reps: inc },
      memory,
      cpuPerGiB,
      checksOk,
      goals: peerStats
        ? {
            fullVsVirtnbdbackup: met(peerStats.full.vsVirtnbdbackup, GOALS.fullVsVirtnbdbackup),
            fullVsQemuImg: met(peerStats.full.throughputVsQemuImg, GOALS.fullVsQemuImg),
            fullVsQemuImgDurable: met(peerStats.full.throughputVsQemuImgDurable, GOALS.fullVsQemuImg),
            fullVsQemuImgDirect: met(peerStats.full.throughputVsQemuImgDirect, GOALS.fullVsQemuImg),
            fullCpuPerGiBSender: atMost(cpuPerGiB.disk.sender, GOALS.fullCpuPerGiB),
            fullCpuPerGiBReceiver: atMost(cpuPerGiB.disk.receiver, GOALS.fullCpuPerGiB),
            incVsVirtnbdbackup: met(peerStats.steady.vsVirtnbdbackup, GOALS.incVsVirtnbdbackup),
            incVsRsync: met(peerStats.steady.vsRsync, GOALS.incVsRsync),
            /** Whether this machine allows the rsync goal at all: rsync's time over a perfect tool's. */
            incVsRsyncFloor: met(peerStats.steady.rsyncOverFloor, GOALS.incVsRsync),
            incOverFloorCommand: atMost(peerStats.steady.havenOverFloor, GOALS.incOverFloorCommand),
            ...(peerStats.steady.serveOverFloorRunning === undefined
              ? {}
              : {
                  incOverFloorServe: atMost(peerStats.steady.serveOverFloorRunning, GOALS.incOverFloorServe),
                }),
            memory: memoryGoal,
          }
        : { memory: memoryGoal },
      ...(comparison ? { beforeAfter: comparison } : {}),
    };

    if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    report({ peers: peerStats, comparison, memory, load, diskSize, cpuPerGiB }, full, inc);
    if (!checksOk) {
      process.exitCode = 1;
      say('A COPY DIFFERED FROM ITS SOURCE: the figures above are not valid.');
    }
  } finally {
    await cleanup();
    offInterrupt();
  }
}

function report(
  r: {
    /** Absent with --haven-only. */
    peers?: PeerStats;
    /** With --baseline. */
    comparison?: BeforeAfter;
    memory: { senderPeakRss: number; receiverPeakRss: number };
    load: number[][];
    diskSize: number;
    cpuPerGiB: CpuPerGiB;
  },
  full: FullRep[],
  inc: IncRep[],
): void {
  const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  const x = (v: number) => `${v.toFixed(2)}×`;
  const ok = (v: number, goal: number) => (v >= goal ? 'yes' : 'NO');
  const compact = {
    style: { head: [], border: [], compact: true },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  };
  const t = new Table({ head: ['median of reps', 'time', 'Haven ratio', 'goal', 'met'], ...compact });
  const p = r.peers;
  const steadyReps = inc.filter((i) => i.havenSlot === 'recycle');
  const incReps = steadyReps.length ? steadyReps : inc;
  const havenFull = median(full.map((i) => i.haven.seconds));
  t.push(
    [`full copy, ${full.length} reps`, '', '', '', ''],
    ['  haven protect', secs(havenFull), '', '', ''],
  );
  /** A peer's ratio cells: "1.23× faster", the goal, whether it is met. */
  const vs = (v: number, how: string, goalText = '', goal?: number) => [
    `${x(v)} ${how}`,
    goalText,
    goal === undefined ? '' : ok(v, goal),
  ];
  const sum = (total: number, a: number, b: number) => `${secs(total)} = ${a.toFixed(2)} + ${b.toFixed(2)}`;
  if (p) {
    const f = p.full;
    t.push(
      [
        '  virtnbdbackup full + restore',
        sum(f.virtnbdbackupSeconds, f.virtnbdbackupBackupSeconds, f.virtnbdbackupRestoreSeconds),
        ...vs(f.vsVirtnbdbackup, 'faster', '≥ 1.5×', GOALS.fullVsVirtnbdbackup),
      ],
      [
        '  qemu-img convert -U -t none -T none',
        secs(f.qemuImgDirectSeconds),
        ...vs(f.throughputVsQemuImgDirect, 'throughput', '≥ 0.8×', GOALS.fullVsQemuImg),
      ],
      [
        '  qemu-img convert -U -t none -T none + fdatasync',
        secs(f.qemuImgDirectDurableSeconds),
        ...vs(f.throughputVsQemuImgDirectDurable, 'throughput', '(≥ 0.8×)', GOALS.fullVsQemuImg),
      ],
      [
        '  floor via libvirt: backup-begin + nbdcopy --flush',
        secs(f.nbdcopyFloorSeconds),
        ...vs(f.throughputVsNbdcopyFloor, 'throughput'),
      ],
      [
        '  qemu-img convert -U (page cache)',
        secs(f.qemuImgSeconds),
        ...vs(f.throughputVsQemuImg, 'throughput', '(≥ 0.8×)', GOALS.fullVsQemuImg),
      ],
      [
        '  qemu-img convert -U + fdatasync',
        secs(f.qemuImgDurableSeconds),
        ...vs(f.throughputVsQemuImgDurable, 'throughput', '(≥ 0.8×)', GOALS.fullVsQemuImg),
      ],
    );
  }
  const c = r.cpuPerGiB;
  const under = (v: number) => (v <= GOALS.fullCpuPerGiB ? 'yes' : 'NO');
  t.push(
    [
      '  haven CPU s per GiB of disk, sender / receiver',
      `${c.disk.sender.toFixed(2)} / ${c.disk.receiver.toFixed(2)}`,
      '',
      '≤ 1 each',
      `${under(c.disk.sender)} / ${under(c.disk.receiver)}`,
    ],
    [
      '  haven CPU s per GiB of data read',
      `${c.data.sender.toFixed(2)} / ${c.data.receiver.toFixed(2)}`,
      '',
      '(≤ 1 each)',
      `${under(c.data.sender)} / ${under(c.data.receiver)}`,
    ],
  );
  const steadyTitle = steadyReps.length ? ' (steady state)' : ' (Haven filling its copies)';
  t.push(
    [`incremental, ${incReps.length} reps${steadyTitle}`, '', '', '', ''],
    ['  haven protect', secs(median(incReps.map((i) => i.haven.seconds))), '', '', ''],
  );
  if (p) {
    const s = p.steady;
    t.push(
      [
        '  virtnbdbackup inc + restore',
        sum(s.virtnbdbackupSeconds, s.virtnbdbackupBackupSeconds, s.virtnbdbackupRestoreSeconds),
        ...vs(s.vsVirtnbdbackup, 'faster', '≥ 3×', GOALS.incVsVirtnbdbackup),
      ],
      [
        '  rsync --no-whole-file --inplace',
        secs(s.rsyncDeltaSeconds),
        ...vs(s.vsRsync, 'faster', '≥ 20×', GOALS.incVsRsync),
      ],
      [
        '  rsync --no-whole-file --inplace + fdatasync',
        secs(s.rsyncDeltaDurableSeconds),
        ...vs(s.vsRsyncDurable, 'faster'),
      ],
      ['  rsync --whole-file --inplace', secs(s.rsyncWholeFileSeconds), ...vs(s.vsRsyncWholeFile, 'faster')],
      [
        '  floor: a perfect tool (the four below)',
        secs(s.floorSeconds),
        `rsync / floor ${x(s.rsyncOverFloor)}`,
        '(≥ 20× allows the goal)',
        s.rsyncOverFloor >= GOALS.incVsRsync ? 'yes' : 'NO',
      ],
      [
        '    process start (node -e 0)',
        secs(s.floorNodeStartSeconds),
        `without it ${x(s.rsyncOverFloorRunning)}`,
        '',
        '',
      ],
      ['    virsh backup-begin, incremental pull', secs(s.floorBackupBeginSeconds), '', '', ''],
      ['    nbdcopy read of the dirty extents', secs(s.floorReadSeconds), '', '', ''],
      ['    changed bytes: one sequential durable write', secs(s.floorWriteSeconds), '', '', ''],
      [
        '  haven protect / floor',
        '',
        x(s.havenOverFloor),
        '≤ 3×',
        s.havenOverFloor <= GOALS.incOverFloorCommand ? 'yes' : 'NO',
      ],
    );
    if (s.serveOverFloorRunning !== undefined && s.serveSeconds !== undefined) {
      t.push([
        '  haven serve job / floor without process start',
        secs(s.serveSeconds),
        x(s.serveOverFloorRunning),
        '≤ 2×',
        s.serveOverFloorRunning <= GOALS.incOverFloorServe ? 'yes' : 'NO',
      ]);
    }
  }
  if (!p && inc.some((i) => i.serve)) {
    t.push([
      '  haven serve job',
      secs(median(incReps.flatMap((i) => (i.serve ? [i.serve.seconds] : [])))),
      '',
      '',
      '',
    ]);
  }
  t.push([
    'peak memory, sender / receiver',
    `${mib(r.memory.senderPeakRss)} / ${mib(r.memory.receiverPeakRss)}`,
    '',
    '< 300 MiB',
    Math.max(r.memory.senderPeakRss, r.memory.receiverPeakRss) < 300 * MiB ? 'yes' : 'NO',
  ]);
  say(`\n${t.toString()}`);
  if (p) {
    say(
      `full-copy throughput over the ${mib(r.diskSize)} disk: haven ${formatRate(r.diskSize / havenFull)}, qemu-img ${formatRate(r.diskSize / p.full.qemuImgSeconds)}, qemu-img -t none -T none ${formatRate(r.diskSize / p.full.qemuImgDirectSeconds)}, floor via libvirt ${formatRate(r.diskSize / p.full.nbdcopyFloorSeconds)}`,
    );
  }
  const cpu = (v: number[]) => median(v).toFixed(2);
  const havenCpu = (reps: Array<FullRep | IncRep>) =>
    `haven sender ${cpu(reps.map((i) => i.haven.senderCpuSeconds))} + receiver ${cpu(reps.map((i) => i.haven.receiverCpuSeconds))} (whole tree ${cpu(reps.map((i) => i.haven.cpuSeconds))})`;
  const fullCpu = [havenCpu(full)];
  const incCpu = [havenCpu(incReps)];
  if (p) {
    const fp = full.filter(fullHasPeers);
    const ip = incReps.filter(incHasPeers);
    fullCpu.push(
      `virtnbdbackup + restore ${cpu(fp.map((i) => i.virtnbdbackup.cpuSeconds))}`,
      `qemu-img ${cpu(fp.map((i) => i.qemuImg.cpuSeconds))}`,
      `qemu-img -t none -T none ${cpu(fp.map((i) => i.qemuImgDirect.cpuSeconds))}`,
      `nbdcopy ${cpu(fp.map((i) => i.nbdcopy.cpuSeconds))}`,
    );
    incCpu.push(
      `virtnbdbackup + restore ${cpu(ip.map((i) => i.virtnbdbackup.cpuSeconds))}`,
      `rsync --no-whole-file ${cpu(ip.map((i) => i.rsync.deltaCpuSeconds))}`,
    );
  }
  say(
    `CPU seconds, median (QEMU's NBD server is in neither tool's figure): full: ${fullCpu.join(', ')}; incremental: ${incCpu.join(', ')}`,
  );
  const filling = inc.filter((i) => i.havenSlot === 'copy');
  if (filling.length) {
    say(
      `incremental reps while Haven fills its copies (new slot = whole copy of the newest generation): haven ${filling.map((i) => secs(i.haven.seconds)).join(', ')}`,
    );
  }
  if (r.comparison) say(formatBeforeAfter(r.comparison, compact));
  say(`load average at start / end: ${r.load.map((l) => l.map((v) => v.toFixed(2)).join(' ')).join(' / ')}`);
  say(phaseTable(full, incReps, r.comparison !== undefined, compact));

  const last = [full.at(-1)?.haven, inc.at(-1)?.haven];
  for (const [k, h] of last.entries()) {
    if (!h?.profiles) continue;
    const which = k === 0 ? 'last full run' : 'last incremental run';
    if (h.profiles.sender) say(formatProfile(h.profiles.sender, `${which}, sender`).join('\n'));
    if (h.profiles.receiver) say(formatProfile(h.profiles.receiver, `${which}, receiver`).join('\n'));
  }
}

/** Where Haven's time goes, per phase of its run log; with --baseline the baseline's beside it. */
function phaseTable(
  full: FullRep[],
  inc: IncRep[],
  withBaseline: boolean,
  style: ConstructorParameters<typeof Table>[0],
): string {
  const keys: HavenKey[] = withBaseline ? ['haven', 'baseline'] : ['haven'];
  const runsOf = (reps: Array<FullRep | IncRep>, k: HavenKey) =>
    reps.flatMap((i) => (i[k] === undefined ? [] : [i[k]]));
  const columns = [
    ...keys.map((k) => ({ head: withBaseline ? `full, ${k}` : 'full', runs: runsOf(full, k) })),
    ...keys.map((k) => ({ head: withBaseline ? `incremental, ${k}` : 'incremental', runs: runsOf(inc, k) })),
    // With --serve: the daemon's job runs (their first phase runs from the API request to the run log).
    ...(inc.some((i) => i.serve)
      ? [{ head: 'incremental, haven serve', runs: inc.flatMap((i) => (i.serve ? [i.serve] : [])) }]
      : []),
  ];
  const names = [...new Set(columns.flatMap((c) => c.runs.flatMap((h) => h.phases.map((p) => p.name))))];
  // Blank where no run of the column logged the phase (a daemon's job log lacks some markers).
  const phase = (runs: Array<Pick<HavenRun, 'phases'>>, n: string) =>
    runs.some((h) => h.phases.some((p) => p.name === n))
      ? median(runs.map((h) => h.phases.find((p) => p.name === n)?.seconds ?? 0)).toFixed(2)
      : '';
  const pt = new Table({
    ...style,
    head: ["where Haven's time goes (median s)", ...columns.map((c) => c.head)],
  });
  for (const n of names) pt.push([n, ...columns.map((c) => phase(c.runs, n))]);
  pt.push([
    'total',
    ...columns.map((c) => (c.runs.length ? median(c.runs.map((h) => h.seconds)).toFixed(2) : '')),
  ]);
  return pt.toString();
}

/** `git describe` of a checkout, to name in the report what was compared. */
async function gitDescribe(repo: string): Promise<string> {
  const r = await runMeasured('git', ['-C', repo, 'describe', '--always', '--dirty']);
  return r.code === 0 ? r.stdout.trim() : 'unknown';
}

await main();
