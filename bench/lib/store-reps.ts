/**
 * The rep loop the store comparisons share (replicate-lvm, replicate-rbd): one full run to each
 * store, then incremental reps in which the live guest changes once and one run goes to each
 * store, the order rotating per rep, so every store gets the same change. Each store has its own
 * catalog, run and log directories; `sync` before each run, untimed. Every copy is checked: the
 * source disk is hashed while the domain is suspended, before and after the rep's runs, and
 * each store's newest image (hashed by the bench's `inspect`) must equal it, with exactly
 * min(runs, copies) generations.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { parseSize } from '../../src/core/units.ts';
import { HAVEN_BIN } from '../../src/transport/index.ts';
import { type BenchGuest, GUEST_BLOCK, guestChange } from './bench-guest.ts';
import { settle } from './peers.ts';
import { commitSecondsOf, type Phase, phaseMedians, phasesOf } from './phases.ts';
import { mustRun, runMeasured } from './proc.ts';
import { median } from './stats.ts';

const MiB = 1024 * 1024;

export interface StoreRun {
  seconds: number;
  mode: string;
  bytesSent: number;
  phases: Phase[];
  /** Generations the store holds after the run. */
  generations: number;
  /** sha256 of its newest image, up to the disk's size. */
  hash: string;
  /** With replicate-lvm --trace-lvm: the LVM tools the run started, by command, and their wall time. */
  tools?: Record<string, { calls: number; seconds: number }>;
}

export interface Rep<K extends string> {
  label: string;
  /** full; copy: a new slot filled from the newest generation; rotate: the oldest recycled. */
  kind: 'full' | 'copy' | 'rotate';
  order: K[];
  guestWrites: number;
  sourceHash: string;
  runs: Record<K, StoreRun>;
  /** Per store: newest image equal to the source, generation count right; `source`: unchanged. */
  checks: Record<string, boolean>;
}

export interface StoreRepsOptions<K extends string> {
  keys: readonly K[];
  /** Where each store's catalog, run and log directories go. */
  work: string;
  bg: BenchGuest;
  copies: number;
  reps: number;
  changeBlocks: number;
  changePercent: number;
  url(k: K): string;
  /** More `haven protect` arguments (ssh options). */
  protectArgs?: string[];
  /** The newest image's sha256 up to the disk's size, and the generation count. */
  inspect(k: K): Promise<{ generations: number; hash: string }>;
  /** Untimed, after the local `sync` and before the run (a remote sync, a trace reset). */
  beforeRun?(k: K): Promise<void>;
  /** What else to record about a run, after it (replicate-lvm's tool trace). */
  afterRun?(k: K): Promise<Partial<StoreRun>>;
  say(line: string): void;
}

export async function virsh(argv: string[]): Promise<string> {
  return (await mustRun('virsh', ['-c', 'qemu:///system', ...argv])).stdout;
}

export async function storeReps<K extends string>(o: StoreRepsOptions<K>): Promise<Rep<K>[]> {
  const protect = protectRunner(o);
  const sourceHash = sourceHasher(o);
  const runRep = async (label: string, kind: Rep<K>['kind'], order: K[], guestWrites: number) => {
    const before = await sourceHash();
    const runs = {} as Rep<K>['runs'];
    const checks: Rep<K>['checks'] = {};
    const expected = kind === 'full' ? 1 : Math.min(o.copies, Number(label.slice(4)) + 1);
    for (const k of order) {
      await settle();
      await o.beforeRun?.(k);
      const run = await protect(k, label);
      const want = kind === 'full' ? 'full' : 'incremental';
      if (run.mode !== want) throw new Error(`${label} to ${k} ran ${run.mode}, not ${want}`);
      const seen = await o.inspect(k);
      runs[k] = { ...run, ...seen, ...((await o.afterRun?.(k)) ?? {}) };
      checks[k] = seen.hash === before && seen.generations === expected;
    }
    checks.source = (await sourceHash()) === before;
    const times = order.map(
      (k) => `${k} ${(runs[k].seconds).toFixed(1)} s (${(runs[k].bytesSent / MiB).toFixed(1)} MiB)`,
    );
    o.say(`${label} [${kind}] ${times.join(', ')}; checks ${JSON.stringify(checks)}`);
    return { label, kind, order, guestWrites, sourceHash: before, runs, checks };
  };

  const out: Rep<K>[] = [];
  o.say('\nfull: one run to each store');
  out.push(await runRep('full', 'full', [...o.keys], 0));
  o.say(
    `\nincremental: ${o.reps} reps, ~${o.changePercent}% (${o.changeBlocks} blocks of 64 KiB) changed by the guest each time`,
  );
  for (let j = 0; j < o.reps; j++) {
    const guestWrites = await guestChange(o.bg.guest, o.changeBlocks);
    const order = o.keys.map((_, i) => o.keys[(i + j) % o.keys.length]!);
    out.push(await runRep(`inc-${j + 1}`, j + 1 < o.copies ? 'copy' : 'rotate', order, guestWrites));
  }
  return out;
}

