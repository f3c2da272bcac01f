/**
 * Benchmark: continuous protection against Haven's periodic mode at its shortest interval, on one
 * live guest writing to two disks (issue 15, "Speed").
 *
 * The test guest (TCG) with two qcow2 disks runs the sequence-numbered writer (seqw) at `--rate`
 * bytes a second (64 KiB writes, both disks). Measured, in alternating order over `--reps`:
 *
 * - continuous: `haven protect --continuous --interval <interval>` to a fresh local store for
 *   `--duration`; every second the age of the store's newest committed point is sampled (the lag,
 *   i.e. the recovery point an activation would have then);
 * - periodic: `haven protect` run back to back (the shortest interval periodic mode has: the next
 *   run starts when the previous one ends) to another fresh store for the same time; every second
 *   the age of the newest generation is sampled.
 *
 * For each: lag p50/p99/max, bytes the guest wrote and bytes received by the store (per second),
 * CPU seconds of Haven's processes (sender and receiver together) per GiB the guest wrote, and the
 * peak RSS of any Haven process. Guest throughput: with `--throughput`, seqw runs unthrottled for
 * `--throughput-seconds` with no protection, with continuous protection and with periodic runs,
 * and the writes it completed are compared (the goal: protected ≥ 80% of unprotected).
 * Ratios are continuous / periodic (lag) and protected / unprotected (throughput).
 *
 * With `--shaped <rate>` (tc syntax, e.g. `100mbit`), both modes replicate over TLS to a real
 * `haven receive --listen` in a network namespace behind a veth link shaped to that rate by
 * `tc tbf` (test/helpers/shaped-link.ts), uncompressed, instead of to a local store; a receiver
 * per run, whose CPU is added to the run's. The throughput runs stay local.
 *
 *   node --import tsx bench/continuous.ts [--duration 60s] [--rate 1MiB] [--interval 1s]
 *        [--disk-size 64MiB] [--reps 1] [--shaped 100mbit] [--segment 64MiB]
 *        [--throughput] [--throughput-seconds 15] [--json]
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../src/core/exec.ts';
import { parseDuration, parseSize } from '../src/core/units.ts';
import { openFsStore } from '../src/store/index.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import {
  type ShapedLink,
  shapedLink,
  shapedTargetYaml,
  startShapedReceiver,
} from '../test/helpers/shaped-link.ts';
import { makePki } from '../test/helpers/tls.ts';
import { guestFleet } from './lib/guest-fleet.ts';
import { cpuOf, killRunning, type MeasuredRun, type ProcPeak, peakOf, runMeasured } from './lib/proc.ts';

const args = parseArgs({
  options: {
    duration: { type: 'string', default: '60s' },
    rate: { type: 'string', default: '1MiB' },
    interval: { type: 'string', default: '1s' },
    'disk-size': { type: 'string', default: '64MiB' },
    reps: { type: 'string', default: '1' },
    shaped: { type: 'string' },
    segment: { type: 'string' },
    throughput: { type: 'boolean', default: false },
    'throughput-seconds': { type: 'string', default: '15' },
    json: { type: 'boolean', default: false },
  },
}).values;

const durationMs = parseDuration(args.duration);
const rate = parseSize(args.rate);
const diskSize = parseSize(args['disk-size']);
const BLOCK = 65536;
const log = (s: string) => process.stderr.write(`${s}\n`);

type Mode = 'continuous' | 'periodic';

interface LagRun {
  mode: Mode;
  samples: number;
  p50: number;
  p99: number;
  max: number;
  /** Runs (periodic) or cycles (continuous) completed. */
  copies: number;
  guestBytes: number;
  cpuSeconds: number;
  cpuPerGiB: number;
  peakRssMiB: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function newestAge(store: string, server: string, mode: Mode): Promise<number | undefined> {
  const s = await openFsStore(store).catch(() => null);
  if (!s) return undefined;
  try {
    const at =
      mode === 'continuous'
        ? (await s.journalInfo(server))?.newest?.takenAt
        : (await s.manifest(server))?.generations[0]?.takenAt;
    return at ? Date.now() - Date.parse(at) : undefined;
  } catch {
    return undefined;
  } finally {
    await s.close();
  }
}

