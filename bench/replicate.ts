/**
 * Benchmark: time until a bootable copy exists, Haven against its peers, on one live guest disk
 * (tracker issue 3, "Speed").
 *
 * One TCG test guest with one 2 GiB qcow2 disk holding 1 GiB of random data (written into the
 * image before boot). Measured, in alternating order over several repetitions:
 *
 * - full: `haven protect` to a fresh local store (its newest image is a bootable raw file),
 *   against `virtnbdbackup -l full` + `virtnbdrestore`, and `qemu-img convert -U` to raw;
 * - incremental: the guest itself writes ~2% of the disk in random 64 KiB blocks, then
 *   `haven protect` (found through the dirty bitmap of the running domain), against
 *   `virtnbdbackup -l inc` + `virtnbdrestore` of the whole chain, and (with the guest shut off)
 *   `rsync --inplace` of the image onto the previous copy, with and without --no-whole-file.
 *
 * Reference points, measured in the same reps: rsync's copy made durable (`sync --data`, as
 * Haven's is when it returns), and a perfect tool's floor: one process start, libvirt starting
 * the incremental pull backup (bare virsh), and the changed bytes written once, sequentially,
 * with O_DIRECT and fsync, onto the same filesystem. rsync's time over that floor is the largest
 * ratio to rsync that any tool taking its change from libvirt could reach on this machine.
 *
 * Every result is checked against the source disk (`qemu-img compare`, `cmp` for rsync), so a
 * fast wrong copy cannot win. Peak memory of Haven's sender and receiver is their VmHWM.
 * `--profile` runs Haven under V8's CPU profiler (lib/cpu-profile-preload.mjs; times are then
 * inflated a little) and prints where the sender and the receiver spent their time.
 * Progress and the report go to stderr; `--json` adds one JSON object with every figure on stdout.
 *
 *   node --import tsx bench/replicate.ts [--full-reps 3] [--inc-reps 5] [--copies 3]
 *        [--disk-size 2GiB] [--data-size 1GiB] [--change 2] [--target-fs local|xfs] [--profile]
 *        [--keep] [--json]
 *
 * `--target-fs xfs` puts every tool's copies (Haven's store too) on a fresh loop-mounted XFS with
 * reflinks, where Haven's rotation clones the newest generation instead of replaying deltas.
 */
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { parseSize } from '../src/core/units.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import {
  type BenchGuest,
  checkpointNames,
  createBenchGuest,
  deleteCheckpoints,
  GUEST_BLOCK,
  guestChange,
  hideCheckpoints,
  restoreCheckpoints,
  timeBackupBegin,
} from './lib/bench-guest.ts';
import { formatProfile, type ProfileSummary, summarizeProfile } from './lib/cpuprofile.ts';
import { benchDir, ensureRandomImage } from './lib/fixtures.ts';
import {
  durableWriteFloor,
  flushFile,
  qemuImgConvert,
  rsyncInplace,
  settle,
  toolVersion,
  virtnbdbackup,
  virtnbdrestore,
} from './lib/peers.ts';
import { cpuOf, killRunning, mustRun, peakOf, runMeasured } from './lib/proc.ts';
import { formatRate, median } from './lib/stats.ts';
import { parseTargetFs, targetDir } from './lib/target-fs.ts';

