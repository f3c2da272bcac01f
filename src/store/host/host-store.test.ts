import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { digest } from '../../core/digest.ts';
import { scratchDirs } from '../../core/test-support/scratch.ts';
import { createFsStore } from '../fs/fs-store.ts';
import { HostStore } from './host-store.ts';
import { manifestFile } from './records.ts';
import { planRotation } from './rotation.ts';
import { hostFacts } from './test-support/facts.ts';
import type { HostFileMeta, HostGeneration } from './types.ts';
import { verifyHosts } from './verify.ts';

const scratch = scratchDirs('haven-host-store-');

async function newStore(): Promise<HostStore> {
  const dir = scratch();
  const fs = await createFsStore(join(dir, 'store'));
  await fs.close();
  return new HostStore(fs.location, fs.descriptor, { busyWaitMs: 2000 });
}

const facts = hostFacts;

async function manifestOf(store: HostStore) {
  const m = await store.manifest('node1');
  assert.ok(m, 'the store holds node1');
  return m;
}

/** Sends `data` in 3 pieces and commits it. */
async function put(store: HostStore, meta: HostFileMeta, data: Buffer): Promise<HostGeneration> {
  const w = await store.beginFile(meta);
  const step = Math.ceil(data.length / 3);
  for (let at = 0; at < data.length; at += step) await w.write(at, data.subarray(at, at + step));
  return w.finish({ size: data.length, digest: digest('blake3', data).toString('hex') });
}

const at = '2026-12-01T00:00:00.000Z';
const rescue = (copies = 2): HostFileMeta => ({
  host: 'node1',
  kind: 'rescue',
  copies,
  takenAt: at,
  facts: facts(),
});
const backup = (rescueId: string, copies = 2): HostFileMeta => ({
  host: 'node1',
  kind: 'backup',
  copies,
  takenAt: at,
  rescueId,
  excludes: ['/var/lib/libvirt/images/*'],
});

