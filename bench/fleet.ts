/**
 * Benchmark: a fleet (issue 19, goal 4). N shut-off servers (read through qemu-nbd) in one job:
 *
 * - the job's wall time with `parallel: 1`, `2` and `4`, alternated over repetitions (each run an
 *   incremental of every server), as ratios to one at a time;
 * - how fast the operator's views answer with N servers × 3 generations in one store and a second
 *   store of 1,000 generations (N servers × 50, the later 49 of each made by cloning the first's
 *   files and manifest entries: a synthetic store, read by the real code): `haven status`,
 *   `haven images` of both stores, and the daemon's `/api/status`, `/api/generations` (live from the
 *   stores), `/api/summary` and `/api/servers`, each the median of several calls, the CLI against
 *   a bare `node -e ''` (the floor of any command in Node) and `virsh list --all`;
 * - the daemon's peak memory (VmHWM) after all of it.
 *
 *   node --import tsx bench/fleet.ts [--servers 20] [--reps 2] [--calls 9] [--json] [--profile DIR]
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../src/core/exec.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import { havenEnv, runHaven } from '../test/helpers/haven.ts';
import { guestFleet } from './lib/guest-fleet.ts';
import { median, timed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '20' },
    reps: { type: 'string', default: '2' },
    calls: { type: 'string', default: '9' },
    json: { type: 'boolean', default: false },
    // Writes a V8 CPU profile of one more call of each command view into this directory.
    profile: { type: 'string' },
  },
});
const count = Number(args.servers);
const reps = Number(args.reps);
const calls = Number(args.calls);
const say = (line: string) => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const PREFIX = 'haven-t-bfleet';
const fleet = await guestFleet('fleet');
const { work } = fleet;
// Commands run from the compiled tree, as an installed Haven does (bin/haven.mjs runs dist/ only
// while it is newer than the sources).
await exec(join(import.meta.dirname, '..', 'scripts', 'build'), []);
let daemonPid: number | undefined;
fleet.onCleanup(() => {
  if (daemonPid) process.kill(daemonPid, 'SIGTERM');
});

const storeA = join(work, 'store-a');
const storeB = join(work, 'store-b');
const port = 18470 + Math.floor(Math.random() * 500);

function config(names: string[], parallel: number): string {
  const list = names.join(', ');
  return `targets:
  dr:
    url: ${storeA}
    copies: 3
  big:
    url: ${storeB}
    copies: 50
jobs:
  fleet:
    servers: [${list}]
    target: dr
    parallel: ${parallel}
  big:
    servers: [${list}]
    target: big
    parallel: 4
daemon:
  listen: 127.0.0.1:${port}
`;
}

/**
 * Makes generations 2…50 of every server in store B from its generation 1: the image files are
 * sparse copies, the digests a copy, the manifest entries the first's with new ids and sequence
 * numbers (each older by a minute). Readers see a store as a long-running job would leave it.
 */
async function synthesize(store: string): Promise<number> {
  let made = 0;
  const servers = join(store, '.haven', 'servers');
  for (const server of readdirSync(servers)) {
    const dir = join(servers, server);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    const first = m.generations[0];
    const generations = [first];
    for (let seq = 2; seq <= 50; seq++) {
      const at = (iso: string) => new Date(Date.parse(iso) - (seq - 1) * 60_000).toISOString();
      const disks = first.disks.map((d: { image: string }) => ({
        ...d,
        image: d.image.replace(/_1$/, `_${seq}`),
      }));
      const g = {
        ...first,
        id: randomUUID(),
        seq,
        takenAt: at(first.takenAt),
        committedAt: at(first.committedAt),
        disks,
      };
      for (const [k, d] of disks.entries()) {
        const from = join(store, `${first.disks[k].image}.raw`);
        await exec('cp', ['--sparse=always', from, join(store, `${d.image}.raw`)]);
      }
      mkdirSync(join(dir, 'digests', g.id), { recursive: true });
      for (const f of readdirSync(join(dir, 'digests', first.id))) {
        copyFileSync(join(dir, 'digests', first.id, f), join(dir, 'digests', g.id, f));
      }
      generations.push(g);
      made++;
    }
    const text = JSON.stringify({ ...m, copies: 50, generations });
    writeFileSync(join(dir, 'manifest.json'), text);
    writeFileSync(join(dir, 'manifest.copy.json'), text);
  }
  return made;
}

