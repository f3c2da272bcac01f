/**
 * Benchmark: replication into an LVM store against the filesystem store, at a real second
 * machine (issue 17, "Speed").
 *
 * The DR site is the Debian test guest (test/fixtures/debian, TCG): `vg_thick` on one extra disk,
 * a thin pool `vg_thin/pool0` on another, the filesystem store on its root ext4 (/srv/fs). The
 * protected server is a live test guest on this host (lib/bench-guest.ts: random data written
 * into its qcow2 before boot, ~change% rewritten by the guest itself in random 64 KiB blocks
 * before every incremental rep). Three stores, each with a catalog of its own on this host:
 *
 *   fs     ssh://root@<dr>/srv/fs
 *   thin   ssh://root@<dr>/srv/thin?lvm=vg_thin/pool0    rotation by thin snapshot
 *   thick  ssh://root@<dr>/srv/thick?lvm=vg_thick        rotation by replaying staged deltas
 *
 * One full run to each, then `--reps` incremental reps: in each, the guest changes once, then
 * `haven protect --copies N` runs to all three stores, in an order rotating per rep, so every
 * store gets the same change. From rep N on (N generations exist) every run rotates: thin
 * against thick is then the "thin-snapshot rotation against replaying rotation" figure (fs on
 * ext4 replays too). Before each measured run both machines `sync`, untimed.
 *
 * Every copy is checked: after the change, the source disk is hashed while the domain is
 * suspended (`qemu-img convert -U` to a raw file, sha256), and again after the rep's runs (the
 * guest writes nothing meanwhile, so both must agree); after each run, the store's newest image
 * (`_1.raw`, or the LV behind `volumes/<image>`) is hashed inside the DR guest up to the disk's
 * size and must equal the source's hash, and the store must hold exactly min(runs, N)
 * generations. A mismatch fails the bench (exit 1).
 *
 *   node --import tsx bench/replicate-lvm.ts [--reps 4] [--copies 3] [--disk-size 512MiB]
 *        [--data-size 256MiB] [--change 2] [--keep] [--trace-lvm] [--json]
 *
 * Progress and the report go to stderr; `--json` adds one JSON object on stdout. `--keep` leaves
 * the run directory on this host (each store's catalog and run logs); the guests always go. `--trace-lvm` puts logging wrappers of
 * `lvm`, `blkdiscard` and `xfs_io` first on the DR guest's PATH (/usr/local/sbin), and reports how
 * many of them each run started and how long they took: what the LVM stores spend in LVM's tools
 * (the wrappers cost a little time themselves; measured figures come from runs without them).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import type { DebianGuest } from '../test/fixtures/debian/index.ts';
import { type BenchGuest, createBenchGuest } from './lib/bench-guest.ts';
import { BENCH_ROOT, benchDir, ensureRandomImage } from './lib/fixtures.ts';
import { onInterrupt } from './lib/proc.ts';
import { median } from './lib/stats.ts';
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

const { args, config, reps, copies, diskSize, dataSize, changePercent, changeBlocks } = repOptions({
  traceLvm: true,
});

const PREFIX = 'haven-b-lvm';
const MiB = 1024 * 1024;
const say = (line: string) => process.stderr.write(`${line}\n`);
const secs = (s: number) => `${s.toFixed(1)} s`;

const STORE_KEYS = ['fs', 'thin', 'thick'] as const;
type StoreKey = (typeof STORE_KEYS)[number];

/** Where each store lives at the DR guest: its directory and the `lvm` query of its URL. */
const STORES: Record<StoreKey, { dir: string; lvm?: string; newest: (server: string) => string }> = {
  fs: { dir: '/srv/fs', newest: (s) => `/srv/fs/${s}_*_1.raw` },
  thin: { dir: '/srv/thin', lvm: 'vg_thin/pool0', newest: (s) => `/srv/thin/volumes/${s}_*_1` },
  thick: { dir: '/srv/thick', lvm: 'vg_thick', newest: (s) => `/srv/thick/volumes/${s}_*_1` },
};

type Rep = StoreRep<StoreKey>;

/** Where the --trace-lvm wrappers append one line per command: start, end, program, subcommand. */
const TRACE = `/var/tmp/${PREFIX}-trace`;

