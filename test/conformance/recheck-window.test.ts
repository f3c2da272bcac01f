/**
 * The slot check's recheck window (docs/store-format.md, "Bit rot never spreads"; issue 19): a
 * commit reads the generation its slot starts from only when part of it was last checked whole
 * longer ago than the store's window, so an incremental's cost follows its change, not the disk.
 * Each generation disk records when it was last checked (`<disk>.checked` beside its digests).
 * On the filesystem store: the record is the common write path's, the same for every kind.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import { MetadataLayout } from '../../src/store/common/metadata-layout.ts';
import { openFsStore } from '../../src/store/fs/index.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import { keptChunk, sealed } from './contract/bitrot.ts';
import { fsStoreUnderTest } from './fs-sut.ts';
import { ServerSim, WEB01_DISKS } from './harness.ts';

const root = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
const DISK = WEB01_DISKS[0]!;
const DAY_MS = 24 * 3600_000;

async function fresh(t: { after(fn: () => Promise<void>): void }, recheckAfterMs?: number) {
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, 'recheck-'));
  const store = await openFsStore(dir, {
    create: true,
    ...(recheckAfterMs !== undefined ? { recheckAfterMs } : {}),
  });
  const sut = fsStoreUnderTest(store, dir);
  t.after(() => sut.cleanup());
  const layout = new MetadataLayout(dir);
  const checkedFile = (server: string, id: string) => layout.checked(server, id, DISK.name);
  const checkedAt = async (server: string, id: string) =>
    Date.parse(JSON.parse(await readFile(checkedFile(server, id), 'utf8')).at);
  /** Makes the record of a generation's last check `ms` old, as if that much time had passed. */
  const age = (server: string, id: string, ms: number) =>
    writeFile(
      checkedFile(server, id),
      JSON.stringify({ format: 'haven-checked', at: new Date(Date.now() - ms).toISOString() }),
    );
  return { sut, checkedAt, age };
}

/** Copies 1, two runs, then chunk `c` of the only generation damaged behind the store's back. */
async function damagedOnly(s: Awaited<ReturnType<typeof fresh>>, server: string, seed: number) {
  const sim = ServerSim.on(s.sut, { server, disks: WEB01_DISKS, copies: 1, seed });
  await sim.runDelta({ writes: 2, zeroRanges: 1 });
  await sim.runDelta({ writes: 2, zeroRanges: 1 });
  const p = sim.prepare({ writes: 2, zeroRanges: 1 });
  const c = await keptChunk(s.sut, sim, p);
  await s.sut.damageImage(server, sim.gens[0]!.id, DISK.name, c * CHUNK_SIZE + 11);
  return { sim, p, c };
}

const resendNeeded = (e: unknown) => e instanceof HavenError && e.code === 'STORE_RESEND_NEEDED';

test('within the window a commit does not read its source again; the new generation keeps the older check time', async (t) => {
  const s = await fresh(t);
  const { sim, p, c } = await damagedOnly(s, 'Win01', 151);
  const before = await s.checkedAt('Win01', sim.gens[0]!.id);
  const gen = await (await sealed(s.sut, sim, p)).commit();
  sim.adopt(gen, p);
  assert.equal(await s.checkedAt('Win01', gen.id), before, 'the new generation is as old as its check');
  // Undetected damage younger than the window is carried with the digest of the source's bytes,
  // so the first whole read finds it: here verify, which marks it to be sent again.
  const report = await s.sut.store.verify('Win01');
  assert.deepEqual(
    report.problems.map((x) => [x.code, x.badChunks]),
    [['STORE_DIGEST_MISMATCH', [c]]],
  );
  assert.equal(await s.sut.store.needsResync?.('Win01'), true);
  await sim.runDelta({ writes: 2, zeroRanges: 1, resync: true });
  await sim.check('after the resync');
  assert.deepEqual((await s.sut.store.verify('Win01')).problems, []);
});

test('once the last check is older than the window, the next commit reads its source and finds the damage', async (t) => {
  const s = await fresh(t);
  const { sim, p } = await damagedOnly(s, 'Win02', 152);
  await s.age('Win02', sim.gens[0]!.id, DAY_MS + 60_000);
  const w = await sealed(s.sut, sim, p);
  await assert.rejects(w.commit(), resendNeeded);
  await w.close();
  await sim.runDelta({ writes: 2, zeroRanges: 1, resync: true });
  await sim.check('after the resync');
  const newest = sim.gens[0]!.id;
  const at = await s.checkedAt('Win02', newest);
  assert.ok(Date.now() - at < 60_000, 'a commit that read its source whole is checked as of now');
});

test('a window of 0 reads the source on every commit (the check of issue 13.5)', async (t) => {
  const s = await fresh(t, 0);
  const { sim, p } = await damagedOnly(s, 'Win03', 153);
  const w = await sealed(s.sut, sim, p);
  await assert.rejects(w.commit(), resendNeeded);
  await w.close();
});

test('a checksum resync reads its source whatever the window: the full pass --resync promises', async (t) => {
  const s = await fresh(t);
  const { sim } = await damagedOnly(s, 'Win04', 154);
  await assert.rejects(
    sim.runDelta({ writes: 2, zeroRanges: 1, resync: true, mode: 'resync' }),
    resendNeeded,
  );
});

test('verify records a clean whole read and forgets the record of a damaged generation', async (t) => {
  const s = await fresh(t);
  const sim = ServerSim.on(s.sut, { server: 'Win05', disks: WEB01_DISKS, copies: 2, seed: 155 });
  await sim.runDelta({ writes: 2, zeroRanges: 1 });
  await sim.runDelta({ writes: 2, zeroRanges: 1 });
  const [newest, oldest] = [sim.gens[0]!.id, sim.gens[1]!.id];
  await s.age('Win05', oldest, 3 * DAY_MS);
  const started = Date.now();
  assert.deepEqual((await s.sut.store.verify('Win05')).problems, []);
  assert.ok((await s.checkedAt('Win05', oldest)) >= started - 1000, 'the whole read renewed the record');
  await s.sut.damageImage('Win05', newest, DISK.name, 5);
  assert.equal((await s.sut.store.verify('Win05')).ok, false);
  await assert.rejects(s.checkedAt('Win05', newest), { code: 'ENOENT' });
  assert.ok(await s.checkedAt('Win05', oldest), 'the intact generation keeps its record');
});
