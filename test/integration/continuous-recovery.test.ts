/**
 * Issue 15, recovering from a point-in-time journal and the lanes' refusals, on a real guest:
 * `haven protect --continuous` builds a journal while the sequence-numbered writer (seqw) writes
 * to two disks; then
 *
 * - `haven verify` checks every point in the window and reports the journal per server;
 * - `haven activate --at <point>` plans (`--dry-run`, nothing changed) and starts the server at
 *   that point: the booted copy finds exactly the point's prefix of writes on its disks (the
 *   same prefix `haven restore --at` gives), the journal and the generations are not written,
 *   and protecting again is refused (CONTINUOUS_DR_NEWER) until `haven deactivate` gives the
 *   copy up, which leaves the store as it was;
 * - a target whose lineage diverged from the primary's (split brain) and one with no common
 *   history are refused with their codes, naming both sides, and nothing stored changes;
 * - failback after an activation at a point: the primary equals the DR copy, and continuous
 *   protection resumes with a point that equals it too.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { catalogPath, openCatalog } from '../../src/catalog/catalog.ts';
import { exec } from '../../src/core/exec.ts';
import type { ActivationReport, FailbackResult } from '../../src/recovery/index.ts';
import type { VerifyReport } from '../../src/store/types.ts';
import { domainState, Virsh } from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkSeqPrefix, fileReader } from '../fixtures/guest/seq.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { type HavenEnv, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';
import {
  activateAt,
  listPoints,
  newestPoint,
  pointAfter,
  restoreAt,
  seqSetup,
  storedManifest,
} from './continuous-helpers.ts';
import { waitFor } from './jobs-helpers.ts';
import { destroyDomainsLike, guestDefinitions, snapshot, waitForText } from './recovery-helpers.ts';

const PREFIX = 'haven-t-contr';
const DISK_MIB = 16;

interface Lane {
  state: string;
  error: { code: string; message: string } | null;
}

/** `protect --continuous` for a while, stopped by SIGTERM: its lane as it ended. */
async function protectOnce(
  h: HavenEnv,
  server: string,
  store: string,
  ms: number,
): Promise<Lane | undefined> {
  const r = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'],
    {
      killAfterMs: ms,
      killSignal: 'SIGTERM',
      timeoutMs: 120_000,
    },
  );
  assert.equal(r.code, 130, r.stderr);
  return (JSON.parse(r.stdout) as { lanes: Lane[] }).lanes[0];
}

