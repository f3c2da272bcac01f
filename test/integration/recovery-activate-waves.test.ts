/**
 * Issue 19, goal 5: `haven activate --all` starts the servers of one boot priority side by side
 * (`--parallel`) and a priority's servers only once every server of a lower priority runs. Three
 * shut-off test guests are protected once each into one store, one of them at priority 10, two
 * at 100; the primaries are removed (the disaster), and one activation starts all three. The
 * order is read from libvirt's own QEMU processes (their start times in /proc, in clock ticks),
 * not from Haven's report.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { ActivationReport } from '../../src/recovery/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { havenJson } from '../helpers/haven.ts';
import { destroyDomainsLike, domainsLike, PREFIX, runHaven, site } from './recovery-helpers.ts';

/** When the domain's QEMU process started, in clock ticks since boot (proc(5), field 22). */
async function qemuStartTicks(domain: string): Promise<number> {
  const pid = (await readFile(`/run/libvirt/qemu/${domain}.pid`, 'utf8')).trim();
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(after[22 - 3]);
}

test('activate --all: a priority at a time, the servers of one priority side by side', async (t) => {
  const s = await site(t, 'waves', { start: false, disks: [{ sizeMiB: 16 }] });
  const others = [];
  for (let i = 0; i < 2; i++) {
    const g = await createTestGuest(t, { prefix: `${PREFIX}-waves`, start: false, disks: [{ sizeMiB: 16 }] });
    t.after(() => destroyDomainsLike(g.name));
    others.push(g);
  }
  const guests = [s.guest, ...others];
  for (const g of guests) await havenJson(s.h, ['protect', g.name, '--to', s.store, '--copies', '1']);
  // The first guest boots first; the other two share a priority.
  const [first, ...rest] = guests.map((g) => g.name);
  const p = await runHaven(s.h, ['priority', first!, '10', '--store', s.store]);
  assert.equal(p.code, 0, p.stderr);
  for (const g of guests) await g.cleanup();

  const bad = await runHaven(s.h, ['activate', '--all', '--store', s.store, '--parallel', '0']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--parallel must be a whole number from 1 to 64/);

  const report = await havenJson<ActivationReport>(s.h, [
    'activate',
    '--all',
    '--store',
    s.store,
    '--parallel',
    '2',
  ]);
  assert.deepEqual(
    report.servers.map((r) => [r.server, r.status]),
    [first!, ...rest.sort()].map((n) => [n, 'running']),
    'reported in boot order, every server running',
  );
  for (const g of guests) assert.deepEqual(await domainsLike(g.name), [g.name]);
  const ticks = new Map<string, number>();
  for (const g of guests) ticks.set(g.name, await qemuStartTicks(g.name));
  for (const n of rest) {
    assert.ok(
      ticks.get(first!)! <= ticks.get(n)!,
      `${first} (priority 10) started before ${n} (priority 100): ${JSON.stringify([...ticks])}`,
    );
  }
  t.diagnostic(
    `QEMU start ticks: ${JSON.stringify([...ticks])}; seconds to running: ${JSON.stringify(report.servers.map((r) => r.seconds))}`,
  );
});