const { values: args } = parseArgs({
  options: {
    'full-reps': { type: 'string', default: '3' },
    'inc-reps': { type: 'string', default: '5' },
    copies: { type: 'string', default: '3' },
    'disk-size': { type: 'string', default: '2GiB' },
    'data-size': { type: 'string', default: '1GiB' },
    change: { type: 'string', default: '2' },
    'target-fs': { type: 'string', default: 'local' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const fullReps = Number(args['full-reps']);
const incReps = Number(args['inc-reps']);
const copies = Number(args.copies);
const diskSize = parseSize(args['disk-size']);
const dataSize = parseSize(args['data-size']);
const changePercent = Number(args.change);
const changeBlocks = Math.round((diskSize * changePercent) / 100 / GUEST_BLOCK);
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

const GOALS = { fullVsVirtnbdbackup: 1.5, fullVsQemuImg: 0.8, incVsVirtnbdbackup: 3, incVsRsync: 20 };
/** Progress and the report go to stderr, also with --json (stdout then holds only the JSON). */
const say = (line: string) => process.stderr.write(`${line}\n`);
const secs = (s: number) => `${s.toFixed(2)} s`;
const MiB = 1024 * 1024;

// ------------------------------------------------------------------------------------------------
// Haven runs

interface Phase {
  name: string;
  seconds: number;
}

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

/** Log messages that start each phase of a run (the sender's run log, receiver events included). */
const MARKERS: Array<[string, RegExp]> = [
  ['process start, module loading', /^run log opened$/],
  ['catalog, inventory, virsh', /^starting receiver$/],
  ['receiver start', /^target: session started/],
  ['checkpoint + backup-begin', /^point in time taken$/],
  ['delta open, NBD connect', /^nbd: connected$/],
  ['read + send + stage (data)', /^target: delta durable/],
  ['commit (rotation, fsync)', /^target: generation committed/],
];

/** Splits a run's wall time at the first occurrence of each marker in its log. */
function phasesOf(logFile: string, startedAt: number, seconds: number): Phase[] {
  const times = new Map<string, number>();
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line) continue;
    let rec: { t?: string; msg?: string };
    try {
      rec = JSON.parse(line) as { t?: string; msg?: string };
    } catch {
      continue;
    }
    for (const [name, re] of MARKERS) {
      if (!times.has(name) && rec.msg && rec.t && re.test(rec.msg)) times.set(name, Date.parse(rec.t));
    }
  }
  const phases: Phase[] = [];
  let prev = startedAt;
  let prevName = 'spawn';
  for (const [name] of MARKERS) {
    const t = times.get(name);
    if (t === undefined) continue;
    phases.push({ name, seconds: (t - prev) / 1000 });
    prev = t;
    prevName = name;
  }
  phases.push({
    name: prevName === 'spawn' ? 'whole run' : 'finish (checkpoint cleanup, backup end, exit)',
    seconds: startedAt / 1000 + seconds - prev / 1000,
  });
  return phases;
}

const PROFILE_PRELOAD = fileURLToPath(new URL('./lib/cpu-profile-preload.mjs', import.meta.url));

function findProfile(dir: string, pid: number): string | undefined {
  if (!existsSync(dir)) return undefined;
  const f = readdirSync(dir).find((n) => n.endsWith('.cpuprofile') && n.includes(`.${pid}.`));
  return f ? join(dir, f) : undefined;
}

// ------------------------------------------------------------------------------------------------

interface FullRep {
  order: string[];
  haven: HavenRun;
  virtnbdbackup: { backup: number; restore: number; total: number; peakRss: number; cpuSeconds: number };
  /** `flushSeconds`: fdatasync of qemu-img's output afterwards (qemu-img itself never flushes). */
  qemuImg: { seconds: number; flushSeconds: number; peakRss: number; cpuSeconds: number };
  checks: Record<string, boolean>;
}

interface IncRep {
  order: string[];
  guestWrites: number;
  /** The Haven generation's slot: a whole copy of the newest (fewer than N generations) or recycled. */
  havenSlot: 'copy' | 'recycle';
  haven: HavenRun;
  virtnbdbackup: {
    backup: number;
    restore: number;
    total: number;
    chain: number;
    peakRss: number;
    cpuSeconds: number;
  };
  /** `deltaFlushSeconds`: fdatasync of the --no-whole-file copy right after it (rsync never flushes). */
  rsync: {
    deltaSeconds: number;
    deltaFlushSeconds: number;
    wholeFileSeconds: number;
    deltaPeakRss: number;
    deltaCpuSeconds: number;
  };
  /**
   * What a perfect tool could not avoid, each part measured alone: a process start (`node -e 0`),
   * libvirt starting the incremental pull backup (bench-guest.ts `timeBackupBegin`), and Haven's
   * changed bytes written once, sequentially and durably (peers.ts `durableWriteFloor`).
   */
  floor: { nodeStartSeconds: number; backupBeginSeconds: number; writeSeconds: number; bytes: number };
  checks: Record<string, boolean>;
}

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
  floorWriteSeconds: number;
  /** Per rep, the three floors added up: a perfect tool's time. */
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
}

/** Medians of times, and medians of the per-rep ratios (each rep's tools saw the same change). */
function incStats(reps: IncRep[]): IncStats {
  const m = (f: (r: IncRep) => number) => median(reps.map(f));
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
    floorWriteSeconds: m((r) => r.floor.writeSeconds),
    floorSeconds: m((r) => floorOf(r)),
    vsVirtnbdbackup: m((r) => r.virtnbdbackup.total / r.haven.seconds),
    vsRsync: m((r) => r.rsync.deltaSeconds / r.haven.seconds),
    vsRsyncWholeFile: m((r) => r.rsync.wholeFileSeconds / r.haven.seconds),
    vsRsyncDurable: m((r) => (r.rsync.deltaSeconds + r.rsync.deltaFlushSeconds) / r.haven.seconds),
    rsyncOverFloor: m((r) => r.rsync.deltaSeconds / floorOf(r)),
    rsyncOverFloorRunning: m((r) => r.rsync.deltaSeconds / (floorOf(r) - r.floor.nodeStartSeconds)),
  };
}

