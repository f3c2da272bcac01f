/**
 * Filesystem-store behaviour beyond the conformance suite: stale locks, readers during a live
 * rotation, a power cut that loses page-cache writes of a first run, verify's structural checks,
 * a staging directory (cache drive) that disappears, and hole punching where the filesystem
 * cannot punch.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { Logger } from '../../src/core/log.ts';
import { punchHoles } from '../../src/store/common/holes.ts';
import { acquireLock } from '../../src/store/common/lock.ts';
import { type FsStore, openFsStore } from '../../src/store/fs/index.ts';
import { CHUNK_SIZE } from '../../src/store/types.ts';
import { fsStoreUnderTest } from '../conformance/fs-sut.ts';
import { code, runChild, ServerSim, SMALL_WEB01_DISKS, type StoreUnderTest } from '../conformance/harness.ts';
import { isZero, resyncExtents, sendExtents, summaryOf, withStaged } from '../conformance/model.ts';
import { captureLog } from '../helpers/capture-log.ts';

const ROOT = process.env.HAVEN_TEST_ROOT ?? '/var/tmp/haven-test';
await mkdir(ROOT, { recursive: true });

async function fsStore(
  t: TestContext,
  options: { stagingDir?: string; busyWaitMs?: number; log?: Logger } = {},
): Promise<StoreUnderTest & { store: FsStore; dir: string }> {
  const dir = await mkdtemp(join(ROOT, 'store-fs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await openFsStore(dir, { create: true, ...options });
  return { ...fsStoreUnderTest(store, dir), store, dir };
}

test('a stale lock (its process is dead, or its pid was reused) is broken with a log line; a foreign one is not', async (t) => {
  const log = captureLog();
  const sut = await fsStore(t, { log });
  const sim = ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies: 2, seed: 1 });
  const p = sim.prepare();
  // The child takes the lock, stages a little and dies without releasing it.
  const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
    checkpointAfter: 2,
    killAfter: 3,
  });
  assert.equal(res.signal, 'SIGKILL', res.stderr);
  const lockPath = join(sut.dir, '.haven', 'locks', 'Web01.lock');
  assert.ok((await stat(lockPath)).isFile(), 'the dead writer left its lock');
  const w = await sut.store.openDelta(p.meta);
  assert.ok(w.resumed, 'the partial of the dead writer is continued');
  assert.ok(
    log.lines.some((l) => l.includes('broke a stale lock')),
    log.lines.join('\n'),
  );
  await w.close();

  // Our own pid but another start time: the pid was reused by an unrelated process.
  await writeFile(
    lockPath,
    JSON.stringify({ pid: process.pid, host: hostname(), startedAt: 'x', procStart: '1', token: 'old' }),
  );
  const w2 = await sut.store.openDelta(p.meta);
  await w2.close();

  // A lock taken on another host cannot be judged from here.
  await writeFile(
    lockPath,
    JSON.stringify({ pid: 1, host: 'dr-elsewhere', startedAt: '2024-01-01T00:00:00Z', token: 't' }),
  );
  await assert.rejects(sut.store.openDelta(p.meta), (e: unknown) => {
    code('STORE_LOCKED')(e);
    const he = e as { kind: string; details: { lock: string; host: string } };
    assert.equal(he.kind, 'conflict');
    assert.equal(he.details.lock, lockPath);
    assert.equal(he.details.host, 'dr-elsewhere');
    return true;
  });
  await unlink(lockPath);
});

test('readers during a live rotation see the surviving generations where they are; interrupted ones roll forward', async (t) => {
  const sut = await fsStore(t, { busyWaitMs: 300 });
  const sim = ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies: 3, seed: 2 });
  for (let i = 0; i < 3; i++) await sim.runDelta();
  const [g3, g2, g1] = sim.gens;
  const p = sim.prepare({ writes: 8 });
  const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), { crashAt: 'mid-apply' });
  assert.equal(res.signal, 'SIGKILL', res.stderr);

  // Pretend the writer is alive: this process holds the server lock.
  const lockPath = join(sut.dir, '.haven', 'locks', 'Web01.lock');
  await unlink(lockPath);
  const held = await acquireLock(lockPath, {
    purpose: 'test',
    log: captureLog(),
    locked: () => new Error('locked') as never,
  });
  const m = await sut.store.manifest('Web01');
  assert.deepEqual(
    m?.generations.map((g) => [g.id, g.seq, g.disks[0]!.image]),
    [
      [g3!.id, 1, 'Web01_Web01_0_2'],
      [g2!.id, 2, 'Web01_Web01_0_3'],
    ],
    'the recycled generation is hidden, the others are found under their new names',
  );
  for (const [i, g] of [g3!, g2!].entries()) {
    const path = await sut.store.imagePath('Web01', g.id, 'Web01_0');
    assert.ok(path.endsWith(`Web01_Web01_0_${i + 2}.raw`));
    const r = await sut.store.openImage('Web01', g.id, 'Web01_0');
    assert.ok((await r.read(0, r.size)).equals(g.content.get('Web01_0')!));
    await r.close();
  }
  await assert.rejects(sut.store.imagePath('Web01', g1!.id, 'Web01_0'), code('STORE_GENERATION_NOT_FOUND'));
  const report = await sut.store.verify('Web01');
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.checkedGenerations, 2);

  // The writer "dies": the next reader completes the rotation.
  await held.release();
  const after = await sut.store.manifest('Web01');
  assert.equal(after?.generations[0]?.pointInTime, p.meta.pointInTime);
  sim.adopt(after!.generations[0]!, p);
  await sim.check('rolled forward by a reader');

  // During the renaming steps a reader waits; a live writer stuck there makes it give up.
  const q = sim.prepare({ writes: 3 });
  const res2 = await runChild(t, sut, q, q.extents, summaryOf(q.extents, q.disks), { crashAt: 'mid-rename' });
  assert.equal(res2.signal, 'SIGKILL', res2.stderr);
  await unlink(lockPath);
  const held2 = await acquireLock(lockPath, {
    purpose: 'test',
    log: captureLog(),
    locked: () => new Error('locked') as never,
  });
  await assert.rejects(sut.store.manifest('Web01'), code('STORE_BUSY'));
  await held2.release();
  const m2 = await sut.store.manifest('Web01');
  sim.adopt(m2!.generations[0]!, q);
  await sim.check('rolled forward from the renaming phase');
});

test('a power cut that keeps image writes but loses digest writes of a first run is repaired on resume', async (t) => {
  const sut = await fsStore(t);
  const sim = ServerSim.on(sut, { server: 'cut', disks: SMALL_WEB01_DISKS, copies: 2, seed: 3 });
  const a = sim.prepare();
  // Checkpoint just before the second disk starts, die a few extents into it: the writes after
  // the checkpoint end one disk and begin another that this attempt had not touched.
  const firstOfDisk1 = a.extents.findIndex((e) => e.disk === 'Web01_1');
  assert.ok(firstOfDisk1 >= 2);
  const checkpointAfter = firstOfDisk1 - 1;
  const killAfter = Math.min(a.extents.length - 1, firstOfDisk1 + 2);
  const lost = a.extents.slice(checkpointAfter, killAfter);
  assert.ok(
    lost.some((e) => e.disk === 'Web01_1' && e.kind === 'data'),
    'data is written on the new disk after the checkpoint',
  );
  const res = await runChild(t, sut, a, a.extents, summaryOf(a.extents, a.disks), {
    checkpointAfter,
    killAfter,
  });
  assert.equal(res.signal, 'SIGKILL', res.stderr);
  // The page cache kept the image writes made after the checkpoint but lost the digest writes:
  // the delta's sums say "not staged" where the image holds data.
  const deltas = join(sut.dir, '.haven', 'servers', 'cut', 'deltas');
  const [id] = await readdir(deltas);
  for (const e of lost) {
    const sums = await open(join(deltas, id!, `${e.disk}.sums`), 'r+');
    const first = e.offset / CHUNK_SIZE;
    await sums.write(Buffer.alloc(Math.ceil(e.length / CHUNK_SIZE) * 32), 0, undefined, first * 32);
    await sums.close();
  }
  // The source restarted: its new point in time is zero wherever the first attempt wrote last.
  const b = sim.prepare({ from: a.content, writes: 0, zeroRanges: 0, mode: 'resync' });
  for (const e of lost) b.content.get(e.disk)!.fill(0, e.offset, e.offset + e.length);
  const w = await sut.store.openDelta(b.meta);
  assert.ok(w.resumed);
  const extents = await resyncExtents(w, sim.alg, b.content, b.disks);
  const r = await sendExtents(w, sim.alg, b.content, b.disks, extents);
  await w.seal(withStaged(r.sent, w.resumed.staged));
  sim.adopt(await w.commit(), b);
  await sim.check('first run resumed after a power cut');
});

test('verify reports missing, resized, orphaned and leftover images, digest files and the definition', async (t) => {
  const sut = await fsStore(t);
  const sim = ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies: 3, seed: 4 });
  await sim.runDelta();
  await sim.runDelta();
  const [newest, older] = sim.gens;
  await unlink(await sut.store.imagePath('Web01', newest!.id, 'Web01_1'));
  await truncate(await sut.store.imagePath('Web01', older!.id, 'Web01_0'), 4096);
  await copyFile(
    await sut.store.imagePath('Web01', older!.id, 'Web01_1'),
    join(sut.dir, 'Web01_Web01_1_7.raw'),
  );
  await writeFile(join(sut.dir, 'Web01_Web01_0_incomplete.raw'), 'x');
  await truncate(join(sut.dir, '.haven', 'servers', 'Web01', 'digests', older!.id, 'Web01_1.sums'), 64);
  await unlink(sut.store.definitionPath('Web01'));
  const report = await sut.store.verify('Web01');
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems.map((p) => p.code).sort(), [
    'STORE_DEFINITION_MISSING',
    'STORE_DIGESTS_SIZE',
    'STORE_IMAGE_MISSING',
    'STORE_IMAGE_ORPHAN',
    'STORE_INCOMPLETE_LEFTOVER',
    'STORE_SIZE_MISMATCH',
  ]);
  const missing = report.problems.find((p) => p.code === 'STORE_IMAGE_MISSING')!;
  assert.equal(missing.generationId, newest!.id);
  assert.equal(missing.disk, 'Web01_1');
});

test('deltas staged on a cache drive; when the drive is gone the slot is copied from the newest instead', async (t) => {
  const staging = await mkdtemp(join(ROOT, 'store-cache-'));
  t.after(() => rm(staging, { recursive: true, force: true }));
  const log = captureLog();
  const sut = await fsStore(t, { stagingDir: staging, log });
  const sim = ServerSim.on(sut, { server: 'Web01', disks: SMALL_WEB01_DISKS, copies: 3, seed: 5 });
  for (let i = 0; i < 3; i++) await sim.runDelta();
  const stagedDir = join(staging, 'haven-staging', sut.store.descriptor.id, 'Web01');
  assert.equal((await readdir(stagedDir)).length, 2, 'the deltas of _1 and _2 are kept on the cache drive');
  assert.deepEqual(
    await readdir(join(sut.dir, '.haven', 'servers', 'Web01', 'deltas', (await readdir(stagedDir))[0]!)),
    ['delta.json'],
  );

  // The cache drive is replaced: the kept deltas are gone.
  await rm(join(staging, 'haven-staging'), { recursive: true });
  await sim.runDelta({ writes: 9 });
  await sim.check('rotated without the kept deltas');
  assert.ok(
    log.lines.some((l) => l.includes('starts as a copy of the newest')),
    log.lines.join('\n'),
  );

  // Gone after the journal was written: roll-forward switches to a copy as well.
  await sim.runDelta({ writes: 4 });
  const p = sim.prepare({ writes: 6 });
  const res = await runChild(t, sut, p, p.extents, summaryOf(p.extents, p.disks), {
    crashAt: 'after-renames',
  });
  assert.equal(res.signal, 'SIGKILL', res.stderr);
  const keptOld = (await readdir(stagedDir)).length;
  assert.ok(keptOld >= 2);
  const records = join(sut.dir, '.haven', 'servers', 'Web01', 'deltas');
  for (const id of await readdir(records)) {
    const rec = JSON.parse(await readFile(join(records, id, 'delta.json'), 'utf8'));
    if (rec.state === 'committed') await rm(join(stagedDir, id), { recursive: true, force: true });
  }
  await sut.store.recover();
  const m = await sut.store.manifest('Web01');
  sim.adopt(m!.generations[0]!, p);
  await sim.check('rolled forward without the kept deltas');
  assert.equal((await sut.store.verify('Web01')).ok, true);
});

test('where the filesystem cannot punch holes, zero ranges are written as zeroes', async (t) => {
  const mnt = await mkdtemp(join(ROOT, 'ramfs-'));
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', mnt]);
  t.after(async () => {
    execFileSync('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });
  const path = join(mnt, 'img');
  await writeFile(path, Buffer.alloc(4 * CHUNK_SIZE, 0xab));
  const fh = await open(path, 'r+');
  await punchHoles(fh, path, [{ offset: CHUNK_SIZE, length: 2 * CHUNK_SIZE }], captureLog());
  const buf = Buffer.alloc(4 * CHUNK_SIZE);
  await fh.read(buf, 0, buf.length, 0);
  await fh.close();
  assert.ok(buf.subarray(0, CHUNK_SIZE).every((b) => b === 0xab));
  assert.ok(isZero(buf.subarray(CHUNK_SIZE, 3 * CHUNK_SIZE)));
  assert.ok(buf.subarray(3 * CHUNK_SIZE).every((b) => b === 0xab));
});

test('a store is refused when it is not one, is newer, or uses another digest', async (t) => {
  const dir = await mkdtemp(join(ROOT, 'store-open-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(openFsStore(dir), code('STORE_NOT_FOUND'));
  const s = await openFsStore(dir, { create: true, digest: 'sha256' });
  assert.equal(s.descriptor.digest, 'sha256');
  assert.equal(
    (await openFsStore(dir, { create: true })).descriptor.id,
    s.descriptor.id,
    'create on a store opens it',
  );
  await assert.rejects(openFsStore(dir, { digest: 'blake3' }), code('STORE_DIGEST_CONFLICT'));
  const desc = JSON.parse(await readFile(join(dir, 'haven-store.json'), 'utf8'));
  await writeFile(join(dir, 'haven-store.json'), JSON.stringify({ ...desc, version: 99 }));
  await assert.rejects(openFsStore(dir), code('STORE_FORMAT_UNSUPPORTED'));
  await writeFile(join(dir, 'haven-store.json'), '{"format": "haven-store"');
  await assert.rejects(openFsStore(dir), code('STORE_FILE_INVALID'));
});

test('a format 1 store is upgraded to format 2 by a receiver, and only by one', async (t) => {
  const dir = await mkdtemp(join(ROOT, 'store-upgrade-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s = await openFsStore(dir, { create: true });
  await s.close();
  const path = join(dir, 'haven-store.json');
  const desc = JSON.parse(await readFile(path, 'utf8'));
  assert.equal(desc.version, 2, 'a new store is format 2');
  await writeFile(path, JSON.stringify({ ...desc, version: 1 }));
  const reader = await openFsStore(dir);
  assert.equal(reader.descriptor.version, 1, 'a reader changes nothing');
  await reader.close();
  const receiver = await openFsStore(dir, { create: true });
  assert.equal(receiver.descriptor.version, 2);
  await receiver.close();
  assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { ...desc, version: 2 });
});