test('a journal verified, a point activated and given up, diverged targets refused', async (t) => {
  // A copy that boots checks its disks and prints the prefix it found on its console.
  const { dir, guest, h, store, server } = await seqSetup(t, PREFIX, DISK_MIB);
  await guest.seqStart({ rate: 256 * 1024, block: 65536, nonce: 7, disks: ['vda', 'vdb'] });
  let acked = 0;
  const done = (async () => {
    await waitFor('a first point', () => newestPoint(store, server), 180_000, 500);
    await new Promise((r) => setTimeout(r, 12_000));
    acked = await guest.seqStop();
    await pointAfter(store, server, Date.now(), 'a point after the writer stopped');
  })();
  const r = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--journal', '10m', '--json'],
    { killOn: done, killSignal: 'SIGTERM', timeoutMs: 400_000 },
  );
  await done;
  assert.equal(r.code, 130, r.stderr);
  const points = await listPoints(h, server, store);
  assert.ok(points.length >= 5, `${points.length} points`);

  // verify: every point of the window checked, the journal reported by server.
  const verified = await havenJson<VerifyReport>(h, ['verify', '--store', store]);
  assert.equal(verified.ok, true, JSON.stringify(verified.problems));
  assert.equal(verified.checkedPoints, points.length);
  assert.deepEqual(verified.journals, [
    {
      server,
      points: points.length,
      oldest: points[0]?.id,
      newest: points.at(-1)?.id,
      damaged: [],
      ok: true,
    },
  ]);

  // The point to activate, and the prefix of writes it holds (restore --at, byte-exact).
  const size = DISK_MIB * 1024 * 1024;
  const point = points.at(-3)!;
  const restored = await restoreAt(h, server, store, point.id, join(dir, 'restored'));
  const expected = await checkSeqPrefix(fileReader(restored.disks.map((d) => d.path)), [size, size]);
  assert.equal(expected.ok, true, expected.ok ? '' : expected.problem);
  assert.ok(
    expected.last > 0 && expected.last <= acked,
    `the point holds ${expected.last} of ${acked} writes`,
  );

  // The plan: the point, nothing changed, no domain.
  const name = `${server}-dr`;
  const before = await snapshot(store);
  const plan = await havenJson<ActivationReport>(h, [
    'activate',
    server,
    '--store',
    store,
    '--at',
    // A moment after the point selects it.
    new Date(Date.parse(point.takenAt) + 1).toISOString(),
    '--name',
    name,
    '--dry-run',
  ]);
  assert.equal(plan.dryRun, true);
  assert.equal(plan.servers[0]?.status, 'planned', JSON.stringify(plan.servers[0]));
  assert.equal(plan.servers[0]?.generation?.id, point.id);
  assert.equal(plan.servers[0]?.point, true);
  assert.deepEqual(await snapshot(store), before, 'the dry run changed nothing in the store');
  await assert.rejects(
    domainState(new Virsh(), name),
    (e: { code?: string }) => e.code === 'VIRT_DOMAIN_NOT_FOUND',
  );
  const both = await runHaven(h, [
    'activate',
    server,
    '--store',
    store,
    '--at',
    point.id,
    '--generation',
    '1',
  ]);
  assert.equal(both.code, 2, both.stderr);

  // Activated at the point: the copy checks its own disks and finds exactly that prefix.
  const act = await activateAt(t, h, server, store, point.id, name);
  assert.equal(act.generation?.id, point.id);
  assert.match(act.checkpoint ?? '', /^haven-dr-/, 'failback has its checkpoint');
  const activeDir = join(store, '.haven', 'active', server);
  assert.equal(act.overlayDir, activeDir);
  const images = point.disks.map((d) => join(activeDir, `${d.name}.point.raw`));
  assert.equal(images.length, 2);
  const held = await checkSeqPrefix(fileReader(images), [size, size]);
  assert.equal(held.ok && held.last, expected.last, 'the activated images hold the point, byte for byte');
  await waitForText(join(activeDir, 'serial0.log'), `HAVEN seq check OK last=${expected.last}`, 180_000);
  // The journal was only read; the activation is recorded where failback and deactivate look.
  const s1 = await snapshot(store);
  for (const [f, v] of before) {
    if (f.includes('/pit/')) assert.equal(s1.get(f), v, `${f} unchanged by the activation`);
  }
  const m = await storedManifest(store, server);
  assert.equal(m?.activeAtDr?.generationId, point.id);
  assert.equal(m?.activeAtDr?.domain, name);
  assert.deepEqual(m?.generations, [], 'no generation was written');

  // While it runs at the DR site, protecting the server there is refused and changes nothing.
  const pitBefore = await snapshot(join(store, '.haven', 'servers', server, 'pit'));
  const refused = await protectOnce(h, server, store, 15_000);
  assert.equal(refused?.error?.code, 'CONTINUOUS_DR_NEWER', JSON.stringify(refused));
  assert.deepEqual(await snapshot(join(store, '.haven', 'servers', server, 'pit')), pitBefore);

  // Given up: the copy is gone and the store is as before the activation.
  const gone = await runHaven(h, ['deactivate', server, '--store', store, '--destroy']);
  assert.equal(gone.code, 0, gone.stderr);
  assert.equal(existsSync(activeDir), false);
  const after = await snapshot(store);
  assert.deepEqual(
    [...after.keys()].filter((f) => !before.has(f)),
    [],
    'nothing left beside the journal',
  );
  for (const [f, v] of before) if (f.includes('/pit/')) assert.equal(after.get(f), v, `${f} unchanged`);

  // Diverged lineages. The primary's identifiers (its catalog) and the target's (pit.json) are
  // set as they would be after each side wrote on its own since a common ancestor.
  const pitPath = join(store, '.haven', 'servers', server, 'pit', 'pit.json');
  const pit = JSON.parse(await readFile(pitPath, 'utf8'));
  const common = pit.ids.current as string;
  const cat = openCatalog(catalogPath(h.stateDir));
  try {
    const row = cat.continuous.server(server);
    assert.ok(row, 'the primary recorded its identifiers');
    cat.continuous.saveCycle(
      {
        server,
        ids: { current: 'a1a1a1a1a1a1a1a1', history: [common] },
        checkpoint: row.checkpoint,
        job: row.job,
        pid: 0,
      },
      [],
    );
  } finally {
    cat.close();
  }
  const refusal = async (ids: unknown, code: string) => {
    await writeFile(pitPath, JSON.stringify({ ...pit, ids }));
    const stored = await snapshot(store);
    const lane = await protectOnce(h, server, store, 15_000);
    assert.equal(lane?.state, 'stopped');
    assert.equal(lane?.error?.code, code, JSON.stringify(lane));
    assert.match(lane?.error?.message ?? '', /last written .* by ops@dr/);
    assert.deepEqual(await snapshot(store), stored, `${code}: nothing stored changed`);
  };
  const writer = { side: 'dr', by: 'ops@dr', at: new Date().toISOString() };
  await refusal(
    { current: 'b2b2b2b2b2b2b2b2', history: [common], lastWriter: writer },
    'CONTINUOUS_SPLIT_BRAIN',
  );
  await refusal(
    { current: 'c3c3c3c3c3c3c3c3', history: ['d4d4d4d4d4d4d4d4'], lastWriter: writer },
    'CONTINUOUS_UNRELATED',
  );
});