const floorOf = (r: IncRep) => r.floor.nodeStartSeconds + r.floor.backupBeginSeconds + r.floor.writeSeconds;

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
  const havenState = join(work, 'haven-state');
  const havenRunDir = dir('haven-run');
  const havenLogs = dir('haven-log');
  const peerRun = dir('peer-run');
  const profiles = dir('profiles');
  // Room for every tool's copies: Haven's generations, virtnbdbackup's chain and restore,
  // qemu-img's copy and rsync's two.
  const targets = targetDir(work, targetFs, Math.max(16 * 1024 * MiB, 10 * diskSize));
  const store = join(targets.dir, 'haven-store');
  const vnbDir = join(targets.dir, 'vnb-backup');
  const vnbRestore = join(targets.dir, 'vnb-restore');
  const qemuImgOut = join(targets.dir, 'qemu-img.raw');
  const rsyncDelta = join(targets.dir, 'rsync-delta.qcow2');
  const rsyncWhole = join(targets.dir, 'rsync-whole.qcow2');
  const floorFile = join(targets.dir, 'floor.bin');

  let bg: BenchGuest | undefined;
  let hidden: string[] = [];
  const cleanup = async () => {
    if (bg && hidden.length) await restoreCheckpoints(bg.guest.name, hidden, peerRun).catch(() => {});
    hidden = [];
    if (args.keep) {
      say(`kept: ${work}${bg ? ` and domain ${bg.guest.name}` : ''}`);
      return;
    }
    await bg?.cleanup();
    bg = undefined;
    targets.release();
    rmSync(work, { recursive: true, force: true });
  };
  const onSignal = () => {
    say('interrupted: stopping the running program, cleaning up');
    void killRunning()
      .then(cleanup)
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const versions = {
    node: process.version,
    qemuImg: await toolVersion('qemu-img'),
    virtnbdbackup: await toolVersion('virtnbdbackup', ['-V']),
    rsync: await toolVersion('rsync'),
  };
  const load: number[][] = [loadavg()];
  try {
    const source = ensureRandomImage(`random-${dataSize}.raw`, dataSize, say);
    say(`creating the guest: ${args['disk-size']} qcow2 with ${args['data-size']} of random data`);
    bg = await createBenchGuest({ prefix: 'haven-t-bench', diskSize, randomSource: source });
    const { guest, image } = bg;
    const domain = guest.name;
    say(`guest ${domain} running; image ${image}; copies go to ${targets.dir} (${targets.fs})`);
    // Loads every module once, so the first measured run does not pay tsx's first compile.
    await mustRun(process.execPath, [HAVEN_BIN, '--version']);

    const havenEnv = (label: string): NodeJS.ProcessEnv => ({
      ...process.env,
      HAVEN_STATE_DIR: havenState,
      HAVEN_RUN_DIR: havenRunDir,
      HAVEN_LOG_DIR: havenLogs,
      ...(args.profile
        ? {
            NODE_OPTIONS: `--import ${PROFILE_PRELOAD}`,
            HAVEN_BENCH_PROFILE_DIR: join(profiles, label),
          }
        : {}),
    });

    const havenProtect = async (label: string): Promise<HavenRun> => {
      const logFile = join(havenLogs, `${label}.log`);
      const r = await runMeasured(
        process.execPath,
        [
          HAVEN_BIN,
          '--log-file',
          logFile,
          'protect',
          domain,
          '--to',
          store,
          '--copies',
          String(copies),
          '--json',
        ],
        { env: havenEnv(label) },
      );
      if (r.code !== 0) throw new Error(`haven protect (${label}) failed: ${r.stderr.trim()}`);
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
        const pdir = join(profiles, label);
        const sender = findProfile(pdir, r.procs[0]?.pid ?? -1);
        const recv = receiver && findProfile(pdir, receiver.pid);
        const repo = join(HAVEN_BIN, '..', '..');
        run.profiles = {
          ...(sender ? { sender: summarizeProfile(sender, repo) } : {}),
          ...(recv ? { receiver: summarizeProfile(recv, repo) } : {}),
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

    const havenNewest = () => {
      const f = readdirSync(store).find((n) => n.endsWith('_1.raw'));
      if (!f) throw new Error(`no newest generation (_1.raw) in ${store}`);
      return join(store, f);
    };
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
    say(`\nfull copies: ${fullReps} repetitions, order rotating`);
    const full: FullRep[] = [];
    const tools = ['haven', 'virtnbdbackup', 'qemu-img'];
    for (let i = 0; i < fullReps; i++) {
      const order = [...tools.slice(i % 3), ...tools.slice(0, i % 3)];
      const rep: Partial<FullRep> = { order, checks: {} };
      for (const tool of order) {
        await settle();
        if (tool === 'haven') {
          // Each full run starts from a server never protected: no checkpoint, catalog or store.
          await deleteCheckpoints(domain, 'haven-');
          rmSync(havenState, { recursive: true, force: true });
          rmSync(store, { recursive: true, force: true });
          rep.haven = await havenProtect(`full-${i + 1}`);
          if (rep.haven.mode !== 'full') throw new Error(`haven's first run was ${rep.haven.mode}, not full`);
        } else if (tool === 'virtnbdbackup') {
          const v = await vnbToBootable('full');
          const { chain: _, ...v2 } = v;
          rep.virtnbdbackup = v2;
        } else {
          rmSync(qemuImgOut, { force: true });
          const q = await qemuImgConvert(image, qemuImgOut);
          const fl = await flushFile(qemuImgOut);
          rep.qemuImg = {
            seconds: q.seconds,
            flushSeconds: fl.seconds,
            peakRss: peakOf(q),
            cpuSeconds: cpuOf(q),
          };
        }
      }
      rep.checks!.haven = await sameContent(havenNewest(), 'raw', true);
      rep.checks!.virtnbdbackup = await sameContent(vnbImage(), 'qcow2', true);
      rmSync(qemuImgOut, { force: true });
      const r = rep as FullRep;
      full.push(r);
      say(
        `rep ${i + 1} (${order.join(', ')}): haven ${secs(r.haven.seconds)}, virtnbdbackup ${secs(r.virtnbdbackup.backup)} + restore ${secs(r.virtnbdbackup.restore)}, qemu-img ${secs(r.qemuImg.seconds)} + fdatasync ${secs(r.qemuImg.flushSeconds)}; copies equal the source: haven ${r.checks.haven}, virtnbdbackup ${r.checks.virtnbdbackup}`,
      );
    }

    // ---------------------------------------------------------------------------------------------
    say(`\nincremental: ${incReps} repetitions, ~${changePercent}% changed by the guest each time`);
    // rsync's previous copies: the image as it was after the last full runs, taken while stopped.
    await guest.poweroff();
    cpSync(image, rsyncDelta);
    cpSync(image, rsyncWhole);
    await guest.start();
    const inc: IncRep[] = [];
    for (let j = 0; j < incReps; j++) {
      const guestWrites = await guestChange(guest, changeBlocks);
      const order = j % 2 === 0 ? ['haven', 'virtnbdbackup'] : ['virtnbdbackup', 'haven'];
      const rep: Partial<IncRep> = { order, guestWrites, checks: {} };
      rep.havenSlot = j + 1 < copies ? 'copy' : 'recycle';
      for (const tool of order) {
        await settle();
        if (tool === 'haven') {
          rep.haven = await havenProtect(`inc-${j + 1}`);
          if (rep.haven.mode !== 'incremental') {
            throw new Error(`haven's run ${j + 1} after the full was ${rep.haven.mode}, not incremental`);
          }
        } else {
          rep.virtnbdbackup = await vnbToBootable('inc');
        }
      }
      await settle();
      const floorFrom = (await checkpointNames(domain)).filter((n) => n.startsWith('haven-')).at(-1);
      if (!floorFrom) throw new Error('no haven checkpoint after an incremental run');
      const backupBeginSeconds = await timeBackupBegin({
        domain,
        disk: 'vda',
        from: floorFrom,
        runDir: peerRun,
      });
      const nodeStartSeconds = (await mustRun(process.execPath, ['-e', '0'])).seconds;
      // rsync copies a stopped image; the domain is off only for it and the checks.
      await guest.poweroff();
      const rsyncOrder = j % 2 === 0 ? [false, true] : [true, false];
      const rs: Partial<IncRep['rsync']> = {};
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
      rmSync(floorFile, { force: true });
      rep.floor = {
        nodeStartSeconds,
        backupBeginSeconds,
        writeSeconds: (await durableWriteFloor(source, floorFile, floorBytes)).seconds,
        bytes: floorBytes,
      };
      rmSync(floorFile, { force: true });
      rep.checks!.haven = await sameContent(havenNewest(), 'raw', false);
      rep.checks!.virtnbdbackup = await sameContent(vnbImage(), 'qcow2', false);
      for (const [name, f] of [
        ['rsyncDelta', rsyncDelta],
        ['rsyncWholeFile', rsyncWhole],
      ] as const) {
        rep.checks![name] = (await runMeasured('cmp', ['-s', image, f])).code === 0;
      }
      if (j + 1 < incReps) await guest.start();
      const r = rep as IncRep;
      inc.push(r);
      say(
        `rep ${j + 1} (${order.join(', ')}; guest wrote ${guestWrites} blocks; haven slot ${r.havenSlot}): haven ${secs(r.haven.seconds)} (${(r.haven.bytesSent / MiB).toFixed(1)} MiB), virtnbdbackup ${secs(r.virtnbdbackup.backup)} + restore of ${r.virtnbdbackup.chain} files ${secs(r.virtnbdbackup.restore)}, rsync --no-whole-file ${secs(r.rsync.deltaSeconds)} + fdatasync ${secs(r.rsync.deltaFlushSeconds)}, --whole-file ${secs(r.rsync.wholeFileSeconds)}, floor ${secs(floorOf(r))} = node ${secs(r.floor.nodeStartSeconds)} + backup-begin ${secs(r.floor.backupBeginSeconds)} + durable write ${secs(r.floor.writeSeconds)}; checks ${JSON.stringify(r.checks)}`,
      );
    }
    load.push(loadavg());

    // ---------------------------------------------------------------------------------------------
    const fullRatios = {
      vsVirtnbdbackup: median(full.map((r) => r.virtnbdbackup.total / r.haven.seconds)),
      throughputVsQemuImg: median(full.map((r) => r.qemuImg.seconds / r.haven.seconds)),
      throughputVsQemuImgDurable: median(
        full.map((r) => (r.qemuImg.seconds + r.qemuImg.flushSeconds) / r.haven.seconds),
      ),
    };
    const steady = inc.filter((r) => r.havenSlot === 'recycle');
    const allHaven = [...full.map((r) => r.haven), ...inc.map((r) => r.haven)];
    const memory = {
      senderPeakRss: Math.max(...allHaven.map((h) => h.senderPeakRss)),
      receiverPeakRss: Math.max(...allHaven.map((h) => h.receiverPeakRss)),
      goal: 300 * MiB,
    };
    const checksOk = [...full, ...inc].every((r) => Object.values(r.checks).every(Boolean));
    const incSteady = incStats(steady.length ? steady : inc);
    const fullStats: FullStats = {
      reps: full.length,
      havenSeconds: median(full.map((r) => r.haven.seconds)),
      virtnbdbackupSeconds: median(full.map((r) => r.virtnbdbackup.total)),
      virtnbdbackupBackupSeconds: median(full.map((r) => r.virtnbdbackup.backup)),
      virtnbdbackupRestoreSeconds: median(full.map((r) => r.virtnbdbackup.restore)),
      qemuImgSeconds: median(full.map((r) => r.qemuImg.seconds)),
      qemuImgDurableSeconds: median(full.map((r) => r.qemuImg.seconds + r.qemuImg.flushSeconds)),
      ...fullRatios,
    };
    const met = (v: number, goal: number) => ({ goal, value: v, met: v >= goal });
    const peak = Math.max(memory.senderPeakRss, memory.receiverPeakRss);
    const result = {
      bench: 'replicate',
      config: {
        diskSize,
        dataSize,
        changePercent,
        changeBlocks,
        fullReps,
        incReps,
        copies,
        targetFs: targets.fs,
        profile: args.profile,
      },
      versions,
      loadAverage: load,
      full: { ...fullStats, reps: full },
      incremental: { reps: inc, all: incStats(inc), steady: incSteady },
      memory,
      checksOk,
      goals: {
        fullVsVirtnbdbackup: met(fullRatios.vsVirtnbdbackup, GOALS.fullVsVirtnbdbackup),
        fullVsQemuImg: met(fullRatios.throughputVsQemuImg, GOALS.fullVsQemuImg),
        fullVsQemuImgDurable: met(fullRatios.throughputVsQemuImgDurable, GOALS.fullVsQemuImg),
        incVsVirtnbdbackup: met(incSteady.vsVirtnbdbackup, GOALS.incVsVirtnbdbackup),
        incVsRsync: met(incSteady.vsRsync, GOALS.incVsRsync),
        /** Whether this machine allows the rsync goal at all: rsync's time over a perfect tool's. */
        incVsRsyncFloor: met(incSteady.rsyncOverFloor, GOALS.incVsRsync),
        memory: { goal: memory.goal, value: peak, met: peak < memory.goal },
      },
    };

    if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    report({ full: fullStats, steady: incSteady, memory, load, diskSize }, full, inc);
    if (!checksOk) {
      process.exitCode = 1;
      say('A COPY DIFFERED FROM ITS SOURCE: the figures above are not valid.');
    }
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function report(
  r: {
    full: FullStats;
    steady: IncStats;
    memory: { senderPeakRss: number; receiverPeakRss: number };
    load: number[][];
    diskSize: number;
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
  const f = r.full;
  const s = r.steady;
  const steadyReps = inc.filter((i) => i.havenSlot === 'recycle');
  t.push(
    [`full copy, ${full.length} reps`, '', '', '', ''],
    ['  haven protect', secs(f.havenSeconds), '', '', ''],
    [
      '  virtnbdbackup full + restore',
      `${secs(f.virtnbdbackupSeconds)} = ${f.virtnbdbackupBackupSeconds.toFixed(2)} + ${f.virtnbdbackupRestoreSeconds.toFixed(2)}`,
      `${x(f.vsVirtnbdbackup)} faster`,
      '≥ 1.5×',
      ok(f.vsVirtnbdbackup, GOALS.fullVsVirtnbdbackup),
    ],
    [
      '  qemu-img convert -U',
      secs(f.qemuImgSeconds),
      `${x(f.throughputVsQemuImg)} throughput`,
      '≥ 0.8×',
      ok(f.throughputVsQemuImg, GOALS.fullVsQemuImg),
    ],
    [
      '  qemu-img convert -U + fdatasync',
      secs(f.qemuImgDurableSeconds),
      `${x(f.throughputVsQemuImgDurable)} throughput`,
      '(≥ 0.8×)',
      ok(f.throughputVsQemuImgDurable, GOALS.fullVsQemuImg),
    ],
    [
      `incremental, ${s.reps} reps${steadyReps.length ? ' (steady state)' : ' (Haven filling its copies)'}`,
      '',
      '',
      '',
      '',
    ],
    ['  haven protect', secs(s.havenSeconds), '', '', ''],
    [
      '  virtnbdbackup inc + restore',
      `${secs(s.virtnbdbackupSeconds)} = ${s.virtnbdbackupBackupSeconds.toFixed(2)} + ${s.virtnbdbackupRestoreSeconds.toFixed(2)}`,
      `${x(s.vsVirtnbdbackup)} faster`,
      '≥ 3×',
      ok(s.vsVirtnbdbackup, GOALS.incVsVirtnbdbackup),
    ],
    [
      '  rsync --no-whole-file --inplace',
      secs(s.rsyncDeltaSeconds),
      `${x(s.vsRsync)} faster`,
      '≥ 20×',
      ok(s.vsRsync, GOALS.incVsRsync),
    ],
    [
      '  rsync --no-whole-file --inplace + fdatasync',
      secs(s.rsyncDeltaDurableSeconds),
      `${x(s.vsRsyncDurable)} faster`,
      '',
      '',
    ],
    [
      '  rsync --whole-file --inplace',
      secs(s.rsyncWholeFileSeconds),
      `${x(s.vsRsyncWholeFile)} faster`,
      '',
      '',
    ],
    [
      '  floor: a perfect tool (the three below)',
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
    ['    changed bytes: one sequential durable write', secs(s.floorWriteSeconds), '', '', ''],
    [
      'peak memory, sender / receiver',
      `${mib(r.memory.senderPeakRss)} / ${mib(r.memory.receiverPeakRss)}`,
      '',
      '< 300 MiB',
      Math.max(r.memory.senderPeakRss, r.memory.receiverPeakRss) < 300 * MiB ? 'yes' : 'NO',
    ],
  );
  say(`\n${t.toString()}`);
  say(
    `full-copy throughput over the ${mib(r.diskSize)} disk: haven ${formatRate(r.diskSize / f.havenSeconds)}, qemu-img ${formatRate(r.diskSize / f.qemuImgSeconds)}`,
  );
  const cpu = (v: number[]) => median(v).toFixed(2);
  const incCpuReps = steadyReps.length ? steadyReps : inc;
  say(
    `CPU seconds, median (QEMU's NBD server is in neither tool's figure): full: haven sender ${cpu(full.map((i) => i.haven.senderCpuSeconds))} + receiver ${cpu(full.map((i) => i.haven.receiverCpuSeconds))} (whole tree ${cpu(full.map((i) => i.haven.cpuSeconds))}), virtnbdbackup + restore ${cpu(full.map((i) => i.virtnbdbackup.cpuSeconds))}, qemu-img ${cpu(full.map((i) => i.qemuImg.cpuSeconds))}; incremental: haven sender ${cpu(incCpuReps.map((i) => i.haven.senderCpuSeconds))} + receiver ${cpu(incCpuReps.map((i) => i.haven.receiverCpuSeconds))} (whole tree ${cpu(incCpuReps.map((i) => i.haven.cpuSeconds))}), virtnbdbackup + restore ${cpu(incCpuReps.map((i) => i.virtnbdbackup.cpuSeconds))}, rsync --no-whole-file ${cpu(incCpuReps.map((i) => i.rsync.deltaCpuSeconds))}`,
  );
  const filling = inc.filter((i) => i.havenSlot === 'copy');
  if (filling.length) {
    say(
      `incremental reps while Haven fills its copies (new slot = whole copy of the newest generation): haven ${filling.map((i) => secs(i.haven.seconds)).join(', ')}`,
    );
  }
  say(`load average at start / end: ${r.load.map((l) => l.map((v) => v.toFixed(2)).join(' ')).join(' / ')}`);

  const incRuns = (steadyReps.length ? steadyReps : inc).map((i) => i.haven);
  const fullRuns = full.map((i) => i.haven);
  const names = [...new Set([...fullRuns, ...incRuns].flatMap((h) => h.phases.map((p) => p.name)))];
  const phase = (runs: HavenRun[], n: string) =>
    runs.length ? median(runs.map((h) => h.phases.find((p) => p.name === n)?.seconds ?? 0)).toFixed(2) : '';
  const pt = new Table({ head: ["where Haven's time goes (median s)", 'full', 'incremental'], ...compact });
  for (const n of names) pt.push([n, phase(fullRuns, n), phase(incRuns, n)]);
  pt.push([
    'total',
    median(fullRuns.map((h) => h.seconds)).toFixed(2),
    incRuns.length ? median(incRuns.map((h) => h.seconds)).toFixed(2) : '',
  ]);
  say(pt.toString());

  const last = [full.at(-1)?.haven, inc.at(-1)?.haven];
  for (const [k, h] of last.entries()) {
    if (!h?.profiles) continue;
    const which = k === 0 ? 'last full run' : 'last incremental run';
    if (h.profiles.sender) say(formatProfile(h.profiles.sender, `${which}, sender`).join('\n'));
    if (h.profiles.receiver) say(formatProfile(h.profiles.receiver, `${which}, receiver`).join('\n'));
  }
}

await main();
