/**
 * A store on a small loop-mounted ext4 filesystem that fills up: NO_SPACE while staging a delta
 * (first run and later runs) and when a commit cannot fit, every committed generation and the
 * definition intact, and the run completes once space is freed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HavenError } from '../../src/core/errors.ts';
import { openFsStore } from '../../src/store/fs/index.ts';
import type { DeltaWriter } from '../../src/store/types.ts';
import { type Prepared, ServerSim } from '../conformance/harness.ts';
import { sendExtents, withStaged } from '../conformance/model.ts';
import { fill, loopFs } from '../helpers/loop-fs.ts';

const ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
const MiB = 1024 * 1024;

async function sendUntilFull(w: DeltaWriter, sim: ServerSim, p: Prepared): Promise<{ err: HavenError }> {
  try {
    const result = await sendExtents(w, sim.alg, p.content, p.disks, p.extents, { checkpointEvery: 2 });
    assert.fail(`staging ${result.extentsSent} extents should have run out of space`);
  } catch (e) {
    if (!(e instanceof HavenError)) throw e;
    return { err: e };
  }
}

test('NO_SPACE while staging and while committing leaves every generation intact; the run completes after freeing space', async (t) => {
  const mnt = await loopFs(t, 48);
  const staging = await mkdtemp(join(ROOT, 'full-disk-staging-'));
  t.after(() => rm(staging, { recursive: true, force: true }));
  const store = await openFsStore(join(mnt, 'store'), { create: true });
  const listImages = async () =>
    (await readdir(join(mnt, 'store'))).filter((f) => f.endsWith('.raw')).map((f) => f.slice(0, -4));
  const disks = [
    { name: 'Web01_0', size: 6 * MiB },
    { name: 'Web01_1', size: 3 * MiB },
  ];
  const sim = new ServerSim({ store, server: 'Web01', disks, copies: 2, seed: 9, listImages });
  await sim.runDelta();
  await sim.runDelta({ writes: 10 });
  await sim.check('before filling up');
  const definition = await readFile(store.definitionPath('Web01'), 'utf8');

  // 1. A large delta while staging: the filesystem fills up mid-delta.
  const filler = fill(mnt, 'filler', 2 * MiB);
  const p = sim.prepare({ writes: 120, zeroRanges: 2 });
  const w = await store.openDelta(p.meta);
  const { err } = await sendUntilFull(w, sim, p);
  assert.equal(err.code, 'NO_SPACE', err.message);
  assert.equal(err.kind, 'resource');
  await w.close();
  const report = await store.verify('Web01');
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  await sim.check('after NO_SPACE while staging');
  assert.equal(await readFile(store.definitionPath('Web01'), 'utf8'), definition);

  // Space freed: the delta resumes from its last checkpoint and completes.
  await unlink(filler);
  const w2 = await store.openDelta(p.meta);
  assert.ok(w2.resumed, 'the partial delta is resumable');
  const rest = await sendExtents(w2, sim.alg, p.content, p.disks, p.extents, { from: w2.resumed.watermarks });
  await w2.seal(withStaged(rest.sent, w2.resumed.staged));
  sim.adopt(await w2.commit(), p);
  await sim.check('after freeing space');

  // 2. A first run of another server into a full filesystem (written straight into _incomplete).
  const filler2 = fill(mnt, 'filler2', 1 * MiB);
  const other = new ServerSim({
    store,
    server: 'Db01',
    disks: [{ name: 'Db01_0', size: 8 * MiB }],
    copies: 1,
    seed: 10,
    listImages,
  });
  const q = other.prepare();
  const w3 = await store.openDelta(q.meta);
  const full = await sendUntilFull(w3, other, q);
  assert.equal(full.err.code, 'NO_SPACE');
  await w3.close();
  await sim.check('Web01 untouched by Db01 running out of space');
  await unlink(filler2);
  const w4 = await store.openDelta(q.meta);
  assert.ok(w4.resumed);
  const r4 = await sendExtents(w4, other.alg, q.content, q.disks, q.extents, { from: w4.resumed.watermarks });
  await w4.seal(withStaged(r4.sent, w4.resumed.staged));
  other.adopt(await w4.commit(), q);
  await other.check('first run completed after freeing space');

  // 3. Staged on a cache drive elsewhere, but the store itself has no room to apply it: the
  // commit is refused before anything is renamed; recover() completes it once there is room.
  const cached = await openFsStore(join(mnt, 'store'), { stagingDir: staging });
  const sim3 = new ServerSim({ store: cached, server: 'Web01', disks, copies: 2, seed: 11, listImages });
  sim3.gens = sim.gens;
  sim3.run = sim.run;
  const s = sim3.prepare({ writes: 60, zeroRanges: 1 });
  const filler3 = fill(mnt, 'filler3', 256 * 1024);
  const w5 = await cached.openDelta(s.meta);
  const r5 = await sendExtents(w5, sim3.alg, s.content, s.disks, s.extents, { checkpointEvery: 4 });
  await w5.seal(r5.sent);
  await assert.rejects(w5.commit(), (e: unknown) => e instanceof HavenError && e.code === 'NO_SPACE');
  await w5.close();
  await sim3.check('commit refused for lack of space');
  assert.equal((await cached.verify('Web01')).ok, true);
  assert.deepEqual(
    await readdir(join(mnt, 'store', '.haven', 'servers', 'Web01')).then((l) => l.includes('journal.json')),
    false,
  );
  await unlink(filler3);
  const done = await cached.recover();
  assert.ok(
    done.some((l) => l.includes('completed an interrupted commit')),
    done.join('\n'),
  );
  const m = await cached.manifest('Web01');
  assert.equal(m?.generations[0]?.pointInTime, s.meta.pointInTime);
  sim3.adopt(m!.generations[0]!, s);
  await sim3.check('committed by recover after freeing space');
  const free = await statfs(mnt);
  assert.ok(free.bavail > 0);
});