/** Logging wrappers, first on root's PATH at the DR guest, of the programs the LVM store runs. */
async function installToolTrace(dr: DebianGuest): Promise<void> {
  for (const tool of ['lvm', 'blkdiscard', 'xfs_io']) {
    const real = (await dr.ssh(`PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v ${tool}`)).stdout.trim();
    await dr.ssh(`cat > /usr/local/sbin/${tool} && chmod 755 /usr/local/sbin/${tool}`, {
      input: [
        '#!/bin/sh',
        's=$(date +%s.%N)',
        `${real} "$@"`,
        'rc=$?',
        `echo "$s $(date +%s.%N) ${tool} $1" >> ${TRACE}`,
        'exit $rc',
        '',
      ].join('\n'),
    });
  }
}

/** The traced commands since the trace was emptied: calls and wall seconds per program/subcommand. */
async function toolTrace(dr: DebianGuest): Promise<Record<string, { calls: number; seconds: number }>> {
  const out: Record<string, { calls: number; seconds: number }> = {};
  for (const line of (await dr.ssh(`cat ${TRACE}`)).stdout.split('\n')) {
    const [start, end, tool, sub] = line.trim().split(/\s+/);
    if (!tool) continue;
    const key = tool === 'lvm' ? `lvm ${sub}` : tool;
    out[key] ??= { calls: 0, seconds: 0 };
    const e = out[key];
    e.calls++;
    e.seconds += Number(end) - Number(start);
  }
  return out;
}

async function main(): Promise<void> {
  process.env.HAVEN_TEST_ROOT ??= join(BENCH_ROOT, 'guests');
  mkdirSync(process.env.HAVEN_TEST_ROOT, { recursive: true });
  // Loaded only now: the fixture reads HAVEN_TEST_ROOT when it is first imported.
  const { createDebianGuest, installHaven } = await import('../test/fixtures/debian/index.ts');
  const work = mkdtempSync(join(benchDir('replicate-lvm'), `${PREFIX}-`));
  chmodSync(work, 0o1777);
  const hooks: Array<() => unknown> = [];
  let guestCleanup: (() => Promise<void>) | undefined;
  const cleanup = async () => {
    await guestCleanup?.();
    guestCleanup = undefined;
    for (const fn of hooks.reverse()) await Promise.resolve(fn()).catch((e) => say(`cleanup: ${String(e)}`));
    hooks.length = 0;
    if (args.keep) say(`kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  };
  const offInterrupt = onInterrupt(cleanup, say);
  const load: number[][] = [loadavg()];
  try {
    const random = ensureRandomImage(`random-${dataSize}.raw`, dataSize, say);
    // Room for N generations and one more LV in each group (a copy while slots fill), and slack.
    const vgMiB = ((copies + 1) * diskSize) / MiB + 256;
    say(
      `creating the DR guest (Debian, TCG; ${vgMiB} MiB disks for vg_thick and vg_thin) and the source guest`,
    );
    const [dr, bg] = await Promise.all([
      (async () => {
        const g = await createDebianGuest(
          { after: (fn) => hooks.push(fn) },
          {
            prefix: `${PREFIX}-dr`,
            boot: 'kernel',
            memoryMiB: 1024,
            extraDisks: [{ sizeMiB: vgMiB }, { sizeMiB: vgMiB }],
          },
        );
        await g.ssh(
          'set -e; pvcreate -q /dev/vdb /dev/vdc; vgcreate -q vg_thick /dev/vdb; vgcreate -q vg_thin /dev/vdc;' +
            ' lvcreate -q --type thin-pool -l 90%FREE -n pool0 vg_thin; mkdir -p /srv/fs',
        );
        await installHaven(g);
        if (args.traceLvm) await installToolTrace(g);
        return g;
      })(),
      createBenchGuest({
        prefix: `${PREFIX}-src`,
        diskSize,
        randomSource: random,
        onCleanup: (c) => {
          guestCleanup = c;
        },
      }),
    ]);
    say(`DR guest ${dr.name} at ${dr.address}; source guest ${bg.guest.name} (${args['disk-size']})`);
    const output = { json: args.json === true, config, load, say };
    publishReps('replicate-lvm', output, await measure(dr, bg, work), statsOf, report);
  } finally {
    await cleanup();
    offInterrupt();
  }
}

interface Space {
  /** Bytes the store's images take at the DR guest (fs: du of the directory, with .haven). */
  images: Record<StoreKey, number>;
  /** du of the LVM stores' metadata directories (staged deltas of the thick store included). */
  metadata: Record<'thin' | 'thick', number>;
  pool: { size: number; dataPercent: number };
}

async function measure(
  dr: DebianGuest,
  bg: BenchGuest,
  work: string,
): Promise<{ reps: Rep[]; space: Space | undefined }> {
  const domain = bg.guest.name;
  const url = (k: StoreKey) => `${dr.url(STORES[k].dir)}${STORES[k].lvm ? `?lvm=${STORES[k].lvm}` : ''}`;
  /** The newest image's sha256 up to the disk's size, and the generation count, at the DR guest. */
  const inspect = async (k: StoreKey) => {
    const s = STORES[k];
    const list = k === 'fs' ? s.dir : `${s.dir}/volumes`;
    const r = await dr.ssh(
      `set -e; ls -1 ${list}; set -- ${s.newest(domain)}; test $# = 1 -a -e "$1"; echo "hash $(head -c ${diskSize} "$1" | sha256sum)"`,
    );
    const gen = new RegExp(`^${domain}_.+_\\d+(\\.raw)?$`);
    const lines = r.stdout.split('\n');
    return {
      generations: lines.filter((l) => gen.test(l)).length,
      hash: /^hash ([0-9a-f]{64})/m.exec(r.stdout)?.[1] ?? 'none',
    };
  };
  const out = await storeReps({
    keys: STORE_KEYS,
    work,
    bg,
    copies,
    reps,
    changeBlocks,
    changePercent,
    url,
    protectArgs: dr.sshOptions.map((o) => `--ssh-option=${o}`),
    inspect,
    beforeRun: async () => {
      await dr.ssh('sync');
      if (args.traceLvm) await dr.ssh(`: > ${TRACE}`);
    },
    afterRun: async () => (args.traceLvm ? { tools: await toolTrace(dr) } : {}),
    say,
  });
  // The figures measured so far are reported even when the space query fails.
  const space = await spaceAt(dr).catch((e: unknown) => {
    say(`space at the DR guest not measured: ${String(e)}`);
    return undefined;
  });
  return { reps: out, space };
}

