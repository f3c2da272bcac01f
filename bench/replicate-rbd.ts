/**
 * Benchmark: replication into an rbd store (a Ceph pool) against the filesystem store, on this
 * host (issue 18, "Speed": full and incremental into RBD against the filesystem store in the same
 * run; space used for `copies: 3` against three full images).
 *
 * Everything is local: the protected server is a live test guest (lib/bench-guest.ts: random data
 * written into its qcow2 before boot, ~change% rewritten by the guest itself in random 64 KiB
 * blocks before every incremental rep), and both stores are `file://` targets whose receiver runs
 * on this host. The rbd store's pool is made in the one-node test cluster of
 * $HAVEN_TEST_ROOT (test/fixtures/ceph: shared, started when none runs, left to its reaper).
 * Each store has a catalog, run and log directory of its own:
 *
 *   fs    file://<work>/fs-store
 *   rbd   file://<work>/rbd-store?rbd=<rbd://admin@ceph/<pool>?conf=…&keyring=…, percent-encoded>
 *
 * One full run to each, then `--reps` incremental reps: in each, the guest changes once, then
 * `haven protect --copies N` runs to both stores, the order alternating per rep, so both get the
 * same change. From rep N on every run rotates: the fs store by replaying the staged deltas into
 * the recycled oldest raw file, the rbd store by snapshot and clone of the head image
 * (docs/store-rbd.md, "Rotation by the cluster"). Before each measured run `sync`, untimed.
 *
 * Every copy is checked: after the change, the source disk is hashed while the domain is
 * suspended (`qemu-img convert -U` to a raw file, sha256), and again after the rep's runs (the
 * guest writes nothing meanwhile, so both must agree); after each run, the store's newest image
 * (`<server>_<disk>_1.raw`, or `rbd export` of the image of that name) is hashed up to the disk's
 * size and must equal the source's hash, and the store must hold exactly min(runs, N)
 * generations. A mismatch fails the bench (exit 1).
 *
 *   HAVEN_TEST_ROOT=/var/tmp/x node --import tsx bench/replicate-rbd.ts [--reps 4] [--copies 3]
 *        [--disk-size 512MiB] [--data-size 256MiB] [--change 2] [--keep] [--json]
 *
 * Progress and the report go to stderr; `--json` adds one JSON object on stdout. `--keep` leaves
 * the run directory (both stores' directories, catalogs and run logs); the guest and the pool
 * always go.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { parseSize } from '../src/core/units.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import type { CephCluster } from '../test/fixtures/ceph/index.ts';
import { type BenchGuest, createBenchGuest, GUEST_BLOCK, guestChange } from './lib/bench-guest.ts';
import { BENCH_ROOT, benchDir, ensureRandomImage } from './lib/fixtures.ts';
import { settle } from './lib/peers.ts';
import { type Phase, phasesOf } from './lib/phases.ts';
import { mustRun, onInterrupt, runMeasured } from './lib/proc.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '4' },
    copies: { type: 'string', default: '3' },
    'disk-size': { type: 'string', default: '512MiB' },
    'data-size': { type: 'string', default: '256MiB' },
    change: { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
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

const PREFIX = 'haven-b-hbr';
const MiB = 1024 * 1024;
const say = (line: string) => process.stderr.write(`${line}\n`);
const secs = (s: number) => `${s.toFixed(1)} s`;

const STORE_KEYS = ['fs', 'rbd'] as const;
type StoreKey = (typeof STORE_KEYS)[number];

interface StoreRun {
  seconds: number;
  mode: string;
  bytesSent: number;
  phases: Phase[];
  /** Generations the store holds after the run. */
  generations: number;
  /** sha256 of its newest image, up to the disk's size. */
  hash: string;
}

interface Rep {
  label: string;
  /** full; copy: a new slot filled from the newest generation; rotate: the oldest recycled. */
  kind: 'full' | 'copy' | 'rotate';
  order: StoreKey[];
  guestWrites: number;
  sourceHash: string;
  runs: Record<StoreKey, StoreRun>;
  /** Per store: newest image equal to the source, generation count right; `source`: unchanged. */
  checks: Record<string, boolean>;
}

/** Where the two stores are, and how to reach the pool's images. */
interface Stores {
  work: string;
  ceph: CephCluster;
  pool: string;
  dir: Record<StoreKey, string>;
  url: Record<StoreKey, string>;
}