test('failback after an activation at a point: the primary takes the DR writes, the journal follows', async (t) => {
  const dir = await testDir(t, `${PREFIX}-fb`);
  const guest = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: DISK_MIB }] });
  t.after(() => destroyDomainsLike(guest.name));
  const config = join(dir, 'haven.yaml');
  await writeFile(config, guestDefinitions(guest));
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  const store = join(dir, 'store');
  const server = guest.name;
  const disk = guest.disks[0]!;
  const newest = () => newestPoint(store, server);
  await guest.writePattern('vda', 23, 20);
  // A copy that boots writes 48 random blocks at once (the definition the store keeps is the
  // persistent one, which carries this workload; the running primary is not restarted).
  const count = 48;
  await guest.setWorkload({ name: 'random', disk: 'vda', rate: 0, count });
  const first = (async () => {
    await waitFor('a first point', newest, 180_000, 500);
    await new Promise((r) => setTimeout(r, 4000));
  })();
  const r1 = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'],
    {
      killOn: first,
      killSignal: 'SIGTERM',
      timeoutMs: 300_000,
    },
  );
  await first;
  assert.equal(r1.code, 130, r1.stderr);
  const point = await newest();
  assert.ok(point);

  // The primary stops; the point runs at the DR site and writes there.
  await guest.destroy();
  // When failback starts the primary again, it boots idle.
  await guest.setWorkload({ name: 'idle' });
  const dr = `${server}-dr`;
  const a = await activateAt(t, h, server, store, point.id, dr);
  // The store's definition already names the console in the activation's directory.
  const serialLog = join(a.overlayDir!, 'serial0.log');
  await waitForText(serialLog, `HAVEN random done disk=vda writes=${count}`, 180_000);
  // Each block the copy wrote, with the MD5 of what it wrote last there.
  const blocks = new Map<number, string>();
  for (const w of (await readFile(serialLog, 'latin1')).matchAll(
    /^HAVEN random disk=vda block=(\d+) md5=(\w+)$/gm,
  ))
    blocks.set(Number(w[1]), w[2]!);
  assert.ok(blocks.size > count / 2, `${blocks.size} blocks written at the DR site`);

  // Failback: with no generation to start from, every chunk is compared; the primary then holds
  // every block the DR copy wrote, and the activation's record (a manifest of its own) is gone.
  const fb = await havenJson<FailbackResult>(h, ['failback', server, '--store', store, '--to', 'local']);
  assert.equal(fb.started, true);
  assert.ok(fb.passes.length >= 1);
  const primaryRaw = join(dir, 'primary.raw');
  await exec('qemu-img', ['convert', '-U', '-O', 'raw', disk.path, primaryRaw]);
  const image = await readFile(primaryRaw);
  for (const [b, md5] of blocks) {
    const got = createHash('md5')
      .update(image.subarray(b * 65536, (b + 1) * 65536))
      .digest('hex');
    assert.equal(got, md5, `block ${b} written at the DR site is on the primary`);
  }
  const m = await storedManifest(store, server);
  assert.equal(m, null, 'no manifest left: the store holds the journal only, as before');

  // Continuous protection resumes by itself from the primary's bitmap: its next point is the
  // primary as failback left it, byte for byte.
  const resumedAt = Date.now();
  const next = pointAfter(store, server, resumedAt, 'a point after failback', {
    marginMs: 1000,
    timeoutMs: 180_000,
  });
  const r2 = await runHaven(
    h,
    ['protect', server, '--to', store, '--continuous', '--interval', '1s', '--json'],
    {
      killOn: next,
      killSignal: 'SIGTERM',
      timeoutMs: 300_000,
    },
  );
  const after = await next;
  assert.equal(r2.code, 130, r2.stderr);
  const lane = (JSON.parse(r2.stdout) as { lanes: Lane[] }).lanes[0];
  assert.equal(lane?.error ?? null, null, JSON.stringify(lane));
  const restored = await restoreAt(h, server, store, after.id, join(dir, 'after'));
  const same = await exec('cmp', [restored.disks[0]!.path, primaryRaw], { okCodes: [0, 1] });
  assert.equal(same.code, 0, `the newest point equals the primary: ${same.stdout}`);
});