async function spaceAt(dr: DebianGuest): Promise<Space> {
  const du = async (path: string) => Number((await dr.ssh(`du -sB1 ${path}`)).stdout.split(/\s/)[0]);
  const num = (s: string) => Number(s.trim().replace(',', '.'));
  const [poolSize, poolPercent] = (
    await dr.ssh('lvs --noheadings --units b --nosuffix -o lv_size,data_percent vg_thin/pool0')
  ).stdout
    .trim()
    .split(/\s+/)
    .map(num);
  // The store's LVs carry the tag haven_store=<id>; lvm's -S cannot match inside a tag list.
  const thick = (await dr.ssh('lvs --noheadings --units b --nosuffix -o lv_size,lv_tags vg_thick')).stdout
    .split('\n')
    .filter((l) => l.includes('haven_store='))
    .reduce((sum, l) => sum + num(l.trim().split(/\s+/)[0]!), 0);
  return {
    images: { fs: await du('/srv/fs'), thin: Math.round((poolSize! * poolPercent!) / 100), thick },
    metadata: { thin: await du('/srv/thin'), thick: await du('/srv/thick') },
    pool: { size: poolSize!, dataPercent: poolPercent! },
  };
}

const RATIOS = {
  thinOverFs: ['thin', 'fs', 'run'],
  thickOverFs: ['thick', 'fs', 'run'],
  thinOverThick: ['thin', 'thick', 'run'],
  commitThinOverThick: ['thin', 'thick', 'commit'],
} satisfies Record<string, RatioSpec<StoreKey>>;
const statsOf = (reps: Rep[]) => repStats(STORE_KEYS, reps, RATIOS);

