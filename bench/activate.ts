/**
 * Benchmark: activating a DR site (issue 19, goal 5). `haven activate --all` of N servers from one
 * store, timed from the command's start until every domain runs (the guests' boot is not
 * counted), against two floors in the same run: `virsh create` of the very definitions Haven
 * started, one after the other, with their overlays already made (what any tool must at least
 * do), and the same `virsh create`s side by side within each boot priority (what a tool that
 * starts a priority's servers at once must at least do). Also checks that Haven reports the
 * servers in boot order (`haven priority`).
 *
 * The servers are spread over `--tiers` boot priorities (10, 20, …: the first servers by name
 * boot first), as a site groups databases before the applications that use them; Haven starts
 * a tier's servers `--parallel` at a time (`haven activate --parallel`).
 *
 * The servers are shut-off test guests with small disks, protected once each (offline copies
 * through qemu-nbd); then the primaries are removed, as in a disaster. Each repetition activates
 * everything, records the definitions libvirt runs, stops the domains, starts them again from
 * those definitions with `virsh create` (the floor), stops them and gives the activations up.
 *
 *   node --import tsx bench/activate.ts [--servers 10] [--reps 3] [--tiers 2] [--parallel 4] [--json]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../src/core/exec.ts';
import type { ActivationReport } from '../src/recovery/activate.ts';
import { orderForBoot } from '../src/recovery/boot-order.ts';
import { havenEnv, havenJson, runHaven } from '../test/helpers/haven.ts';
import { guestDefinitions } from '../test/integration/recovery-helpers.ts';
import { guestFleet } from './lib/guest-fleet.ts';
import { median, timed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '10' },
    reps: { type: 'string', default: '3' },
    tiers: { type: 'string', default: '2' },
    parallel: { type: 'string', default: '4' },
    json: { type: 'boolean', default: false },
  },
});
const count = Number(args.servers);
const reps = Number(args.reps);
const tiers = Math.max(1, Math.min(count, Number(args.tiers)));
/** Server i's boot priority: tiers of (nearly) equal size, the first names first. */
const priorityOf = (i: number) => 10 * (1 + Math.floor((i * tiers) / count));
const say = (line: string) => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const PREFIX = 'haven-t-bact';
const fleet = await guestFleet('activate');
const { work } = fleet;
const names = Array.from({ length: count }, (_, i) => `${PREFIX}-${String(i).padStart(2, '0')}`);

async function running(): Promise<string[]> {
  const out = await exec('virsh', ['-c', 'qemu:///system', 'list', '--name', '--state-running']);
  return out.stdout.split('\n').filter((n) => n.startsWith(PREFIX));
}

async function destroyAll(): Promise<void> {
  for (const n of await running())
    await exec('virsh', ['-c', 'qemu:///system', 'destroy', n]).catch(() => {});
}
// Registered first, so it runs last: the domains of the last activation, if one was interrupted.
fleet.onCleanup(destroyAll);