async function virsh(argv: string[]): Promise<string> {
  return (await mustRun('virsh', ['-c', 'qemu:///system', ...argv])).stdout;
}

/** sha256 of a shell pipeline's output (bash, pipefail: a failing reader fails the hash). */
async function pipeHash(pipeline: string): Promise<string> {
  const r = await mustRun('bash', ['-c', `set -o pipefail; ${pipeline} | sha256sum`]);
  return /^([0-9a-f]{64})/.exec(r.stdout)?.[1] ?? 'none';
}

async function main(): Promise<void> {
  process.env.HAVEN_TEST_ROOT ??= join(BENCH_ROOT, 'guests');
  mkdirSync(process.env.HAVEN_TEST_ROOT, { recursive: true });
  // Loaded only now: the fixture reads HAVEN_TEST_ROOT when it is first imported.
  const { startCephCluster } = await import('../test/fixtures/ceph/index.ts');
  const work = mkdtempSync(join(benchDir('replicate-rbd'), `${PREFIX}-`));
  chmodSync(work, 0o1777);
  let ceph: CephCluster | undefined;
  let guestCleanup: (() => Promise<void>) | undefined;
  const cleanup = async () => {
    await guestCleanup?.().catch((e) => say(`cleanup: ${String(e)}`));
    guestCleanup = undefined;
    // Removes the bench's pool and gives up its lease; the shared cluster is left to its reaper.
    await ceph?.stop().catch((e) => say(`cleanup: ${String(e)}`));
    ceph = undefined;
    if (args.keep) say(`kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  };
  const offInterrupt = onInterrupt(cleanup, say);
  const load: number[][] = [loadavg()];
  try {
    const random = ensureRandomImage(`random-${dataSize}.raw`, dataSize, say);
    say('starting (or joining) the test Ceph cluster and creating the source guest');
    const [cluster, bg] = await Promise.all([
      startCephCluster(undefined).then((c) => {
        ceph = c;
        return c;
      }),
      createBenchGuest({
        prefix: `${PREFIX}-src`,
        diskSize,
        randomSource: random,
        onCleanup: (c) => {
          guestCleanup = c;
        },
      }),
    ]);
    const pool = await cluster.createPool(`${PREFIX}-${process.pid}`);
    const location = `rbd://admin@ceph/${pool}?conf=${cluster.conf}&keyring=${cluster.keyring}`;
    const dir = { fs: join(work, 'fs-store'), rbd: join(work, 'rbd-store') };
    const stores: Stores = {
      work,
      ceph: cluster,
      pool,
      dir,
      url: { fs: `file://${dir.fs}`, rbd: `file://${dir.rbd}?rbd=${encodeURIComponent(location)}` },
    };
    say(
      `cluster ${cluster.dir} (${cluster.reused ? 'reused' : 'started'}), pool ${pool}; ` +
        `source guest ${bg.guest.name} (${args['disk-size']})`,
    );
    const result = await measure(stores, bg);
    load.push(loadavg());
    const stats = statsOf(result.reps);
    const ok = result.reps.every((r) => Object.values(r.checks).every(Boolean));
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({
          bench: 'replicate-rbd',
          config: { reps, copies, diskSize, dataSize, changePercent, changeBlocks },
          loadAverage: load,
          reps: result.reps,
          stats,
          space: result.space,
          checksOk: ok,
        })}\n`,
      );
    }
    report(result.reps, stats, result.space, load);
    if (!ok) {
      process.exitCode = 1;
      say('A COPY DIFFERED FROM ITS SOURCE: the figures above are not valid.');
    }
  } finally {
    await cleanup();
    offInterrupt();
  }
}

interface Space {
  /** du of the fs store's directory: its sparse raw files, staged deltas and metadata. */
  fs: number;
  /**
   * The pool's `ceph df detail` figures (one OSD, pool size 1). `bytesUsed` is what BlueStore
   * allocated: a snapshot's copy-on-write object shares the extents the head did not overwrite,
   * so they count once. `stored` is logical: every such object at its whole size (up to 4 MiB).
   */
  rbdStored: number;
  rbdBytesUsed: number;
  rbdObjects: number;
  /** du of the rbd store's metadata directory (descriptor, manifests, digests, staged deltas). */
  rbdMetadata: number;
  /** Images in the pool's trash (a head kept for its snapshots' clones). */
  rbdTrash: number;
}

async function measure(s: Stores, bg: BenchGuest): Promise<{ reps: Rep[]; space: Space | undefined }> {
  const domain = bg.guest.name;
  const disk = bg.guest.disks[0]!.storeName;
  const dir = (name: string) => {
    const d = join(s.work, name);
    mkdirSync(d, { recursive: true });
    chmodSync(d, 0o1777);
    return d;
  };
  /** Each store has its own catalog, run and log directories. */
  const env = (k: StoreKey): NodeJS.ProcessEnv => ({
    ...process.env,
    HAVEN_STATE_DIR: join(s.work, `${k}-state`),
    HAVEN_RUN_DIR: dir(`${k}-run`),
    HAVEN_LOG_DIR: dir(`${k}-log`),
  });

  const protect = async (k: StoreKey, label: string): Promise<Omit<StoreRun, 'generations' | 'hash'>> => {
    const logFile = join(s.work, `${k}-log`, `${label}.log`);
    const r = await runMeasured(
      process.execPath,
      [
        HAVEN_BIN,
        '--log-file',
        logFile,
        'protect',
        domain,
        '--to',
        s.url[k],
        '--copies',
        String(copies),
        '--json',
      ],
      { env: env(k) },
    );
    if (r.code !== 0) throw new Error(`haven protect to ${k} (${label}) failed: ${r.stderr.trim()}`);
    const out = JSON.parse(r.stdout) as { mode: string; bytesSent: number };
    return {
      seconds: r.seconds,
      mode: out.mode,
      bytesSent: out.bytesSent,
      phases: phasesOf(logFile, r.startedAt, r.seconds),
    };
  };

  const gen = new RegExp(`^${domain}_.+_\\d+$`);
  /** The newest image's sha256 up to the disk's size, and the generation count. */
  const inspect = async (k: StoreKey) => {
    if (k === 'fs') {
      const names = readdirSync(s.dir.fs).filter((n) => n.endsWith('.raw') && gen.test(n.slice(0, -4)));
      const newest = join(s.dir.fs, `${domain}_${disk}_1.raw`);
      return { generations: names.length, hash: await pipeHash(`head -c ${diskSize} '${newest}'`) };
    }
    const names = (await s.ceph.rbd(['ls', s.pool])).stdout.split('\n').filter((n) => gen.test(n));
    const rbd = `rbd -c '${s.ceph.conf}' --id admin --keyring '${s.ceph.keyring}'`;
    const hash = await pipeHash(
      `${rbd} export --no-progress '${s.pool}/${domain}_${disk}_1' - | head -c ${diskSize}`,
    );
    return { generations: names.length, hash };
  };

  /** The source disk's sha256, read while the domain is suspended. */
  const rawCopy = join(s.work, 'source.raw');
  const sourceHash = async () => {
    await virsh(['suspend', domain]);
    try {
      await mustRun('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', bg.image, rawCopy]);
    } finally {
      await virsh(['resume', domain]);
    }
    const h = (await mustRun('sha256sum', [rawCopy])).stdout.split(' ')[0]!;
    rmSync(rawCopy, { force: true });
    return h;
  };

  const runRep = async (label: string, kind: Rep['kind'], order: StoreKey[], guestWrites: number) => {
    const before = await sourceHash();
    const runs = {} as Rep['runs'];
    const checks: Rep['checks'] = {};
    const expected = kind === 'full' ? 1 : Math.min(copies, Number(label.slice(4)) + 1);
    for (const k of order) {
      await settle();
      const run = await protect(k, label);
      const want = kind === 'full' ? 'full' : 'incremental';
      if (run.mode !== want) throw new Error(`${label} to ${k} ran ${run.mode}, not ${want}`);
      const seen = await inspect(k);
      runs[k] = { ...run, ...seen };
      checks[k] = seen.hash === before && seen.generations === expected;
    }
    checks.source = (await sourceHash()) === before;
    const rep: Rep = { label, kind, order, guestWrites, sourceHash: before, runs, checks };
    const times = order.map(
      (k) => `${k} ${secs(runs[k].seconds)} (${(runs[k].bytesSent / MiB).toFixed(1)} MiB)`,
    );
    say(`${label} [${kind}] ${times.join(', ')}; checks ${JSON.stringify(checks)}`);
    return rep;
  };

  const out: Rep[] = [];
  say('\nfull: one run to each store');
  out.push(await runRep('full', 'full', [...STORE_KEYS], 0));
  say(
    `\nincremental: ${reps} reps, ~${changePercent}% (${changeBlocks} blocks of 64 KiB) changed by the guest each time`,
  );
  for (let j = 0; j < reps; j++) {
    const guestWrites = await guestChange(bg.guest, changeBlocks);
    const order = STORE_KEYS.map((_, i) => STORE_KEYS[(i + j) % STORE_KEYS.length]!);
    out.push(await runRep(`inc-${j + 1}`, j + 1 < copies ? 'copy' : 'rotate', order, guestWrites));
  }
  // The figures measured so far are reported even when the space query fails.
  const space = await spaceOf(s).catch((e: unknown) => {
    say(`space not measured: ${String(e)}`);
    return undefined;
  });
  return { reps: out, space };
}

interface PoolStats {
  stored: number;
  bytes_used: number;
  objects: number;
}

/**
 * The pool's usage as the monitor reports it. It reaches the monitor through the manager every
 * second or so (test/fixtures/ceph: `mgr stats period = 1`), and BlueStore frees a removed
 * image's objects a little later: read until two readings 3 s apart agree (at most ~60 s).
 */
async function poolStats(s: Stores): Promise<PoolStats> {
  const read = async () => {
    const df = JSON.parse((await s.ceph.ceph(['df', 'detail', '--format', 'json'])).stdout) as {
      pools: Array<{ name: string; stats: PoolStats }>;
    };
    const p = df.pools.find((x) => x.name === s.pool);
    if (!p) throw new Error(`ceph df lists no pool ${s.pool}`);
    return p.stats;
  };
  let last = await read();
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 3000));
    const now = await read();
    if (now.stored === last.stored && now.bytes_used === last.bytes_used) return now;
    last = now;
  }
  return last;
}

async function spaceOf(s: Stores): Promise<Space> {
  const du = async (path: string) => Number((await mustRun('du', ['-sB1', path])).stdout.split(/\s/)[0]);
  const pool = await poolStats(s);
  const trash = JSON.parse(
    (await s.ceph.rbd(['trash', 'ls', '--format', 'json', s.pool])).stdout,
  ) as unknown[];
  return {
    fs: await du(s.dir.fs),
    rbdStored: pool.stored,
    rbdBytesUsed: pool.bytes_used,
    rbdObjects: pool.objects,
    rbdMetadata: await du(s.dir.rbd),
    rbdTrash: trash.length,
  };
}

interface KindStats {
  reps: number;
  /** Median seconds per store. */
  seconds: Record<StoreKey, number>;
  /** Median seconds of the commit phase (rotation, fsync) per store, from the run logs. */
  commitSeconds: Record<StoreKey, number>;
  bytesSent: Record<StoreKey, number>;
  /** Median seconds of each phase of the run logs (lib/phases.ts), per store. */
  phases: Record<StoreKey, Record<string, number>>;
  /** Median of the per-rep ratios (each rep's two runs carried the same change). */
  rbdOverFs: number;
  commitRbdOverFs: number;
}

const COMMIT_PHASE = 'commit (rotation, fsync)';
const commitOf = (r: StoreRun) => r.phases.find((p) => p.name === COMMIT_PHASE)?.seconds ?? Number.NaN;

/** The median of each phase over runs (a phase missing from a run's log counts as 0 s there). */
function phaseMedians(runs: Phase[][]): Record<string, number> {
  const names = [...new Set(runs.flatMap((ps) => ps.map((p) => p.name)))];
  return Object.fromEntries(
    names.map((n) => [n, median(runs.map((ps) => ps.find((p) => p.name === n)?.seconds ?? 0))]),
  );
}

function kindStats(reps: Rep[]): KindStats {
  const per = (f: (r: StoreRun) => number) =>
    Object.fromEntries(STORE_KEYS.map((k) => [k, median(reps.map((r) => f(r.runs[k])))])) as Record<
      StoreKey,
      number
    >;
  const ratio = (f: (r: StoreRun) => number) => median(reps.map((r) => f(r.runs.rbd) / f(r.runs.fs)));
  return {
    reps: reps.length,
    seconds: per((r) => r.seconds),
    commitSeconds: per(commitOf),
    bytesSent: per((r) => r.bytesSent),
    phases: Object.fromEntries(
      STORE_KEYS.map((k) => [k, phaseMedians(reps.map((r) => r.runs[k].phases))]),
    ) as KindStats['phases'],
    rbdOverFs: ratio((r) => r.seconds),
    commitRbdOverFs: ratio(commitOf),
  };
}

function statsOf(reps: Rep[]) {
  const inc = reps.filter((r) => r.kind !== 'full');
  return {
    full: kindStats(reps.filter((r) => r.kind === 'full')),
    incremental: kindStats(inc),
    rotating: kindStats(inc.filter((r) => r.kind === 'rotate')),
  };
}

const COMPACT = {
  style: { head: [], border: [], compact: true },
  chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
};
const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
const x = (v: number) => `${v.toFixed(2)}×`;

/** Space after the last rep against "three full images": copies × the disk, and × its data. */
function spaceTable(space: Space): string {
  const full = copies * diskSize;
  const data = copies * dataSize;
  const t = new Table({
    head: [
      'space after the last rep',
      'bytes',
      `/ ${copies} full images (${mib(full)})`,
      `/ ${copies} × data (${mib(data)})`,
      '/ fs',
    ],
    ...COMPACT,
  });
  const row = (name: string, b: number) => [name, mib(b), x(b / full), x(b / data), x(b / space.fs)];
  t.push(
    row('fs: du of the store directory', space.fs),
    row('rbd: pool bytes_used + metadata directory', space.rbdBytesUsed + space.rbdMetadata),
    row('rbd: pool stored (logical, whole objects)', space.rbdStored),
  );
  return (
    `${t.toString()}\nrbd: ${space.rbdObjects} objects in the pool, ${space.rbdTrash} image(s) in its trash, ` +
    `metadata directory ${mib(space.rbdMetadata)}; bytes_used is one replica (the test pool's size is 1)`
  );
}

function report(
  reps: Rep[],
  s: ReturnType<typeof statsOf>,
  space: Space | undefined,
  load: number[][],
): void {
  const name: Record<StoreKey, string> = { fs: 'fs (local directory)', rbd: 'rbd (test Ceph pool)' };
  const t = new Table({
    head: [
      'median',
      'full',
      `incremental (${s.incremental.reps})`,
      `incremental, rotating (${s.rotating.reps})`,
      'commit phase, rotating',
      'sent per incremental',
    ],
    ...COMPACT,
  });
  for (const k of STORE_KEYS) {
    t.push([
      name[k],
      secs(s.full.seconds[k]),
      secs(s.incremental.seconds[k]),
      secs(s.rotating.seconds[k]),
      secs(s.rotating.commitSeconds[k]),
      mib(s.incremental.bytesSent[k]),
    ]);
  }
  const r = new Table({
    head: [
      'ratio (median of per-rep ratios)',
      'full',
      'incremental',
      'incremental, rotating',
      'commit, rotating',
    ],
    ...COMPACT,
  });
  r.push([
    'rbd / fs',
    x(s.full.rbdOverFs),
    x(s.incremental.rbdOverFs),
    x(s.rotating.rbdOverFs),
    x(s.rotating.commitRbdOverFs),
  ]);
  const w = new Table({
    head: [
      'where the time goes, median s',
      ...STORE_KEYS.map((k) => `full ${k}`),
      ...STORE_KEYS.map((k) => `rotating ${k}`),
    ],
    ...COMPACT,
  });
  const phaseNames = [...new Set(STORE_KEYS.flatMap((k) => Object.keys(s.full.phases[k])))];
  for (const n of phaseNames) {
    const cell = (v: number | undefined) => (v === undefined ? '' : v.toFixed(1));
    w.push([
      n,
      ...STORE_KEYS.map((k) => cell(s.full.phases[k][n])),
      ...STORE_KEYS.map((k) => cell(s.rotating.phases[k][n])),
    ]);
  }
  say(`\n${t.toString()}\n${r.toString()}\n${w.toString()}`);
  say(space ? spaceTable(space) : 'space: not measured');
  say(`reps: ${reps.map((p) => `${p.label} ${p.order.join('>')}`).join(', ')}`);
  say(
    `load average (1, 5, 15 min) at start ${load[0]!.map((v) => v.toFixed(1)).join(' ')}, at end ${load
      .at(-1)!
      .map((v) => v.toFixed(1))
      .join(' ')}`,
  );
}

await main();