/** With --trace-lvm: the LVM tools of the rotating runs, median calls and seconds per run. */
function toolTable(rotating: Rep[], style: Partial<Table.TableConstructorOptions>): string | undefined {
  if (!rotating.some((r) => r.runs.thin.tools)) return undefined;
  const t = new Table({
    head: ['LVM tools per rotating run, median', 'thin: calls', 's', 'thick: calls', 's'],
    ...style,
  });
  const keys = [
    ...new Set(
      rotating.flatMap((r) => [
        ...Object.keys(r.runs.thin.tools ?? {}),
        ...Object.keys(r.runs.thick.tools ?? {}),
      ]),
    ),
  ].sort();
  const m = (k: 'thin' | 'thick', key: string, f: 'calls' | 'seconds') =>
    median(rotating.map((r) => r.runs[k].tools?.[key]?.[f] ?? 0));
  const total = (k: 'thin' | 'thick', f: 'calls' | 'seconds') =>
    median(rotating.map((r) => Object.values(r.runs[k].tools ?? {}).reduce((n, v) => n + v[f], 0)));
  for (const key of [...keys, 'all']) {
    const cells = (k: 'thin' | 'thick') =>
      key === 'all'
        ? [String(total(k, 'calls')), total(k, 'seconds').toFixed(1)]
        : [String(m(k, key, 'calls')), m(k, key, 'seconds').toFixed(1)];
    t.push([key, ...cells('thin'), ...cells('thick')]);
  }
  return t.toString();
}

function report(
  reps: Rep[],
  s: ReturnType<typeof statsOf>,
  space: Space | undefined,
  load: number[][],
): void {
  const compact = COMPACT;
  const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  const name: Record<StoreKey, string> = {
    fs: 'fs (ext4, /srv/fs)',
    thin: 'LVM thin (vg_thin/pool0)',
    thick: 'LVM thick (vg_thick)',
  };
  const t = new Table({
    head: [
      'median',
      'full',
      `incremental (${s.incremental.reps})`,
      `incremental, rotating (${s.rotating.reps})`,
      'commit phase, rotating',
      'sent per incremental',
      'space at DR after the last rep',
    ],
    ...compact,
  });
  for (const k of STORE_KEYS) {
    const extra = k === 'fs' || !space ? '' : ` (+ ${mib(space.metadata[k])} metadata dir)`;
    t.push([
      name[k],
      secs(s.full.seconds[k]),
      secs(s.incremental.seconds[k]),
      secs(s.rotating.seconds[k]),
      secs(s.rotating.commitSeconds[k]),
      mib(s.incremental.bytesSent[k]),
      space ? `${mib(space.images[k])}${extra}` : 'not measured',
    ]);
  }
  const x = (v: number) => `${v.toFixed(2)}×`;
  const r = new Table({
    head: [
      'ratio (median of per-rep ratios)',
      'full',
      'incremental',
      'incremental, rotating',
      'commit phase, rotating',
    ],
    ...compact,
  });
  r.push(
    [
      'LVM thin / fs',
      x(s.full.ratios.thinOverFs),
      x(s.incremental.ratios.thinOverFs),
      x(s.rotating.ratios.thinOverFs),
      '',
    ],
    [
      'LVM thick / fs',
      x(s.full.ratios.thickOverFs),
      x(s.incremental.ratios.thickOverFs),
      x(s.rotating.ratios.thickOverFs),
      '',
    ],
    [
      'thin-snapshot / replaying rotation (thin / thick)',
      x(s.full.ratios.thinOverThick),
      x(s.incremental.ratios.thinOverThick),
      x(s.rotating.ratios.thinOverThick),
      x(s.rotating.ratios.commitThinOverThick),
    ],
  );
  say(`\n${t.toString()}\n${r.toString()}\n${phaseTable(STORE_KEYS, s)}`);
  const traced = toolTable(
    reps.filter((p) => p.kind === 'rotate'),
    compact,
  );
  if (traced) say(traced);
  if (space) {
    say(
      `thin pool: ${mib(space.pool.size)}, ${space.pool.dataPercent}% used; thick: sum of the store's LV sizes; fs: du of the store directory`,
    );
  }
  say(`reps: ${reps.map((p) => `${p.label} ${p.order.join('>')}`).join(', ')}`);
  say(
    `load average (1, 5, 15 min) at start ${load[0]!.map((v) => v.toFixed(1)).join(' ')}, at end ${load
      .at(-1)!
      .map((v) => v.toFixed(1))
      .join(' ')}`,
  );
}

await main();
