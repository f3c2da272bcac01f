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
import Table from 'cli-table3';
import type { CephCluster } from '../test/fixtures/ceph/index.ts';
import { type BenchGuest, createBenchGuest } from './lib/bench-guest.ts';
import { BENCH_ROOT, benchDir, ensureRandomImage } from './lib/fixtures.ts';
import { mustRun, onInterrupt } from './lib/proc.ts';
import {
  COMPACT,
  phaseTable,
  publishReps,
  type RatioSpec,
  repOptions,
  repStats,
  type Rep as StoreRep,
  storeReps,
} from './lib/store-reps.ts';

const { args, config, reps, copies, diskSize, dataSize, changePercent, changeBlocks } = repOptions();

const PREFIX = 'haven-b-hbr';
const MiB = 1024 * 1024;
const say = (line: string) => process.stderr.write(`${line}\n`);
const secs = (s: number) => `${s.toFixed(1)} s`;

const STORE_KEYS = ['fs', 'rbd'] as const;
type StoreKey = (typeof STORE_KEYS)[number];

type Rep = StoreRep<StoreKey>;

/** Where the two stores are, and how to reach the pool's images. */
interface Stores {
  work: string;
  ceph: CephCluster;
  pool: string;
  dir: Record<StoreKey, string>;
  url: Record<StoreKey, string>;
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
    const output = { json: args.json === true, config, load, say };
    publishReps('replicate-rbd', output, await measure(stores, bg), statsOf, report);
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
  const out = await storeReps({
    keys: STORE_KEYS,
    work: s.work,
    bg,
    copies,
    reps,
    changeBlocks,
    changePercent,
    url: (k) => s.url[k],
    inspect,
    say,
  });
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

const RATIOS = {
  rbdOverFs: ['rbd', 'fs', 'run'],
  commitRbdOverFs: ['rbd', 'fs', 'commit'],
} satisfies Record<string, RatioSpec<StoreKey>>;
const statsOf = (reps: Rep[]) => repStats(STORE_KEYS, reps, RATIOS);
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
    x(s.full.ratios.rbdOverFs),
    x(s.incremental.ratios.rbdOverFs),
    x(s.rotating.ratios.rbdOverFs),
    x(s.rotating.ratios.commitRbdOverFs),
  ]);
  say(`\n${t.toString()}\n${r.toString()}\n${phaseTable(STORE_KEYS, s)}`);
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
