import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { scratchDir } from '../core/test-support/scratch.ts';
import { claimLogRetention, LOG_STAMP, pruneLogs } from './retention.ts';

const DAY = 86_400_000;
const NOW = new Date('2026-03-10T12:00:00Z');

const tmpDir = (t: TestContext): string => scratchDir('haven-t-retention-', t);

/** A pid that belonged to a process that has ended. */
const deadPid = spawnSync(process.execPath, ['-e', '']).pid;

/** A run log as Haven names it, `ageDays` old (by mtime), `bytes` long. */
function runLog(dir: string, what: string, ageDays: number, bytes = 100, pid = deadPid): string {
  const at = new Date(NOW.getTime() - ageDays * DAY);
  const name = `${what}-${at.toISOString().replace(/[:.]/g, '-')}-${pid}.log`;
  writeFileSync(join(dir, name), Buffer.alloc(bytes, 0x61));
  utimesSync(join(dir, name), at, at);
  return name;
}

const policy = (
  p: Partial<{ maxAgeMs: number | null; maxBytes: number | null; maxFiles: number | null }>,
) => ({
  maxAgeMs: null,
  maxBytes: null,
  maxFiles: null,
  ...p,
});

test('logs older than max_age go; recent ones, live processes’ and files Haven did not name stay', async (t) => {
  const dir = tmpDir(t);
  const old = runLog(dir, 'protect-web01', 40);
  const oldLive = runLog(dir, 'serve', 40, 100, process.pid);
  const recent = runLog(dir, 'receive', 2);
  writeFileSync(join(dir, 'notes.log'), 'mine');
  utimesSync(join(dir, 'notes.log'), new Date(0), new Date(0));
  mkdirSync(join(dir, `job-x-${new Date(0).toISOString().replace(/[:.]/g, '-')}-1.log`));

  const dry = await pruneLogs(dir, policy({ maxAgeMs: 30 * DAY }), { now: NOW, dryRun: true });
  assert.deepEqual(dry.deleted, [{ file: old, bytes: 100, reason: 'age' }]);
  assert.ok(existsSync(join(dir, old)), 'a dry run deletes nothing');

  const r = await pruneLogs(dir, policy({ maxAgeMs: 30 * DAY }), { now: NOW });
  assert.deepEqual(r.deleted, [{ file: old, bytes: 100, reason: 'age' }]);
  assert.deepEqual(
    readdirSync(dir).sort(),
    [oldLive, recent, 'notes.log', readdirSync(dir).find((n) => n.startsWith('job-x'))!].sort(),
  );
  assert.equal(r.keptFiles, 2);
  assert.equal(r.keptBytes, 200);
});

test('over max_files or max_size, the oldest go first, never a live process’s', async (t) => {
  const dir = tmpDir(t);
  const a = runLog(dir, 'protect-a', 5, 1000);
  const live = runLog(dir, 'serve', 4, 5000, process.pid);
  const b = runLog(dir, 'protect-b', 3, 1000);
  const c = runLog(dir, 'protect-c', 2, 1000);
  const d = runLog(dir, 'protect-d', 1, 1000);

  const byCount = await pruneLogs(dir, policy({ maxFiles: 4 }), { now: NOW, dryRun: true });
  assert.deepEqual(
    byCount.deleted.map((f) => [f.file, f.reason]),
    [[a, 'count']],
  );
  // 9000 bytes in all; under 7000 means a (1000) and b (1000) go, the live 5000 stays.
  const bySize = await pruneLogs(dir, policy({ maxBytes: 7000 }), { now: NOW });
  assert.deepEqual(
    bySize.deleted.map((f) => [f.file, f.reason]),
    [
      [a, 'size'],
      [b, 'size'],
    ],
  );
  assert.deepEqual(readdirSync(dir).sort(), [c, d, live].sort());
  assert.equal(bySize.keptBytes, 7000);
  // The file this process writes is kept whatever its name says about its pid.
  const own = runLog(dir, 'prune', 0, 10_000);
  const kept = await pruneLogs(dir, policy({ maxBytes: 1 }), { now: NOW, keep: [join(dir, own)] });
  assert.deepEqual(
    kept.deleted.map((f) => f.file),
    [c, d],
  );
  assert.deepEqual(readdirSync(dir).sort(), [live, own].sort());
});

test('a missing log directory has nothing to prune; the hourly stamp is claimed once', async (t) => {
  const dir = tmpDir(t);
  const r = await pruneLogs(join(dir, 'none'), policy({ maxAgeMs: DAY }), { now: NOW });
  assert.deepEqual(r, { dir: join(dir, 'none'), deleted: [], keptFiles: 0, keptBytes: 0 });
  assert.equal(await claimLogRetention(join(dir, 'none'), NOW), false);
  assert.equal(existsSync(join(dir, 'none')), false, 'no directory is created');

  assert.equal(await claimLogRetention(dir, NOW), true);
  assert.equal(statSync(join(dir, LOG_STAMP)).mtimeMs, NOW.getTime());
  assert.equal(await claimLogRetention(dir, new Date(NOW.getTime() + 60_000)), false);
  assert.equal(await claimLogRetention(dir, new Date(NOW.getTime() + 3_600_000)), true);
});