try {
  say(`making ${count} shut-off servers with 16 MiB disks`);
  const guests = [];
  for (const name of names) {
    guests.push(await fleet.guest({ prefix: name, disks: [{ sizeMiB: 16 }], start: false }));
  }
  const config = join(work, 'haven.yaml');
  writeFileSync(config, guestDefinitions(guests[0]!));
  const h = await havenEnv(work, { HAVEN_CONFIG: config });
  const store = join(work, 'store');
  say(`protecting each once, giving each a boot priority (${tiers} tiers)`);
  for (const [i, g] of guests.entries()) {
    await havenJson(h, ['protect', g.name, '--to', store, '--copies', '1']);
    const p = await runHaven(h, ['priority', g.name, String(priorityOf(i)), '--store', store]);
    if (p.code !== 0) throw new Error(`priority: ${p.stderr}`);
  }
  // The disaster: the primaries and their disks are gone.
  for (const g of guests) await g.cleanup();

  // The guests' names carry a random suffix after their prefix (names[i]).
  const servers = guests.map((g, i) => ({ server: g.name, priority: priorityOf(i) }));
  const expected = orderForBoot(servers);
  const tierOf = new Map(servers.map((s) => [s.server, s.priority]));

  /** One `haven activate --all`, checked: every server running, reported in boot order. */
  async function activate(parallel: string): Promise<{ seconds: number; order: string[] }> {
    const a = await timed(() =>
      havenJson<ActivationReport>(h, ['activate', '--all', '--store', store, '--parallel', parallel]),
    );
    const up = await running();
    if (up.length !== count) throw new Error(`activate --all: ${up.length} of ${count} running`);
    const order = a.value.servers.map((s) => s.server);
    inOrder &&= JSON.stringify(order) === JSON.stringify(expected);
    return { seconds: a.seconds, order };
  }

  /** Stops every domain and gives the activations up (the store as before). */
  async function giveUp(order: readonly string[]): Promise<void> {
    await destroyAll();
    for (const n of order) {
      const d = await runHaven(h, ['deactivate', n, '--store', store, '--destroy']);
      if (d.code !== 0) throw new Error(`deactivate ${n}: ${d.stderr}`);
    }
  }

  const figures = {
    parallel: [] as number[],
    serial: [] as number[],
    floor: [] as number[],
    floorTiers: [] as number[],
  };
  let inOrder = true;
  for (let rep = 1; rep <= reps; rep++) {
    const par = await activate(args.parallel);
    // The definitions libvirt runs, for the floors: started again with bare `virsh create`.
    const xmls = new Map<string, string>();
    for (const n of par.order) {
      const x = join(work, `${n}.xml`);
      writeFileSync(x, (await exec('virsh', ['-c', 'qemu:///system', 'dumpxml', '--inactive', n])).stdout);
      xmls.set(n, x);
    }
    await destroyAll();
    const create = (n: string) => exec('virsh', ['-c', 'qemu:///system', 'create', xmls.get(n)!]);
    const floor = await timed(async () => {
      for (const n of par.order) await create(n);
    });
    await destroyAll();
    const floorTiers = await timed(async () => {
      for (const tier of [...new Set(tierOf.values())].sort((x, y) => x - y))
        await Promise.all(par.order.filter((n) => tierOf.get(n) === tier).map(create));
    });
    await giveUp(par.order);
    const serial = await activate('1');
    await giveUp(serial.order);
    figures.parallel.push(par.seconds);
    figures.serial.push(serial.seconds);
    figures.floor.push(floor.seconds);
    figures.floorTiers.push(floorTiers.seconds);
    say(
      `rep ${rep}: haven activate --all --parallel ${args.parallel} ${par.seconds.toFixed(2)} s, --parallel 1 ${serial.seconds.toFixed(2)} s; virsh create ×${count} one after the other ${floor.seconds.toFixed(2)} s, a tier at a time side by side ${floorTiers.seconds.toFixed(2)} s`,
    );
  }
  const ratio = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]!));
  const result = {
    servers: count,
    tiers,
    parallel: Number(args.parallel),
    reps,
    havenSeconds: median(figures.parallel),
    havenSerialSeconds: median(figures.serial),
    floorSeconds: median(figures.floor),
    floorTiersSeconds: median(figures.floorTiers),
    ratioToSerialFloor: ratio(figures.parallel, figures.floor),
    ratioToTierFloor: ratio(figures.parallel, figures.floorTiers),
    ratioParallelToSerial: ratio(figures.parallel, figures.serial),
    inBootOrder: inOrder,
    goal: 'under 10 s to every domain running',
    met: median(figures.parallel) < 10,
  };
  if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    say(
      `median: haven ${result.havenSeconds.toFixed(2)} s (--parallel 1: ${result.havenSerialSeconds.toFixed(2)} s, ratio ${result.ratioParallelToSerial.toFixed(2)}); floors ${result.floorSeconds.toFixed(2)} s one after the other (ratio ${result.ratioToSerialFloor.toFixed(2)}), ${result.floorTiersSeconds.toFixed(2)} s a tier at a time (ratio ${result.ratioToTierFloor.toFixed(2)}); boot order kept: ${inOrder}; goal (< 10 s): ${result.met ? 'met' : 'missed'}`,
    );
  }
} finally {
  await destroyAll();
  await fleet.cleanup();
}
