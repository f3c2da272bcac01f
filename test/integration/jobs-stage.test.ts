/**
 * Primary-side staging (engine/stage.ts) against real qemu-nbd exports: for each plan mode the
 * staged copy offers exactly the extents and bytes the original export would have given the
 * transfer, the original point in time is released once staged, and a cache drive that fills up
 * leaves nothing behind and the original source still held.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { Extent } from '../../src/core/extent.ts';
import { silentLogger } from '../../src/core/log.ts';
import type { PlanMode } from '../../src/engine/plan.ts';
import type { Source } from '../../src/engine/source.ts';
import { stageSource } from '../../src/engine/stage.ts';
import { diskPlan } from '../../src/engine/transfer.ts';
import { CONTEXT_BASE_ALLOCATION, NbdClient } from '../../src/nbd/index.ts';
import { exportImage, type ImageExport } from '../../src/virt/index.ts';
import { TEST_ROOT } from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

async function qemuIo(path: string, cmds: string[]): Promise<void> {
  await exec('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), path]);
}

/** A 32 MiB qcow2 with data before and after bitmap b1 was added (including a zeroed range). */
async function sourceImage(dir: string): Promise<string> {
  const path = join(dir, 'src.qcow2');
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(32 * MiB)]);
  await qemuIo(path, ['write -P 0x11 0 1M', 'write -P 0x22 5M 192k', 'write -P 0x23 12M 64k']);
  await exec('qemu-img', ['bitmap', '--add', '-f', 'qcow2', path, 'b1']);
  await qemuIo(path, [
    'write -P 0x33 8M 256k',
    'write -z 0 64k',
    'write -P 0x44 31M 64k',
    'write -P 0x55 5M 64k',
    'write -z 12M 64k',
  ]);
  return path;
}

async function planOf(
  socketPath: string,
  exportName: string,
  mode: PlanMode,
  dirty: string | undefined,
): Promise<Array<Extent & { data?: string }>> {
  const client = await NbdClient.connect({
    socketPath,
    exportName,
    metaContexts: dirty ? [CONTEXT_BASE_ALLOCATION, dirty] : [CONTEXT_BASE_ALLOCATION],
  });
  try {
    const out: Array<Extent & { data?: string }> = [];
    for await (const e of diskPlan({
      client,
      mode,
      dirtyContext: dirty,
      chunkSize: CHUNK,
      size: 32 * MiB,
      from: 0,
    })) {
      const data =
        e.kind === 'data'
          ? (await import('node:crypto'))
              .createHash('sha256')
              .update(await client.read(e.offset, e.length))
              .digest('hex')
          : undefined;
      out.push({ ...e, ...(data ? { data } : {}) });
    }
    return out;
  } finally {
    await client.close();
  }
}

function sourceFor(exp: ImageExport, mode: PlanMode, path: string, released: { n: number }): Source {
  return {
    kind: 'offline',
    pointInTime: 'haven-test',
    takenAt: new Date(),
    incrementalFrom: mode === 'incremental' ? 'b1' : undefined,
    quiesced: true,
    disks: [
      {
        target: 'vda',
        name: 'disk0',
        size: 32 * MiB,
        format: 'qcow2',
        path,
        socketPath: exp.socketPath,
        exportName: exp.exportName,
        dirtyContext: mode === 'incremental' ? exp.bitmapContext : undefined,
        mode,
      },
    ],
    socketPath: undefined,
    release: async () => {
      released.n++;
    },
  };
}

for (const mode of ['full', 'incremental', 'resync'] as const) {
  test(`staging (${mode}): the staged copy plans and reads exactly like the original`, async (t) => {
    const dir = await testDir(t, `haven-t-jobs-stage-${mode}`);
    const path = await sourceImage(dir);
    const exp = await exportImage({
      path,
      format: 'qcow2',
      bitmap: 'b1',
      socketPath: join(dir, 'src.sock'),
      exportName: 'disk0',
    });
    t.after(() => exp.stop());
    const released = { n: 0 };
    const source = sourceFor(exp, mode, path, released);
    const expected = await planOf(exp.socketPath, exp.exportName, mode, source.disks[0]!.dirtyContext);
    assert.ok(expected.length > 0);
    if (mode === 'incremental') {
      // What changed since b1: the 8M write, the zeroed first chunk, 31M, 5M and 12M (zeroed).
      assert.deepEqual(
        expected.map((e) => [e.offset / CHUNK, e.length / CHUNK, e.kind]),
        [
          [0, 1, 'zero'],
          [80, 1, 'data'],
          [128, 4, 'data'],
          [192, 1, 'zero'],
          [496, 1, 'data'],
        ],
      );
    }

    const stageDir = join(dir, 'cache', 'server-a');
    const progress: number[] = [];
    const staged = await stageSource(source, {
      server: 'server-a',
      dir: stageDir,
      runDir: join(dir, 'run'),
      chunkSize: CHUNK,
      onProgress: (p) => progress.push(p.bytesDone),
      log: silentLogger,
    });
    assert.equal(released.n, 1, 'the original point in time is released once staged');
    assert.equal(
      staged.stagedBytes,
      expected.reduce((n, e) => n + e.length, 0),
    );
    assert.ok(staged.stagedOnDisk > 0);
    assert.equal(staged.socketPath, undefined);
    assert.ok(progress.length > 0);
    const d = staged.disks[0]!;
    assert.notEqual(d.socketPath, exp.socketPath);
    assert.equal(d.mode, mode);
    assert.equal(Boolean(d.dirtyContext), mode === 'incremental');
    const got = await planOf(d.socketPath, d.exportName, d.mode, d.dirtyContext);
    assert.deepEqual(got, expected);

    await staged.release();
    assert.equal(existsSync(stageDir), false, 'release removes the staged files');
    assert.deepEqual(await readdir(join(dir, 'cache')), []);
  });
}

test('staging onto a full cache drive: a resource error, nothing left, the original still held', async (t) => {
  const dir = await testDir(t, 'haven-t-jobs-stage-full');
  const path = await sourceImage(dir);
  const exp = await exportImage({
    path,
    format: 'qcow2',
    socketPath: join(dir, 'src.sock'),
    exportName: 'd',
  });
  t.after(() => exp.stop());
  // A 1 MiB filesystem cannot take the ~1.6 MiB of data plus the qcow2 metadata.
  const small = await mkdtemp(join(TEST_ROOT, 'haven-t-jobs-small-'));
  t.after(async () => {
    await exec('umount', [small]).catch(() => {});
    await rm(small, { recursive: true, force: true });
  });
  await exec('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'haven-t-jobs-tmpfs', small]);
  const released = { n: 0 };
  const source = sourceFor(exp, 'full', path, released);
  await assert.rejects(
    stageSource(source, {
      server: 's',
      dir: join(small, 'stage'),
      runDir: join(dir, 'run'),
      chunkSize: CHUNK,
      log: silentLogger,
    }),
    (e: Error & { code?: string; kind?: string }) => e.code === 'NBD_ENOSPC' && e.kind === 'resource',
  );
  assert.equal(released.n, 0, 'the original source is not released');
  assert.deepEqual(await readdir(small), [], 'no staged file is left');
  // The original export still serves the point in time.
  const plan = await planOf(exp.socketPath, exp.exportName, 'full', undefined);
  assert.ok(plan.length > 0);
});
