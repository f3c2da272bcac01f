/**
 * Issue 15, continuous protection end to end on a real guest: `haven protect --continuous`
 * replicates a two-disk guest while the sequence-numbered writer (seqw) writes to both disks;
 * the target keeps a journal of points a second or two apart over a short window (older points
 * fold into the base); SIGTERM stops it with exit 130. Every point checked — the newest and
 * several chosen at random, selected by id or by time with `haven restore --at` — holds exactly a
 * prefix of the writes on both disks (crash-consistent across disks), the points' prefixes grow
 * with time, and the newest point, taken after the writer stopped, holds every acknowledged
 * write. A point booted by `haven drill --at` checks its own disks in the guest too; a target
 * written at the DR site is refused by name. The lag
 * (age of the newest committed point, sampled every second) is reported.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RestoreResult } from '../../src/recovery/index.ts';
import { openFsStore } from '../../src/store/index.ts';
import type { JournalInfo, JournalPoint, ServerManifest } from '../../src/store/types.ts';
import { activeBackup, Virsh } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkSeqPrefix, fileReader } from '../fixtures/guest/seq.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import { drillSeq, pointAfter, restoreAt as restoreFromJournal } from './continuous-helpers.ts';
import { freePort, waitFor, writeConfig } from './jobs-helpers.ts';
import { destroyDomainsLike, guestDefinitions } from './recovery-helpers.ts';

const PREFIX = 'haven-t-cont';
const DISK_MIB = 24;

type Listed = Omit<ServerManifest, 'sourceDefinition'> & { journal?: JournalInfo; points?: JournalPoint[] };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

test('protect --continuous: a journal of crash-consistent points, restored by id or time, byte-exact', async (t) => {
  const dir = await testDir(t, PREFIX);
  const guest = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: DISK_MIB }, { sizeMiB: DISK_MIB }],
  });
  t.after(() => destroyDomainsLike(guest.name));
  // A restored copy that boots checks its disks (the definition the store keeps is the
  // persistent one, which carries this workload; the running guest is not restarted).
  await guest.setWorkload({ name: 'seq-check', disks: ['vda', 'vdb'] });
  const config = join(dir, 'haven.yaml');
  await writeFile(config, guestDefinitions(guest));
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const store = join(dir, 'store');
  const server = guest.name;

  const plan = await havenJson<{ disks: unknown[]; intervalMs: number }>(h, [
    'protect',
    server,
    '--to',
    store,
    '--continuous',
    '--interval',
    '1s',
    '--dry-run',
    '--json',
  ]);
  assert.equal(plan.disks.length, 2);
  assert.equal(plan.intervalMs, 1000);

  await guest.seqStart({ rate: 512 * 1024, block: 65536, nonce: 11, disks: ['vda', 'vdb'] });
  const started = Date.now();
  const lags: number[] = [];
  let stoppedAt = 0;
  let acked = 0;
  const journal = async (): Promise<JournalInfo | null> => {
    const s = await openFsStore(store).catch(() => null);
    try {
      return (await s?.journalInfo(server)) ?? null;
    } finally {
      await s?.close();
    }
  };
  // Samples the lag once a second; stops the writer after 40 s, then waits for a point taken
  // after the last acknowledged write, and lets the run be stopped.
  const done = (async () => {
    await waitFor('a first point', async () => (await journal())?.newest ?? undefined, 180_000, 500);
    const firstAt = Date.now();
    while (Date.now() - firstAt < 40_000) {
      const j = await journal();
      if (j?.newest) lags.push(Date.now() - Date.parse(j.newest.takenAt));
      await new Promise((r) => setTimeout(r, 1000));
    }
    acked = await guest.seqStop();
    stoppedAt = Date.now();
    await pointAfter(store, server, stoppedAt, 'a point after the writer stopped');
  })();
  const r = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--journal', '15s', '--json'],
    { killOn: done, killSignal: 'SIGTERM', timeoutMs: 400_000 },
  );
  await done;
  assert.equal(r.code, 130, `stopped by SIGTERM: exit 130\n${r.stderr}`);
  assert.match(r.stderr, /\[INTERRUPTED\]: protect --continuous .* stopped by SIGTERM/);
  const final = JSON.parse(r.stdout) as {
    cycles: number;
    lastCycleMs: number;
    lanes: { state: string; lastPoint: { id: string } }[];
  };
  assert.ok(final.cycles >= 10, `${final.cycles} cycles`);
  assert.equal(final.lanes.length, 1);

  lags.sort((a, b) => a - b);
  t.diagnostic(`cycles: ${final.cycles}, the last took ${final.lastCycleMs} ms (capture to spool)`);
  t.diagnostic(
    `lag over ${lags.length} samples: p50 ${percentile(lags, 50)} ms, p99 ${percentile(lags, 99)} ms, max ${lags.at(-1)} ms; ${acked} writes of 64 KiB in ${Math.round((stoppedAt - started) / 1000)} s`,
  );
  assert.ok(lags.length >= 30, `${lags.length} samples`);
  // A shared, emulated (TCG) test host: the 5 s objective is the bench's; here a point
  // no older than 10 s must exist in nine samples of ten.
  assert.ok(percentile(lags, 90) <= 10_000, `p90 lag ${percentile(lags, 90)} ms`);

  const [listed] = await havenJson<Listed[]>(h, ['images', server, '--store', store, '--points']);
  const points = listed?.points ?? [];
  const info = listed?.journal;
  assert.ok(info, 'images shows the journal');
  assert.equal(info.windowMs, 15_000);
  assert.equal(points.length, info.points);
  assert.ok(points.length >= 8, `${points.length} points`);
  assert.ok((points[0]?.seq ?? 0) > 1, 'points older than the window were folded into the base');
  assert.equal(points.at(-1)?.id, info.newest?.id);
  for (let i = 1; i < points.length; i++) {
    assert.ok(Date.parse(points[i]!.takenAt) >= Date.parse(points[i - 1]!.takenAt), 'points in time order');
  }

  const size = DISK_MIB * 1024 * 1024;
  const restoreAt = async (at: string, name: string, extra: string[] = ['--no-define']) => {
    const out = join(dir, name);
    const res = await restoreFromJournal(h, server, store, at, out, extra);
    const verdict = await checkSeqPrefix(fileReader(res.disks.map((d) => d.path)), [size, size]);
    assert.equal(verdict.ok, true, `point ${res.generation.id}: ${verdict.ok ? '' : verdict.problem}`);
    return { res, last: verdict.last };
  };

  // The newest point: every acknowledged write, and nothing else.
  const newest = await restoreAt(points.at(-1)!.id, 'newest');
  assert.equal(newest.last, acked, 'the newest point holds every acknowledged write');

  // Points at random, by time (a moment after a point selects it) or by id: prefixes that grow.
  const picks = [...points.keys()]
    .slice(0, -1)
    .sort(() => Math.random() - 0.5)
    .slice(0, 5)
    .sort((a, b) => a - b);
  let previous = 0;
  for (const i of picks) {
    const p = points[i]!;
    const next = points[i + 1]!;
    const byTime = i % 2 === 0 && Date.parse(next.takenAt) - Date.parse(p.takenAt) > 2;
    const at = byTime ? new Date(Date.parse(p.takenAt) + 1).toISOString() : p.id;
    const { res, last } = await restoreAt(at, `p${i}`);
    assert.equal(res.generation.id, p.id, `--at ${at} selects point ${p.id}`);
    assert.ok(
      last >= previous && last <= acked,
      `point ${i}: prefix ${last} after ${previous}, at most ${acked}`,
    );
    previous = last;
  }
  const tooEarly = await runHaven(h, [
    'restore',
    server,
    '--store',
    store,
    '--at',
    '2001-01-01T00:00:00Z',
    '--to',
    join(dir, 'x'),
    '--no-define',
  ]);
  assert.equal(tooEarly.code, 4, tooEarly.stderr);
  assert.match(tooEarly.stderr, /RECOVERY_POINT_OUTSIDE_WINDOW/);

  // A point restored and defined: its definition names the restored images.
  const name = `${server}-pit`;
  t.after(() => new Virsh().run(['undefine', '--domain', name]).catch(() => undefined));
  const booted = await restoreAt(points.at(-2)!.id, 'boot', ['--name', name]);
  assert.equal(booted.res.defined, true);
  const xml = await new Virsh().run(['dumpxml', '--domain', name, '--inactive']);
  for (const d of booted.res.disks) assert.ok(xml.includes(d.path), `the definition uses ${d.path}`);
  // The same point booted by `haven drill --at`: the guest finds that prefix on its own disks.
  const drilled = await drillSeq(h, server, store, ['--at', points.at(-2)!.id], booted.last);
  assert.equal(drilled.id, points.at(-2)!.id);
  const planned = await havenJson<{ ok: boolean; servers: { generation?: { id: string } }[] }>(h, [
    'drill',
    server,
    '--store',
    store,
    '--at',
    points.at(-1)!.id,
    '--marker',
    'x',
    '--dry-run',
    '--json',
  ]);
  assert.equal(planned.ok, true, JSON.stringify(planned));
  assert.equal(planned.servers[0]?.generation?.id, points.at(-1)!.id, 'the dry run plans the point');

  // The target written at the DR site (its identifiers descend from the primary's): the lane
  // refuses, names both sides and the commands, and the journal is left as it was.
  const pitPath = join(store, '.haven', 'servers', server, 'pit', 'pit.json');
  const pit = JSON.parse(await readFile(pitPath, 'utf8'));
  const primaryId = pit.ids.current as string;
  pit.ids = {
    current: 'd0d0d0d0d0d0d0d0',
    history: [primaryId],
    lastWriter: { side: 'dr', by: 'ops@dr', at: new Date().toISOString() },
  };
  await writeFile(pitPath, JSON.stringify(pit));
  const before = await readFile(pitPath, 'utf8');
  const again = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'],
    {
      killAfterMs: 20_000,
      killSignal: 'SIGTERM',
      timeoutMs: 120_000,
    },
  );
  assert.equal(again.code, 130, again.stderr);
  const lane = (
    JSON.parse(again.stdout) as {
      lanes: { state: string; error: { code: string; message: string } | null }[];
    }
  ).lanes[0];
  assert.equal(lane?.state, 'stopped');
  assert.equal(lane?.error?.code, 'CONTINUOUS_DR_NEWER', JSON.stringify(lane));
  assert.match(lane?.error?.message ?? '', /last written at the DR site by ops@dr/);
  assert.match(lane?.error?.message ?? '', /this primary's newest point there/);
  assert.equal(await readFile(pitPath, 'utf8'), before, 'the refused target is unchanged');
});

test('serve runs a mode: continuous job to two targets; each holds every acknowledged write', async (t) => {
  const dir = await testDir(t, `${PREFIX}-serve`);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 16 }, { sizeMiB: 16 }] });
  t.after(() => destroyDomainsLike(guest.name));
  const stores = [join(dir, 'dr1'), join(dir, 'dr2')];
  const port = await freePort();
  const config = await writeConfig(
    dir,
    `targets:\n  dr1:\n    url: ${stores[0]}\n  dr2:\n    url: ${stores[1]}\n` +
      `jobs:\n  cont:\n    servers: [${guest.name}]\n    targets: [dr1, dr2]\n    mode: continuous\n    interval: 1s\n    journal: 1m\n` +
      `daemon:\n  listen: 127.0.0.1:${port}\n`,
  );
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const refused = await runHaven(h, ['job', 'run', 'cont']);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /JOB_CONTINUOUS/);

  await guest.seqStart({ rate: 256 * 1024, block: 65536, nonce: 5, disks: ['vda', 'vdb'] });
  const newest = async (store: string) => {
    const s = await openFsStore(store).catch(() => null);
    try {
      return (await s?.journalInfo(guest.name))?.newest ?? null;
    } finally {
      await s?.close();
    }
  };
  let acked = 0;
  const done = (async () => {
    for (const s of stores)
      await waitFor(`a point in ${s}`, () => newest(s).then((p) => p ?? undefined), 180_000, 500);
    await new Promise((r) => setTimeout(r, 10_000));
    // /metrics has each lane's lag and state.
    const token = (await readFile(join(h.stateDir, 'api-token'), 'utf8')).trim();
    const metrics = await (
      await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${token}` } })
    ).text();
    for (const target of ['dr1', 'dr2']) {
      const m = new RegExp(
        `^haven_continuous_lag_seconds\\{server="${guest.name}",target="${target}"\\} ([0-9.e+-]+)$`,
        'm',
      ).exec(metrics);
      assert.ok(m, `lag of ${target} in /metrics:\n${metrics}`);
      assert.ok(Number(m[1]) < 30, `${target}: lag ${m[1]} s`);
      assert.match(
        metrics,
        new RegExp(
          `haven_continuous_lane_state\\{server="${guest.name}",target="${target}",state="(syncing|behind)"\\} 1`,
        ),
      );
    }
    acked = await guest.seqStop();
    const stoppedAt = Date.now();
    for (const s of stores) {
      await waitFor(
        `a point after the writer stopped in ${s}`,
        async () => {
          const p = await newest(s);
          return p && Date.parse(p.takenAt) > stoppedAt + 200 ? p : undefined;
        },
        60_000,
        500,
      );
    }
  })();
  const r = await runHaven(h, ['serve'], { killOn: done, killSignal: 'SIGTERM', timeoutMs: 400_000 });
  await done;
  assert.ok(r.code === 0 || r.code === 130, `serve stopped: ${r.code}\n${r.stderr}`);
  assert.equal(await activeBackup(guest.virsh, guest.name), null, 'no backup job left behind');

  const size = 16 * 1024 * 1024;
  for (const [i, store] of stores.entries()) {
    const p = await newest(store);
    assert.ok(p);
    const res = await havenJson<RestoreResult>(h, [
      'restore',
      guest.name,
      '--store',
      store,
      '--at',
      p.id,
      '--to',
      join(dir, `r${i}`),
      '--no-define',
    ]);
    const verdict = await checkSeqPrefix(fileReader(res.disks.map((d) => d.path)), [size, size]);
    assert.equal(verdict.ok, true, verdict.ok ? '' : verdict.problem);
    assert.equal(verdict.last, acked, `${store}: every acknowledged write`);
  }
});