/** `haven protect` to store `k`, timed, with its own catalog, run and log directories. */
function protectRunner<K extends string>(o: StoreRepsOptions<K>) {
  const dir = (name: string) => {
    const d = join(o.work, name);
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o1777);
    return d;
  };
  const env = (k: K): NodeJS.ProcessEnv => ({
    ...process.env,
    HAVEN_STATE_DIR: join(o.work, `${k}-state`),
    HAVEN_RUN_DIR: dir(`${k}-run`),
    HAVEN_LOG_DIR: dir(`${k}-log`),
  });
  return async (k: K, label: string): Promise<Omit<StoreRun, 'generations' | 'hash'>> => {
    const logFile = join(o.work, `${k}-log`, `${label}.log`);
    const args = ['--log-file', logFile, 'protect', o.bg.guest.name, '--to', o.url(k)];
    args.push('--copies', String(o.copies), '--json', ...(o.protectArgs ?? []));
    const r = await runMeasured(process.execPath, [HAVEN_BIN, ...args], { env: env(k) });
    if (r.code !== 0) throw new Error(`haven protect to ${k} (${label}) failed: ${r.stderr.trim()}`);
    const out = JSON.parse(r.stdout) as { mode: string; bytesSent: number };
    return {
      seconds: r.seconds,
      mode: out.mode,
      bytesSent: out.bytesSent,
      phases: phasesOf(logFile, r.startedAt, r.seconds),
    };
  };
}

/** The source disk's sha256, read while the domain is suspended. */
function sourceHasher<K extends string>(o: StoreRepsOptions<K>) {
  const rawCopy = join(o.work, 'source.raw');
  return async () => {
    await virsh(['suspend', o.bg.guest.name]);
    try {
      await mustRun('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', o.bg.image, rawCopy]);
    } finally {
      await virsh(['resume', o.bg.guest.name]);
    }
    const h = (await mustRun('sha256sum', [rawCopy])).stdout.split(' ')[0]!;
    rmSync(rawCopy, { force: true });
    return h;
  };
}

/** Medians over one kind of rep (full, incremental, rotating), per store. */
export interface KindStats<K extends string, R extends string> {
  reps: number;
  seconds: Record<K, number>;
  /** The commit phase (rotation, fsync), from the run logs. */
  commitSeconds: Record<K, number>;
  bytesSent: Record<K, number>;
  /** Each phase of the run logs (lib/phases.ts). */
  phases: Record<K, Record<string, number>>;
  /** Medians of the per-rep ratios named by the bench (each rep's runs carried the same change). */
  ratios: Record<R, number>;
}

/** A named ratio: store a over store b, of whole runs or of their commit phases. */
export type RatioSpec<K extends string> = [a: K, b: K, of: 'run' | 'commit'];

function kindStats<K extends string, R extends string>(
  keys: readonly K[],
  reps: Rep<K>[],
  ratios: Record<R, RatioSpec<K>>,
): KindStats<K, R> {
  const per = (f: (r: StoreRun) => number) =>
    Object.fromEntries(keys.map((k) => [k, median(reps.map((r) => f(r.runs[k])))])) as Record<K, number>;
  const commit = (r: StoreRun) => commitSecondsOf(r.phases);
  const ratio = ([a, b, of]: RatioSpec<K>) => {
    const f = of === 'commit' ? commit : (r: StoreRun) => r.seconds;
    return median(reps.map((r) => f(r.runs[a]) / f(r.runs[b])));
  };
  return {
    reps: reps.length,
    seconds: per((r) => r.seconds),
    commitSeconds: per(commit),
    bytesSent: per((r) => r.bytesSent),
    phases: Object.fromEntries(
      keys.map((k) => [k, phaseMedians(reps.map((r) => r.runs[k].phases))]),
    ) as Record<K, Record<string, number>>,
    ratios: Object.fromEntries(
      (Object.entries(ratios) as Array<[R, RatioSpec<K>]>).map(([n, spec]) => [n, ratio(spec)]),
    ) as Record<R, number>,
  };
}

export interface RepStats<K extends string, R extends string> {
  full: KindStats<K, R>;
  incremental: KindStats<K, R>;
  rotating: KindStats<K, R>;
}