describe('host store', () => {
  it('stores rescue media and backups as numbered generations and rotates them', async () => {
    const store = await newStore();
    const iso = randomBytes(300_000);
    const r = await put(store, rescue(), iso);
    assert.equal(r.seq, 1);
    const files = ['a', 'b', 'c'].map(() => randomBytes(100_000));
    for (const f of files) await put(store, backup(r.id), f);
    const m = await store.manifest('node1');
    assert.ok(m);
    assert.deepEqual(
      m.backup.map((b) => b.seq),
      [1, 2],
    );
    const names = (await readdir(join(store.location, 'hosts'))).sort();
    assert.deepEqual(names, [
      'node1.txt',
      'node1_backup_1.tar.gz',
      'node1_backup_2.tar.gz',
      'node1_rescue_1.iso',
    ]);
    assert.ok(
      (await readFile(join(store.location, 'hosts', 'node1_backup_1.tar.gz'))).equals(
        files[2] ?? Buffer.alloc(0),
      ),
    );
    assert.ok(
      (await readFile(join(store.location, 'hosts', 'node1_backup_2.tar.gz'))).equals(
        files[1] ?? Buffer.alloc(0),
      ),
    );
    assert.match(
      await readFile(join(store.location, 'hosts', 'node1.txt'), 'utf8'),
      /node1_backup_1\.tar\.gz .* -> node1_rescue_1\.iso/,
    );
    const report = await verifyHosts(store);
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.equal(report.checkedFiles, 3);
  });

  it('keeps rescue media a kept backup needs, beyond copies', async () => {
    const store = await newStore();
    const r1 = await put(store, rescue(2), randomBytes(1000));
    const b1 = await put(store, backup(r1.id, 2), randomBytes(1000));
    // Two new rescue media without backups (backups that failed): r1 is still needed by b1.
    await put(store, rescue(2), randomBytes(1000));
    await put(store, rescue(2), randomBytes(1000));
    let m = await manifestOf(store);
    assert.deepEqual(
      m.rescue.map((r) => [r.seq, r.id === r1.id]),
      [
        [1, false],
        [2, false],
        [3, true],
      ],
    );
    assert.equal(m.backup[0]?.id, b1.id);
    // A new backup with the newest media and another: b1 falls out, so r1 may go.
    const newest = m.rescue[0]?.id ?? '';
    await put(store, backup(newest, 2), randomBytes(1000));
    await put(store, backup(newest, 2), randomBytes(1000));
    m = await manifestOf(store);
    assert.equal(m.rescue.length, 2);
    assert.ok(!m.rescue.some((r) => r.id === r1.id));
    assert.ok(!existsSync(join(store.location, 'hosts', 'node1_rescue_3.iso')));
    assert.equal((await verifyHosts(store)).ok, true);
  });

  it('refuses a file whose digest or size differs, and leaves the generations as they were', async () => {
    const store = await newStore();
    const r = await put(store, rescue(), randomBytes(5000));
    const before = await readFile(join(store.location, '.haven', 'hosts', 'node1', 'manifest.json'));
    const w = await store.beginFile(backup(r.id));
    await w.write(0, randomBytes(4000));
    await assert.rejects(w.finish({ size: 4000, digest: '0'.repeat(64) }), {
      code: 'STORE_HOST_DIGEST_MISMATCH',
    });
    const w2 = await store.beginFile(backup(r.id));
    await w2.write(0, randomBytes(10));
    await assert.rejects(w2.write(5, randomBytes(10)), { code: 'STORE_HOST_BAD_OFFSET' });
    await w2.discard();
    assert.ok(
      before.equals(await readFile(join(store.location, '.haven', 'hosts', 'node1', 'manifest.json'))),
    );
    assert.deepEqual((await readdir(join(store.location, 'hosts'))).sort(), [
      'node1.txt',
      'node1_rescue_1.iso',
    ]);
  });

  it('refuses a backup whose rescue media are not stored, and a second writer', async () => {
    const store = await newStore();
    await assert.rejects(store.beginFile(backup('nope')), { code: 'STORE_HOST_RESCUE_MISSING' });
    const w = await store.beginFile(rescue());
    await assert.rejects(store.beginFile(rescue()), { code: 'STORE_HOST_LOCKED' });
    await w.discard();
    const w2 = await store.beginFile(rescue());
    await w2.discard();
  });

  it('completes a rotation a dead writer left half done, without repeating a rename', async () => {
    const store = await newStore();
    const r = await put(store, rescue(3), Buffer.from('rescue'));
    for (const text of ['one', 'two']) await put(store, backup(r.id, 3), Buffer.from(text));
    // A third backup, received, then "crashed" after its journal and the first rename.
    const current = await manifestOf(store);
    const g: HostGeneration = {
      kind: 'backup',
      id: 'b3',
      seq: 1,
      takenAt: at,
      committedAt: at,
      size: 5,
      digest: digest('blake3', Buffer.from('three')).toString('hex'),
      tests: [],
      rescueId: r.id,
      excludes: [],
    };
    await writeFile(join(store.location, 'hosts', 'node1_backup_incomplete.tar.gz'), 'three');
    const plan = planRotation(store.layout, current, g, 3);
    const journal = {
      format: 'haven-host-journal' as const,
      generation: g,
      manifest: manifestFile(plan.manifest),
      deletes: plan.deletes,
      renames: plan.renames,
      done: 0,
    };
    assert.deepEqual(journal.renames[0], ['node1_backup_2.tar.gz', 'node1_backup_3.tar.gz']);
    const { rename } = await import('node:fs/promises');
    await rename(
      join(store.location, 'hosts', 'node1_backup_2.tar.gz'),
      join(store.location, 'hosts', 'node1_backup_3.tar.gz'),
    );
    await rename(
      join(store.location, 'hosts', 'node1_backup_1.tar.gz'),
      join(store.location, 'hosts', 'node1_backup_2.tar.gz'),
    );
    // Crashed after the second rename, before its counter advance: the counter says one step ran.
    // Redoing the second finds its source gone and moves nothing.
    journal.done = 1;
    await writeFile(
      join(store.location, '.haven', 'hosts', 'node1', 'journal.json'),
      JSON.stringify(journal),
    );
    const m = await manifestOf(store);
    assert.deepEqual(
      m.backup.map((b) => b.id),
      ['b3', current.backup[0]?.id, current.backup[1]?.id],
    );
    const read = (n: number) => readFile(join(store.location, 'hosts', `node1_backup_${n}.tar.gz`), 'utf8');
    assert.deepEqual([await read(1), await read(2), await read(3)], ['three', 'two', 'one']);
    assert.equal(existsSync(join(store.location, '.haven', 'hosts', 'node1', 'journal.json')), false);
    assert.equal((await verifyHosts(store)).ok, true);
  });

  it('verify names a damaged file and leaves the other generations good', async () => {
    const store = await newStore();
    const r = await put(store, rescue(), randomBytes(70_000));
    await put(store, backup(r.id), randomBytes(70_000));
    await put(store, backup(r.id), randomBytes(70_000));
    const fh = await open(join(store.location, 'hosts', 'node1_backup_1.tar.gz'), 'r+');
    await fh.write(Buffer.from([0xff ^ 0x5a]), 0, 1, 40_000);
    await fh.close();
    await writeFile(join(store.location, 'hosts', 'node1_backup_7.tar.gz'), 'stray');
    const report = await verifyHosts(store);
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems.map((p) => [p.code, p.file]).sort(), [
      ['STORE_HOST_DIGEST_MISMATCH', 'node1_backup_1.tar.gz'],
      ['STORE_HOST_FILE_ORPHAN', 'node1_backup_7.tar.gz'],
    ]);
    const quick = await verifyHosts(store, 'node1', { readFiles: false });
    assert.deepEqual(
      quick.problems.map((p) => p.code),
      ['STORE_HOST_FILE_ORPHAN'],
    );
  });
});
