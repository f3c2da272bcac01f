/**
 * Benchmark: activating a DR site (issue 19, goal 5). `haven activate --all` of N servers from one
 * store, timed from the command's start until every domain runs (the guests' boot is not
 * counted), against the floor in the same run: `virsh create` of the very definitions Haven
 * started, one after the other, with their overlays already made (what any tool must at least
 * do). Also checks that the domains started in boot order (`haven priority`).
 *
 * The servers are shut-off test guests with small disks, protected once each (offline copies
 * through qemu-nbd); then the primaries are removed, as in a disaster. Each repetition activates
 * everything, records the definitions libvirt runs, stops the domains, starts them again from
 * those definitions with `virsh create` (the floor), stops them and gives the activations up.
 *
 *   node --import tsx bench/activate.ts [--servers 10] [--reps 3] [--json]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../src/core/exec.ts';
import type { ActivationReport } from '../src/recovery/activate.ts';
import { havenEnv, havenJson, runHaven } from '../test/helpers/haven.ts';
import { guestDefinitions } from '../test/integration/recovery-helpers.ts';
import { guestFleet } from './lib/guest-fleet.ts';
import { median, timed } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '10' },
    reps: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const count = Number(args.servers);
const reps = Number(args.reps);
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
  say('protecting each once, giving each a boot priority (reverse of its name)');
  for (const [i, g] of guests.entries()) {
    await havenJson(h, ['protect', g.name, '--to', store, '--copies', '1']);
    const p = await runHaven(h, ['priority', g.name, String(100 - i), '--store', store]);
    if (p.code !== 0) throw new Error(`priority: ${p.stderr}`);
  }
  // The disaster: the primaries and their disks are gone.
  for (const g of guests) await g.cleanup();

  const haven: number[] = [];
  const floor: number[] = [];
  let inOrder = true;
  for (let rep = 1; rep <= reps; rep++) {
    const a = await timed(() => havenJson<ActivationReport>(h, ['activate', '--all', '--store', store]));
    const up = await running();
    if (up.length !== count) throw new Error(`activate --all: ${up.length} of ${count} running`);
    const order = a.value.servers.map((s) => s.server);
    const expected = [...a.value.servers.map((s) => s.server)].sort().reverse();
    inOrder &&= JSON.stringify(order) === JSON.stringify(expected);
    haven.push(a.seconds);
    const xmls: string[] = [];
    for (const n of order) {
      const x = join(work, `${n}.xml`);
      writeFileSync(x, (await exec('virsh', ['-c', 'qemu:///system', 'dumpxml', '--inactive', n])).stdout);
      xmls.push(x);
    }
    await destroyAll();
    const f = await timed(async () => {
      for (const x of xmls) await exec('virsh', ['-c', 'qemu:///system', 'create', x]);
    });
    floor.push(f.seconds);
    await destroyAll();
    for (const n of order) {
      const d = await runHaven(h, ['deactivate', n, '--store', store, '--destroy']);
      if (d.code !== 0) throw new Error(`deactivate ${n}: ${d.stderr}`);
    }
    say(
      `rep ${rep}: haven activate --all ${a.seconds.toFixed(2)} s, virsh create ×${count} ${f.seconds.toFixed(2)} s, ratio ${(a.seconds / f.seconds).toFixed(2)}`,
    );
  }
  const ratios = haven.map((s, i) => s / floor[i]!);
  const result = {
    servers: count,
    reps,
    havenSeconds: median(haven),
    floorSeconds: median(floor),
    ratio: median(ratios),
    inBootOrder: inOrder,
    goal: 'under 10 s to every domain running',
    met: median(haven) < 10,
  };
  if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    say(
      `median: haven ${result.havenSeconds.toFixed(2)} s, floor ${result.floorSeconds.toFixed(2)} s, ratio ${result.ratio.toFixed(2)}; boot order kept: ${inOrder}; goal (< 10 s): ${result.met ? 'met' : 'missed'}`,
    );
  }
} finally {
  await destroyAll();
  await fleet.cleanup();
}
