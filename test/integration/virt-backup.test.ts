/**
 * Pull-mode backups on a running test guest, checked from outside with libnbd's nbdinfo and
 * nbdcopy: a full backup that is a true point-in-time view, an incremental one whose dirty map
 * is exactly what the guest wrote, a job left behind by a crashed process, and the conflict of
 * a second backup.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import {
  activeBackup,
  backupBegin,
  backupEnd,
  backupJobInfo,
  listCheckpoints,
  VirtError,
} from '../../src/virt/index.ts';
import { createTestGuest } from '../fixtures/guest/index.ts';
import { checkPatternInFile, PATTERN_BLOCK_SIZE, patternBlocks } from '../fixtures/guest/pattern.ts';
import { dirtyBlocks, nbdCopyToFile, nbdList, nbdMap, testDir } from '../fixtures/guest/tools.ts';

const PREFIX = 'haven-t-virt';
const MiB = 1024 * 1024;

test('full then incremental pull backup: point-in-time view, exports, dirty map, job info, end', async (t) => {
  const dir = await testDir(t, `${PREFIX}-bk`);
  const g = await createTestGuest(t, {
    prefix: PREFIX,
    disks: [{ sizeMiB: 64 }, { sizeMiB: 16, format: 'raw' }],
    workload: { name: 'pattern-write', seed: 1, count: 30 },
  });
  const blocks = (64 * MiB) / PATTERN_BLOCK_SIZE;
  const socketPath = join(dir, 'nbd.sock');

  const full = await backupBegin(g.virsh, g.name, { checkpointName: 'c1', socketPath, scratchDir: dir });
  assert.equal(full.socketPath, socketPath);
  assert.equal(full.incrementalFrom, undefined);
  assert.deepEqual(
    full.exports.map((e) => [e.disk, e.exportName, e.mode, e.bitmapContext]),
    [
      ['vda', 'vda', 'full', undefined],
      ['vdb', 'vdb', 'full', undefined],
    ],
  );
  assert.ok(existsSync(socketPath), 'the NBD socket appears');
  const listed = await nbdList(socketPath);
  assert.deepEqual(
    listed.map((e) => [e['export-name'], e['export-size'], e.contexts?.includes('base:allocation')]),
    [
      ['vda', 64 * MiB, true],
      ['vdb', 16 * MiB, true],
    ],
  );
  const info = await backupJobInfo(g.virsh, g.name);
  assert.equal(info.type, 'unbounded');
  assert.equal(info.operation, 'backup');

  // A second backup while this one runs: the conflict error, at once.
  await assert.rejects(
    backupBegin(g.virsh, g.name, { socketPath: join(dir, 'other.sock'), scratchDir: dir }),
    (e: unknown) => e instanceof VirtError && e.code === 'VIRT_BACKUP_ACTIVE' && e.kind === 'conflict',
  );

  // The guest keeps writing; the export still shows the disk as it was when the backup began.
  await g.writePattern('vda', 2, 30);
  const fullCopy = await nbdCopyToFile(socketPath, 'vda', join(dir, 'full.raw'));
  assert.deepEqual(
    (await checkPatternInFile(fullCopy, 1, 30)).bad,
    [],
    'data from before the backup is there',
  );
  const later = patternBlocks(2, 30, blocks).filter((b) => !patternBlocks(1, 30, blocks).includes(b));
  const seen = (await checkPatternInFile(fullCopy, 2, 30)).bad;
  assert.ok(
    later.every((b) => seen.includes(b)),
    'nothing written after the backup began is in it',
  );

  assert.equal(await backupEnd(g.virsh, g.name), true);
  assert.equal(await activeBackup(g.virsh, g.name), null);
  // Scratch files are named per backup (<domain>.<target>.<run>.scratch), so two runs never share one.
  const scratch = full.exports[0]?.scratchFile ?? '';
  assert.match(scratch, new RegExp(`^${dir}/${g.name}\\.vda\\.[0-9a-f]+\\.scratch$`));
  assert.equal(existsSync(scratch), false, 'scratch files are gone');
  assert.equal(await backupEnd(g.virsh, g.name), false, 'ending twice is harmless');

  const cps = await listCheckpoints(g.virsh, g.name);
  assert.deepEqual(
    cps.map((c) => [c.name, c.disks.map((d) => `${d.name}:${d.checkpoint}`).join(',')]),
    [['c1', 'vda:bitmap,vdb:no']],
  );

  await g.writePattern('vda', 3, 20);
  const inc = await backupBegin(g.virsh, g.name, {
    checkpointName: 'c2',
    incrementalFrom: 'c1',
    socketPath,
    scratchDir: dir,
  });
  assert.equal(inc.incrementalFrom, 'c1');
  assert.deepEqual(
    inc.exports.map((e) => [e.disk, e.mode, e.bitmapContext]),
    [
      ['vda', 'incremental', 'qemu:dirty-bitmap:backup-vda'],
      ['vdb', 'full', undefined],
    ],
  );
  const incList = await nbdList(socketPath);
  assert.ok(
    incList.find((e) => e['export-name'] === 'vda')?.contexts?.includes('qemu:dirty-bitmap:backup-vda'),
  );
  assert.equal(
    incList
      .find((e) => e['export-name'] === 'vdb')
      ?.contexts?.some((c) => c.startsWith('qemu:dirty-bitmap:')),
    false,
  );
  // Exactly the blocks written since c1: seed 2 (during the first backup) and seed 3.
  const expectedDirty = [...new Set([...patternBlocks(2, 30, blocks), ...patternBlocks(3, 20, blocks)])].sort(
    (a, b) => a - b,
  );
  const dirty = dirtyBlocks(await nbdMap(socketPath, 'vda', 'qemu:dirty-bitmap:backup-vda'));
  assert.deepEqual(dirty, expectedDirty);
  const incCopy = await nbdCopyToFile(socketPath, 'vda', join(dir, 'inc.raw'));
  assert.deepEqual((await checkPatternInFile(incCopy, 3, 20)).bad, []);

  const running = await activeBackup(g.virsh, g.name);
  assert.deepEqual(running, inc);
  assert.equal(await backupEnd(g.virsh, g.name), true);
  const after = await listCheckpoints(g.virsh, g.name);
  assert.deepEqual(
    after.map((c) => [c.name, c.parent]),
    [
      ['c1', undefined],
      ['c2', 'c1'],
    ],
  );
});

test('a backup job left behind by a crashed process is found by activeBackup and can be ended', async (t) => {
  const dir = await testDir(t, `${PREFIX}-orphan`);
  const g = await createTestGuest(t, { prefix: PREFIX, disks: [{ sizeMiB: 32 }] });
  const socketPath = join(dir, 'nbd.sock');
  // Another process starts a backup and dies without ending it.
  const script = join(dir, 'begin.mts');
  await writeFile(
    script,
    `import { backupBegin, Virsh } from ${JSON.stringify(join(import.meta.dirname, '..', '..', 'src', 'virt', 'index.ts'))};
await backupBegin(new Virsh(), ${JSON.stringify(g.name)}, { checkpointName: 'orphan', socketPath: ${JSON.stringify(socketPath)}, scratchDir: ${JSON.stringify(dir)} });
process.exit(9);`,
  );
  await exec(process.execPath, ['--import', 'tsx', script], { okCodes: [9] });

  const job = await activeBackup(g.virsh, g.name);
  assert.ok(job, 'the job outlived the process');
  assert.equal(job.socketPath, socketPath);
  assert.deepEqual(
    job.exports.map((e) => [e.disk, e.exportName]),
    [['vda', 'vda']],
  );
  // It still serves: the engine can reuse it as it is.
  assert.deepEqual(
    (await nbdList(socketPath)).map((e) => e['export-name']),
    ['vda'],
  );
  assert.equal(await backupEnd(g.virsh, g.name), true);
  assert.equal(await activeBackup(g.virsh, g.name), null);
  // A stale socket and scratch file from the dead run do not stop the next backup.
  await writeFile(join(dir, `${g.name}.vda.scratch`), 'stale');
  await writeFile(socketPath, 'stale');
  const next = await backupBegin(g.virsh, g.name, { socketPath, scratchDir: dir });
  assert.deepEqual(
    next.exports.map((e) => e.disk),
    ['vda'],
  );
  await backupEnd(g.virsh, g.name);
});