export function repStats<K extends string, R extends string>(
  keys: readonly K[],
  reps: Rep<K>[],
  ratios: Record<R, RatioSpec<K>>,
): RepStats<K, R> {
  const inc = reps.filter((r) => r.kind !== 'full');
  return {
    full: kindStats(
      keys,
      reps.filter((r) => r.kind === 'full'),
      ratios,
    ),
    incremental: kindStats(keys, inc, ratios),
    rotating: kindStats(
      keys,
      inc.filter((r) => r.kind === 'rotate'),
      ratios,
    ),
  };
}

/** cli-table3 settings of the reports: no borders, no lines between rows. */
export const COMPACT = {
  style: { head: [], border: [], compact: true },
  chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
};

/** Where the time goes: the median of each phase, full and rotating runs, per store. */
export function phaseTable<K extends string>(keys: readonly K[], s: RepStats<K, string>): string {
  const w = new Table({
    head: [
      'where the time goes, median s',
      ...keys.map((k) => `full ${k}`),
      ...keys.map((k) => `rotating ${k}`),
    ],
    ...COMPACT,
  });
  const phaseNames = [...new Set(keys.flatMap((k) => Object.keys(s.full.phases[k])))];
  const cell = (v: number | undefined) => (v === undefined ? '' : v.toFixed(1));
  for (const n of phaseNames) {
    w.push([
      n,
      ...keys.map((k) => cell(s.full.phases[k][n])),
      ...keys.map((k) => cell(s.rotating.phases[k][n])),
    ]);
  }
  return w.toString();
}

/** The options every store comparison takes, checked; `traceLvm` only replicate-lvm's. */
export function repOptions(o: { traceLvm?: boolean } = {}) {
  const { values: args } = parseArgs({
    options: {
      reps: { type: 'string', default: '4' },
      copies: { type: 'string', default: '3' },
      'disk-size': { type: 'string', default: '512MiB' },
      'data-size': { type: 'string', default: '256MiB' },
      change: { type: 'string', default: '2' },
      keep: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      ...(o.traceLvm ? { 'trace-lvm': { type: 'boolean', default: false } as const } : {}),
    },
  });
  const reps = Number(args.reps);
  const copies = Number(args.copies);
  const diskSize = parseSize(args['disk-size']);
  const dataSize = parseSize(args['data-size']);
  const changePercent = Number(args.change);
  const changeBlocks = Math.round((diskSize * changePercent) / 100 / GUEST_BLOCK);
  if (!Number.isInteger(copies) || copies < 2) throw new Error('--copies must be a whole number >= 2');
  if (!Number.isInteger(reps) || reps < copies) {
    // Fewer reps than copies: no run would rotate, and rotation is what differs most between stores.
    throw new Error(`--reps must be a whole number >= --copies (${copies}), so that some runs rotate`);
  }
  if (dataSize > diskSize || diskSize % (1024 * 1024) !== 0) {
    throw new Error('--disk-size must be whole MiB and at least --data-size');
  }
  const traceLvm = (args as { 'trace-lvm'?: boolean })['trace-lvm'] === true;
  const numbers = { reps, copies, diskSize, dataSize, changePercent, changeBlocks };
  return {
    args: { ...args, traceLvm },
    /** What the JSON output records of the options. */
    config: { ...numbers, ...(o.traceLvm ? { traceLvm } : {}) },
    ...numbers,
  };
}

/**
 * The end of a store bench: the load average after the run and the stats of its reps; with --json
 * one object on stdout, then the bench's report on stderr; exit code 1 (and a warning) when any
 * copy differed from its source.
 */
export function publishReps<K extends string, S, P>(
  bench: string,
  o: { json: boolean; config: object; load: number[][]; say(line: string): void },
  result: { reps: Rep<K>[]; space: P },
  statsOf: (reps: Rep<K>[]) => S,
  report: (reps: Rep<K>[], stats: S, space: P, load: number[][]) => void,
): void {
  o.load.push(loadavg());
  const { reps, space } = result;
  const stats = statsOf(reps);
  const ok = reps.every((r) => Object.values(r.checks).every(Boolean));
  if (o.json) {
    const { config, load: loadAverage } = o;
    process.stdout.write(
      `${JSON.stringify({ bench, config, loadAverage, reps, stats, space, checksOk: ok })}\n`,
    );
  }
  report(reps, stats, space, o.load);
  if (!ok) {
    process.exitCode = 1;
    o.say('A COPY DIFFERED FROM ITS SOURCE: the figures above are not valid.');
  }
}
