/**
 * Benchmark: the memory continuous protection costs per protected server (issue 15, "Speed":
 * peak memory per protected server, goal under 100 MiB), where a fleet runs it: `haven serve`
 * with one `mode: continuous` job. One daemon process protects every server of the job (a
 * protector each, in the same process); each lane's receiver is a child process of its own.
 *
 * For each fleet size in `--servers` (default 1 and 3): that many test guests, each writing
 * `--rate` bytes a second with seqw to two disks, one job protecting them all to a local store
 * with `interval: 1s`. Once every server has a committed point, the daemon (and the receivers)
 * run for `--duration`; the peak RSS of the daemon process and of its receivers are recorded.
 * The cost per protected server is the daemon's growth from one server to N, over N − 1, besides
 * the daemon's peak divided by N; the receivers are reported per lane.
 *
 *   node --import tsx bench/continuous-fleet.ts [--servers 1,3] [--rate 1MiB] [--duration 60s]
 *        [--disk-size 64MiB] [--json]
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../src/core/exec.ts';
import { parseDuration, parseSize } from '../src/core/units.ts';
import { openFsStore } from '../src/store/index.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import { guestFleet } from './lib/guest-fleet.ts';
import { killRunning, runMeasured } from './lib/proc.ts';

const args = parseArgs({
  options: {
    servers: { type: 'string', default: '1,3' },
    rate: { type: 'string', default: '1MiB' },
    duration: { type: 'string', default: '60s' },
    'disk-size': { type: 'string', default: '64MiB' },
    json: { type: 'boolean', default: false },
  },
}).values;

const log = (s: string) => process.stderr.write(`${s}\n`);
const MiB = 2 ** 20;

interface FleetRun {
  servers: number;
  daemonPeakMiB: number;
  receiverPeakMiB: number;
  receivers: number;
}

async function newestPoint(store: string, server: string): Promise<boolean> {
  const s = await openFsStore(store).catch(() => null);
  if (!s) return false;
  try {
    return Boolean((await s.journalInfo(server))?.newest);
  } finally {
    await s.close();
  }
}

async function fleetRun(n: number): Promise<FleetRun> {
  const fleet = await guestFleet(`continuous-fleet-${n}`);
  const dir = fleet.work;
  chmodSync(dir, 0o755);
  fleet.onCleanup(() => killRunning('SIGTERM'));
  try {
    const mib = parseSize(args['disk-size']) / MiB;
    const guests = [];
    for (let i = 0; i < n; i++)
      guests.push(
        await fleet.guest({ prefix: `haven-b-cf${i}`, disks: [{ sizeMiB: mib }, { sizeMiB: mib }] }),
      );
    const store = join(dir, 'store');
    const config = join(dir, 'haven.yaml');
    writeFileSync(
      config,
      `targets:\n  dr:\n    url: ${store}\njobs:\n  cont:\n    servers: [${guests.map((g) => g.name).join(', ')}]\n` +
        '    targets: [dr]\n    mode: continuous\n    interval: 1s\n    journal: 10m\n' +
        `daemon:\n  listen: 127.0.0.1:${20000 + ((process.pid + n) % 20000)}\n`,
    );
    const env = {
      ...process.env,
      HAVEN_STATE_DIR: join(dir, 'state'),
      HAVEN_RUN_DIR: join(dir, 'run'),
      HAVEN_LOG_DIR: join(dir, 'log'),
      HAVEN_CONFIG: config,
    };
    for (const g of guests)
      await g.seqStart({ rate: parseSize(args.rate), block: 65536, nonce: 7, disks: ['vda', 'vdb'] });
    const serve = runMeasured(process.execPath, [HAVEN_BIN, 'serve'], { env, sampleMs: 200 });
    const deadline = Date.now() + 300_000;
    for (const g of guests) {
      while (!(await newestPoint(store, g.name))) {
        if (Date.now() > deadline)
          throw new Error(`no point for ${g.name} within 5 min (logs in ${dir}/log)`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    log(`${n} server(s): every one has a point; measuring for ${args.duration}`);
    await new Promise((r) => setTimeout(r, parseDuration(args.duration)));
    await killRunning('SIGTERM');
    const run = await serve;
    const daemon = run.procs[0];
    const receivers = run.procs.filter((p) => p.cmd.includes(' receive '));
    const result = {
      servers: n,
      daemonPeakMiB: (daemon?.peakRss ?? 0) / MiB,
      receiverPeakMiB: Math.max(0, ...receivers.map((p) => p.peakRss)) / MiB,
      receivers: receivers.length,
    };
    log(
      `${n} server(s): daemon peak ${result.daemonPeakMiB.toFixed(0)} MiB, ` +
        `receivers ${result.receivers}, largest ${result.receiverPeakMiB.toFixed(0)} MiB`,
    );
    return result;
  } finally {
    await fleet.cleanup();
  }
}

async function main(): Promise<void> {
  // The compiled tree, as an installed Haven runs (bin/haven.mjs runs dist/ while it is newer).
  await exec(join(import.meta.dirname, '..', 'scripts', 'build'), []);
  const sizes = args.servers.split(',').map(Number);
  const runs: FleetRun[] = [];
  for (const n of sizes) runs.push(await fleetRun(n));
  const one = runs.find((r) => r.servers === 1);
  for (const r of runs.filter((x) => x.servers > 1)) {
    const perServer = one ? (r.daemonPeakMiB - one.daemonPeakMiB) / (r.servers - 1) : Number.NaN;
    log(
      `${r.servers} servers: daemon ${r.daemonPeakMiB.toFixed(0)} MiB = ${(r.daemonPeakMiB / r.servers).toFixed(0)} MiB per server; ` +
        `each server beyond the first adds ${perServer.toFixed(1)} MiB (goal: under 100 MiB per protected server)`,
    );
  }
  if (args.json) process.stdout.write(`${JSON.stringify({ runs })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