function havenEnv(dir: string, config = ''): NodeJS.ProcessEnv {
  mkdirSync(dir, { recursive: true });
  // An empty configuration (the commands' flags say everything), or the shaped link's target.
  writeFileSync(join(dir, 'haven.yaml'), config);
  return {
    ...process.env,
    HAVEN_STATE_DIR: join(dir, 'state'),
    HAVEN_RUN_DIR: join(dir, 'run'),
    HAVEN_LOG_DIR: join(dir, 'log'),
    HAVEN_CONFIG: join(dir, 'haven.yaml'),
  };
}

const isHaven = (p: ProcPeak) => p.cmd.includes('haven');

/** CPU seconds (user + system) a process has used so far, from /proc (0 once it is gone). */
function cpuSecondsOf(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Where a run replicates to: a local store, or (`--shaped`) a receiver on `store` behind the
 * shaped link, named `dr` in the run's configuration. `cpu` reads the receiver's CPU seconds.
 */
interface Destination {
  to: string;
  config: string;
  cpu: () => number;
  close: () => Promise<void>;
}

let link: ShapedLink | undefined;
let receiverPort = 7443;
/** Receivers still running: stopped at the end even when a run failed. */
const receivers = new Set<() => Promise<void>>();

async function destination(dir: string, store: string): Promise<Destination> {
  if (!link) return { to: store, config: '', cpu: () => 0, close: async () => {} };
  const rx = await startShapedReceiver(link, dir, store, { HAVEN_LOG_DIR: `${store}-log` }, receiverPort++);
  receivers.add(rx.stop);
  return {
    to: 'dr',
    config: `targets:\n${shapedTargetYaml('dr', rx, dir)}`,
    cpu: () => cpuSecondsOf(rx.child.pid),
    close: async () => {
      receivers.delete(rx.stop);
      await rx.stop();
    },
  };
}

/** Runs one mode for the duration while the guest writes; samples the lag every second. */
async function lagRun(
  mode: Mode,
  server: string,
  dir: string,
  guest: { seqStart: (o: SeqOptions) => Promise<void>; seqStop: () => Promise<number> },
): Promise<LagRun> {
  const store = join(dir, `store-${mode}`);
  rmSync(store, { recursive: true, force: true });
  const dest = await destination(dir, store);
  const env = havenEnv(join(dir, mode), dest.config);
  const segment = args.segment ? ['--segment', args.segment] : [];
  await guest.seqStart({ rate, block: BLOCK, nonce: 3, disks: ['vda', 'vdb'] });
  const lags: number[] = [];
  const runs: MeasuredRun[] = [];
  const t0 = Date.now();
  let stop = false;
  let failed: MeasuredRun | undefined;
  const sampler = (async () => {
    // The first copy (a full one) is not the steady state: sampling starts once one exists.
    const deadline = Date.now() + 180_000;
    while (!stop && (await newestAge(store, server, mode)) === undefined) {
      if (Date.now() > deadline)
        throw new Error(`no first copy in ${store} within 3 min: see the logs in ${dir}`);
      if (failed) throw new Error(`haven protect failed:\n${failed.stderr.split('\n').slice(-8).join('\n')}`);
      await sleep(500);
    }
    const from = Date.now();
    while (!stop && Date.now() - from < durationMs) {
      const age = await newestAge(store, server, mode);
      if (age !== undefined) lags.push(age);
      await sleep(1000);
    }
    stop = true;
  })();
  if (mode === 'continuous') {
    const run = runMeasured(
      process.execPath,
      [
        HAVEN_BIN,
        'protect',
        server,
        '--to',
        dest.to,
        '--continuous',
        '--interval',
        args.interval,
        ...segment,
        '--json',
      ],
      { env },
    ).then((r) => {
      if (!stop) failed = r;
      return r;
    });
    await sampler;
    await killRunning('SIGTERM');
    runs.push(await run);
  } else {
    const loop = (async () => {
      while (!stop) {
        const r = await runMeasured(process.execPath, [HAVEN_BIN, 'protect', server, '--to', dest.to], {
          env,
        });
        runs.push(r);
        if (r.code !== 0) failed = r;
      }
    })();
    await sampler;
    await loop;
  }
  const writes = await guest.seqStop();
  const seconds = (Date.now() - t0) / 1000;
  const guestBytes = writes * BLOCK;
  const cpuSeconds = runs.reduce((n, r) => n + cpuOf(r, isHaven), 0) + dest.cpu();
  await dest.close();
  lags.sort((a, b) => a - b);
  const copies =
    mode === 'continuous'
      ? ((JSON.parse(runs[0]?.stdout || '{}') as { cycles?: number }).cycles ?? 0)
      : runs.filter((r) => r.code === 0).length;
  log(
    `${mode}: ${lags.length} samples, lag p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms; ` +
      `${copies} copies; guest wrote ${(guestBytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(0)} s`,
  );
  return {
    mode,
    samples: lags.length,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    max: lags.at(-1) ?? Number.NaN,
    copies,
    guestBytes,
    cpuSeconds,
    cpuPerGiB: cpuSeconds / (guestBytes / 2 ** 30),
    peakRssMiB: Math.max(...runs.map((r) => peakOf(r, isHaven))) / 2 ** 20,
  };
}

interface SeqOptions {
  rate: number;
  block: number;
  nonce: number;
  disks: string[];
}

/**
 * The "time from a point's selection to a booting server": `haven activate --at <point>`
 * of the continuous run's newest point, under another domain name beside the running guest, from
 * the command's start until it returns with the domain running (the point materialised, the
 * overlays made, the domain started); then `haven deactivate --destroy`. Three times; seconds.
 */
async function pointActivation(server: string, dir: string, bootDirs: string[]): Promise<number[]> {
  const store = join(dir, 'store-continuous');
  // The DR host lets the test guest's kernel boot (docs/recovery.md, definition rules).
  const env = havenEnv(
    join(dir, 'activate'),
    `definitions:\n  boot_files: [${bootDirs.map((d) => JSON.stringify(d)).join(', ')}]\n`,
  );
  const s = await openFsStore(store);
  const newest = await s.journalInfo(server).finally(() => s.close());
  if (!newest?.newest) throw new Error(`no point in ${store} to activate`);
  const seconds: number[] = [];
  for (let i = 0; i < 3; i++) {
    const name = `${server}-pt`;
    const t0 = performance.now();
    const r = await runMeasured(
      process.execPath,
      [HAVEN_BIN, 'activate', server, '--store', store, '--at', newest.newest.id, '--name', name, '--json'],
      { env },
    );
    const took = (performance.now() - t0) / 1000;
    if (r.code !== 0) throw new Error(`activate --at failed:\n${r.stderr}`);
    seconds.push(took);
    const off = await runMeasured(
      process.execPath,
      [HAVEN_BIN, 'deactivate', server, '--store', store, '--destroy'],
      { env },
    );
    if (off.code !== 0) throw new Error(`deactivate failed:\n${off.stderr}`);
    log(`activate --at ${newest.newest.id}: running after ${took.toFixed(2)} s`);
  }
  return seconds;
}

/** Writes seqw completes unthrottled in `seconds`, while `during` protects (or nothing does). */
async function throughput(
  label: string,
  server: string,
  dir: string,
  guest: { seqStart: (o: SeqOptions) => Promise<void>; seqStop: () => Promise<number> },
  protect: ((store: string, env: NodeJS.ProcessEnv) => Promise<void>) | null,
): Promise<number> {
  const store = join(dir, `tp-${label}`);
  rmSync(store, { recursive: true, force: true });
  const env = havenEnv(join(dir, `tp-${label}`));
  let stop = false;
  let running: Promise<void> = Promise.resolve();
  if (protect) {
    // The first (full) copy first: what is measured is protection in its steady state.
    await runMeasured(process.execPath, [HAVEN_BIN, 'protect', server, '--to', store], { env });
    running = (async () => {
      while (!stop) await protect(store, env);
    })();
    await sleep(3000);
  }
  const seconds = Number(args['throughput-seconds']);
  await guest.seqStart({ rate: 1 << 30, block: BLOCK, nonce: 4, disks: ['vda', 'vdb'] });
  await sleep(seconds * 1000);
  const writes = await guest.seqStop();
  stop = true;
  await killRunning('SIGTERM');
  await running;
  const mibs = (writes * BLOCK) / 2 ** 20 / seconds;
  log(`throughput ${label}: ${mibs.toFixed(2)} MiB/s`);
  return mibs;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function main(): Promise<void> {
  // Commands run from the compiled tree, as an installed Haven does (bin/haven.mjs runs dist/ only
  // while it is newer than the sources; through tsx a process starts with ~20 MiB more).
  await exec(join(import.meta.dirname, '..', 'scripts', 'build'), []);
  const fleet = await guestFleet('continuous');
  const dir = fleet.work;
  // QEMU, running as its own user, creates the backups' scratch files in the run directories.
  chmodSync(dir, 0o755);
  // Stopped (Ctrl-C, or the end): Haven's processes first, then the guest and the directory.
  fleet.onCleanup(() => killRunning('SIGTERM'));
  process.once('SIGTERM', () => void fleet.cleanup().finally(() => process.exit(130)));
  const results: LagRun[] = [];
  const tp: Record<string, number> = {};
  let activation: number[] = [];
  try {
    if (args.shaped) {
      link = await shapedLink(`b${process.pid % 100_000}`, args.shaped);
      fleet.onCleanup(() => link?.destroy());
      await makePki(dir, [link.nsIp]);
      log(`shaped link ${link.ns}: ${link.hostIp} -> ${link.nsIp} at ${args.shaped} (tc tbf, both ends)`);
    }
    const mib = diskSize / 2 ** 20;
    const guest = await fleet.guest({ prefix: 'haven-b-cont', disks: [{ sizeMiB: mib }, { sizeMiB: mib }] });
    log(`guest ${guest.name}: two ${mib} MiB disks, seqw at ${args.rate}/s, ${args.duration} per run`);
    for (let rep = 0; rep < Number(args.reps); rep++) {
      const order: Mode[] = rep % 2 === 0 ? ['continuous', 'periodic'] : ['periodic', 'continuous'];
      for (const mode of order) results.push(await lagRun(mode, guest.name, dir, guest));
    }
    if (results.some((r) => r.mode === 'continuous'))
      activation = await pointActivation(guest.name, dir, guest.bootDirs);
    if (args.throughput) {
      tp.unprotected = await throughput('none', guest.name, dir, guest, null);
      tp.continuous = await throughput('continuous', guest.name, dir, guest, async (store, env) => {
        await runMeasured(
          process.execPath,
          [HAVEN_BIN, 'protect', guest.name, '--to', store, '--continuous', '--interval', args.interval],
          { env },
        );
      });
      tp.periodic = await throughput('periodic', guest.name, dir, guest, async (store, env) => {
        await runMeasured(process.execPath, [HAVEN_BIN, 'protect', guest.name, '--to', store], { env });
      });
    }
  } finally {
    await killRunning('SIGTERM');
    for (const stop of receivers) await stop();
    await fleet.cleanup();
  }
  const median = (mode: Mode, k: 'p50' | 'p99' | 'cpuPerGiB' | 'peakRssMiB') => {
    const v = results
      .filter((r) => r.mode === mode)
      .map((r) => r[k])
      .sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)] ?? Number.NaN;
  };
  const summary = {
    continuous: {
      p50: median('continuous', 'p50'),
      p99: median('continuous', 'p99'),
      cpuPerGiB: median('continuous', 'cpuPerGiB'),
      peakRssMiB: median('continuous', 'peakRssMiB'),
    },
    periodic: {
      p50: median('periodic', 'p50'),
      p99: median('periodic', 'p99'),
      cpuPerGiB: median('periodic', 'cpuPerGiB'),
      peakRssMiB: median('periodic', 'peakRssMiB'),
    },
    ratios: {
      lagP50: median('continuous', 'p50') / median('periodic', 'p50'),
      lagP99: median('continuous', 'p99') / median('periodic', 'p99'),
      ...(tp.unprotected
        ? {
            throughputContinuous: (tp.continuous ?? 0) / tp.unprotected,
            throughputPeriodic: (tp.periodic ?? 0) / tp.unprotected,
          }
        : {}),
    },
    throughputMiBs: tp,
    /** Seconds from `haven activate --at <point>` to the domain running, each repetition. */
    pointActivationSeconds: activation,
  };
  log(
    `lag p50/p99: continuous ${summary.continuous.p50}/${summary.continuous.p99} ms, periodic ${summary.periodic.p50}/${summary.periodic.p99} ms; ` +
      `ratio p50 ${summary.ratios.lagP50.toFixed(2)}, p99 ${summary.ratios.lagP99.toFixed(2)}`,
  );
  log(
    `CPU s/GiB written: continuous ${summary.continuous.cpuPerGiB.toFixed(1)}, periodic ${summary.periodic.cpuPerGiB.toFixed(1)}; ` +
      `peak RSS MiB: continuous ${summary.continuous.peakRssMiB.toFixed(0)}, periodic ${summary.periodic.peakRssMiB.toFixed(0)}`,
  );
  if (activation.length)
    log(
      `point selected to domain running: ${activation.map((x) => x.toFixed(2)).join(', ')} s (median ${[...activation].sort((a, b) => a - b)[1]?.toFixed(2)} s)`,
    );
  if (args.json) process.stdout.write(`${JSON.stringify({ runs: results, summary })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