/** The command views timed, by the name each has in the results. */
function commandViews(a: string, b: string): Record<string, string[]> {
  return {
    'haven status': ['status', '--json'],
    'haven images (N×3)': ['images', '--store', a, '--json'],
    'haven images (1,000)': ['images', '--store', b, '--json'],
  };
}

async function callMs(fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) times.push((await timed(fn)).seconds * 1000);
  return median(times);
}

try {
  say(`making ${count} shut-off servers with 16 MiB disks`);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const g = await fleet.guest({
      prefix: `${PREFIX}-${String(i).padStart(2, '0')}`,
      disks: [{ sizeMiB: 16 }],
      start: false,
    });
    names.push(g.name);
  }
  const configPath = join(work, 'haven.yaml');
  const h = await havenEnv(work, { HAVEN_CONFIG: configPath });
  const jobRun = async (parallel: number) => {
    writeFileSync(configPath, config(names, parallel));
    const r = await timed(() => runHaven(h, ['job', 'run', 'fleet', '-q'], { timeoutMs: 1_800_000 }));
    if (r.value.code !== 0) throw new Error(`job run (parallel ${parallel}): ${r.value.stderr}`);
    return r.seconds;
  };
  say('first copies (full), one at a time');
  await jobRun(4);
  const wall: Record<number, number[]> = { 1: [], 2: [], 4: [] };
  for (let rep = 1; rep <= reps; rep++) {
    for (const p of rep % 2 ? [1, 2, 4] : [4, 2, 1]) {
      const s = await jobRun(p);
      wall[p]!.push(s);
      say(`rep ${rep}: parallel ${p}: ${s.toFixed(1)} s`);
    }
  }
  writeFileSync(configPath, config(names, 4));
  const big = await runHaven(h, ['job', 'run', 'big', '-q'], { timeoutMs: 1_800_000 });
  if (big.code !== 0) throw new Error(`job run big: ${big.stderr}`);
  const made = await synthesize(storeB);
  say(`store B: ${made + count} generations (${made} synthesized)`);

  const cli = async (argv: string[]) => {
    const r = await runHaven(h, argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };
  const views: Record<string, number> = {
    'node -e "" (a process)': await callMs(() => exec(process.execPath, ['-e', ''])),
    'virsh list --all': await callMs(() => exec('virsh', ['-c', 'qemu:///system', 'list', '--all'])),
  };
  for (const [name, argv] of Object.entries(commandViews(storeA, storeB))) {
    views[name] = await callMs(() => cli(argv));
  }
  if (args.profile) {
    for (const [name, argv] of Object.entries(commandViews(storeA, storeB))) {
      const dir = join(args.profile, name.replace(/[^a-z0-9]+/gi, '-'));
      mkdirSync(dir, { recursive: true });
      await exec(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, HAVEN_BIN, ...argv], {
        env: h.env,
      });
    }
    say(`profiles in ${args.profile}`);
  }

  const daemon = spawn(process.execPath, [HAVEN_BIN, 'serve'], { env: h.env, stdio: 'ignore' });
  daemonPid = daemon.pid;
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (
      await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const token = readFileSync(join(h.stateDir, 'api-token'), 'utf8').trim();
  const get = async (path: string) => {
    const r = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    await r.arrayBuffer();
  };
  for (const path of ['/api/status', '/api/generations', '/api/summary', '/api/servers']) {
    await get(path);
    views[`GET ${path}`] = await callMs(() => get(path));
  }
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))?.[1];
  const daemonPeakMiB = Number(hwm) / 1024;
  daemon.kill('SIGTERM');
  daemonPid = undefined;

  const result = {
    servers: count,
    jobWallSeconds: Object.fromEntries(Object.entries(wall).map(([p, v]) => [`parallel ${p}`, median(v)])),
    speedup: {
      'parallel 2': median(wall[1]!) / median(wall[2]!),
      'parallel 4': median(wall[1]!) / median(wall[4]!),
    },
    viewsMs: views,
    daemonPeakMiB,
    goals: 'views under 200 ms; daemon under 300 MiB',
  };
  if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    say(
      `job wall time: ${JSON.stringify(result.jobWallSeconds)}; speed-up ${JSON.stringify(result.speedup)}`,
    );
    for (const [k, v] of Object.entries(views)) say(`${k.padEnd(28)} ${v.toFixed(0)} ms`);
    say(`daemon peak memory: ${daemonPeakMiB.toFixed(0)} MiB`);
  }
} finally {
  await fleet.cleanup();
}
