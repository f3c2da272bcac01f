/**
 * `haven doctor` on this machine: healthy (every required check ok, exit 0, --json parses), with
 * libvirtd unreachable through a URI whose socket does not exist (the same code path as a
 * stopped libvirtd, see test/disruptive/), with a run directory QEMU's user cannot write, and
 * with a store that user cannot enter or read.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStore } from '../../src/store/index.ts';
import type { HostCheck } from '../../src/virt/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';

const HAVEN = join(import.meta.dirname, '..', '..', 'bin', 'haven.mjs');

function haven(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HAVEN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const IDS = [
  'libvirtd',
  'libvirt-version',
  'qemu-version',
  'backup-support',
  'qemu-nbd',
  'qemu-img',
  'run-dir',
  'ssh',
  'nbdinfo',
  // Not libvirt's: whether the daemon's configured address is reachable in clear text.
  'daemon-listen',
];

test('haven doctor on this healthy machine: every check ok, exit 0, JSON and table', async (t) => {
  const dir = await testDir(t, 'haven-t-virt-doc');
  const runDir = join(dir, 'run');
  const json = await haven(['doctor', '--json'], { HAVEN_RUN_DIR: runDir });
  assert.equal(json.code, 0, json.stdout + json.stderr);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: HostCheck[] };
  assert.equal(report.ok, true);
  assert.deepEqual(
    report.checks.map((c) => c.id),
    IDS,
  );
  for (const c of report.checks) assert.equal(c.status, 'ok', `${c.id}: ${c.detail}`);
  assert.match(report.checks.find((c) => c.id === 'run-dir')?.detail ?? '', /libvirt-qemu can create files/);
  assert.ok(existsSync(runDir), 'the run directory was created');

  const table = await haven(['doctor'], { HAVEN_RUN_DIR: runDir });
  assert.equal(table.code, 0);
  assert.match(table.stdout, /libvirtd reachable\s*│\s*ok/);
  assert.match(table.stdout, /all required checks passed/);
});

test('haven doctor with libvirtd unreachable: fails with the fix, exit 12', async (t) => {
  const dir = await testDir(t, 'haven-t-virt-doc');
  const env = { HAVEN_RUN_DIR: join(dir, 'run'), HAVEN_LIBVIRT_URI: 'qemu:///system?socket=/nonexistent' };
  const json = await haven(['doctor', '--json'], env);
  assert.equal(json.code, 12);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: HostCheck[] };
  assert.equal(report.ok, false);
  const libvirtd = report.checks.find((c) => c.id === 'libvirtd');
  assert.equal(libvirtd?.status, 'fail');
  assert.match(libvirtd?.detail ?? '', /not reachable/);
  assert.match(libvirtd?.fix ?? '', /libvirtd/);
  // Checks that do not need libvirtd still ran.
  assert.equal(report.checks.find((c) => c.id === 'qemu-img')?.status, 'ok');

  const table = await haven(['doctor'], env);
  assert.equal(table.code, 12);
  assert.match(table.stdout, /libvirtd reachable\s*│\s*FAIL/);
  assert.match(table.stdout, /fix \(libvirtd reachable\): .*(libvirtd -d|systemctl start)/);
  assert.match(table.stdout, /some required checks failed/);
});

test('haven doctor notices a run directory QEMU cannot write, as that user', async (t) => {
  const dir = await testDir(t, 'haven-t-virt-doc');
  // Root can write anywhere; libvirt-qemu cannot get through a 0700 parent.
  const locked = join(dir, 'locked');
  await mkdir(locked, { mode: 0o700 });
  await chmod(locked, 0o700);
  const json = await haven(['doctor', '--json'], { HAVEN_RUN_DIR: join(locked, 'run') });
  assert.equal(json.code, 12);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: HostCheck[] };
  const runDir = report.checks.find((c) => c.id === 'run-dir');
  assert.equal(runDir?.status, 'fail');
  assert.match(runDir?.detail ?? '', /libvirt-qemu cannot create files/);
  assert.match(runDir?.fix ?? '', /chmod/);
  assert.equal(report.checks.filter((c) => c.status === 'fail').length, 1, 'only that check fails');
});

test('haven doctor --store: whether QEMU’s user can enter the store and read its images (a warning)', async (t) => {
  const dir = await testDir(t, 'haven-t-virt-doc');
  const store = join(dir, 'store');
  await openStore(store, { create: true });
  const env = { HAVEN_RUN_DIR: join(dir, 'run') };
  const access = async () => {
    const r = await haven(['doctor', '--json', '--store', store], env);
    // A warning: the host can still receive, so the exit code stays 0.
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as { checks: HostCheck[] };
    return report.checks.find((c) => c.id === 'store-qemu-access')!;
  };
  const image = join(store, 'web01_web01_0_1.raw');
  await writeFile(image, Buffer.alloc(4096), { mode: 0o644 });
  const ok = await access();
  assert.equal(ok.status, 'ok', ok.detail);
  assert.match(ok.detail, /libvirt-qemu can enter .* and read web01_web01_0_1\.raw/);

  await chmod(image, 0o600);
  const unreadable = await access();
  assert.equal(unreadable.status, 'warn');
  assert.match(unreadable.detail, /cannot read .*web01_web01_0_1\.raw: drills and activation .* would fail/);

  await chmod(image, 0o644);
  await chmod(store, 0o700);
  const closed = await access();
  assert.equal(closed.status, 'warn');
  assert.match(closed.detail, /cannot enter /);
  assert.match(closed.fix ?? '', /chmod o\+x/);
});
