/**
 * A receiver killed while it writes an rbd image leaves its qemu-nbd export running
 * (src/store/rbd/orphans.ts); the next rbd store to open stops it. Real qemu-nbd processes here,
 * exporting a raw file (what matters is whether the export's owner runs, not what it serves):
 * one whose owner has died, one whose owner's pid now belongs to another process, one owned by
 * this live process, and directories of exports long gone.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pidAlive } from '../../src/catalog/catalog.ts';
import { silentLogger } from '../../src/core/log.ts';
import { qemuNbdArgs } from '../../src/nbd/index.ts';
import { EXPORT_DIR_PREFIX, markOwner, stopOrphanedExports } from '../../src/store/rbd/orphans.ts';
import { waitFor } from './jobs-helpers.ts';

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => child.once('exit', () => r()));

/** An export directory as writable.ts makes one, owned by `owner`, and its qemu-nbd serving `image`. */
async function startExport(root: string, name: string, image: string, owner: number) {
  const dir = join(root, `${EXPORT_DIR_PREFIX}${name}`);
  mkdirSync(dir);
  await markOwner(dir, owner);
  const args = qemuNbdArgs({
    image,
    format: 'raw',
    socketPath: join(dir, 'nbd.sock'),
    pidFile: join(dir, 'nbd.pid'),
    persistent: true,
    readOnly: true,
    shared: 4,
  });
  const child = spawn('qemu-nbd', args, { stdio: 'ignore' });
  await waitFor(`qemu-nbd's pid file in ${dir}`, () => existsSync(join(dir, 'nbd.pid')) || undefined, 30_000);
  assert.equal(Number(readFileSync(join(dir, 'nbd.pid'), 'utf8').trim()), child.pid);
  return { dir, child, pid: child.pid! };
}

test('exports whose owner is gone are stopped and their directories removed; a live owner keeps its own', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'haven-orphans-'));
  const image = join(root, 'disk.raw');
  writeFileSync(image, Buffer.alloc(1 << 20));
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map(exited));
    rmSync(root, { recursive: true, force: true });
  });

  // Owned by a process that then dies, as a SIGKILLed receiver leaves its export.
  const owner = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(owner);
  const orphan = await startExport(root, 'orphan', image, owner.pid!);
  children.push(orphan.child);
  owner.kill('SIGKILL');
  await exited(owner);

  // Owned by a pid that now names another process (the start time differs).
  const recycled = await startExport(root, 'recycled', image, process.pid);
  children.push(recycled.child);
  const [pid, start] = readFileSync(join(recycled.dir, 'owner'), 'utf8').trim().split(' ');
  writeFileSync(join(recycled.dir, 'owner'), `${pid} ${Number(start) - 1}\n`);

  // Owned by this process, which runs.
  const kept = await startExport(root, 'kept', image, process.pid);
  children.push(kept.child);

  // Gone long ago (no export, unchanged for an hour), and a moment ago (it may be restarting).
  const hourAgo = new Date(Date.now() - 3_600_000);
  const old = join(root, `${EXPORT_DIR_PREFIX}old`);
  mkdirSync(old);
  utimesSync(old, hourAgo, hourAgo);
  const fresh = join(root, `${EXPORT_DIR_PREFIX}fresh`);
  mkdirSync(fresh);
  const other = join(root, 'not-haven');
  mkdirSync(other);
  utimesSync(other, hourAgo, hourAgo);

  const stopped = await stopOrphanedExports(silentLogger, root);
  assert.deepEqual(stopped.sort(), [orphan.pid, recycled.pid].sort());
  await Promise.all([exited(orphan.child), exited(recycled.child)]);
  // SIGTERM, which qemu-nbd handles by closing the image and exiting, not SIGKILL.
  assert.equal(orphan.child.exitCode, 0, `qemu-nbd ended by ${orphan.child.signalCode}`);
  assert.equal(existsSync(orphan.dir), false, 'its directory is removed');
  assert.equal(existsSync(recycled.dir), false);
  assert.ok(pidAlive(kept.pid), 'the live owner’s export runs on');
  assert.ok(existsSync(join(kept.dir, 'nbd.sock')));
  assert.equal(existsSync(old), false, 'a directory an hour old without an export is removed');
  assert.ok(existsSync(fresh), 'a new one is left: its export may be starting');
  assert.ok(existsSync(other), 'nothing else in the directory is touched');
  assert.deepEqual(await stopOrphanedExports(silentLogger, root), [], 'a second sweep finds nothing');
});
