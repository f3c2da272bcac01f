/**
 * Really stops libvirtd, checks that `haven doctor` says it is not reachable and exits non-zero,
 * then starts libvirtd again and waits until it answers (always, in t.after, even on failure).
 * scripts/test runs test/disruptive/ last and alone, because this disturbs every libvirt user.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { exec } from '../../src/core/exec.ts';
import type { HostCheck } from '../../src/virt/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';

const HAVEN = join(import.meta.dirname, '..', '..', 'bin', 'haven.mjs');
const SYSTEMD = existsSync('/run/systemd/system');

async function libvirtdAnswers(): Promise<boolean> {
  try {
    await exec('virsh', ['-c', 'qemu:///system', 'version'], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function libvirtdPids(): number[] {
  try {
    return execFileSync('pgrep', ['-x', 'libvirtd'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function startLibvirtd(): Promise<void> {
  if (await libvirtdAnswers()) return;
  if (SYSTEMD) await exec('systemctl', ['start', 'libvirtd']);
  else if (libvirtdPids().length === 0) await exec('libvirtd', ['-d']);
  await waitFor('libvirtd to answer again', libvirtdAnswers, 60_000);
}

test('haven doctor reports a stopped libvirtd and exits non-zero; libvirtd is restarted', async (t) => {
  assert.ok(await libvirtdAnswers(), 'libvirtd must be running before the test');
  const dir = await testDir(t, 'haven-t-virt-stop');
  t.after(startLibvirtd);

  if (SYSTEMD) {
    await exec('systemctl', [
      'stop',
      'libvirtd.socket',
      'libvirtd-ro.socket',
      'libvirtd-admin.socket',
      'libvirtd',
    ]);
  } else {
    for (const pid of libvirtdPids()) process.kill(pid, 'SIGTERM');
    await waitFor('libvirtd to exit', () => libvirtdPids().length === 0, 30_000);
  }
  assert.equal(await libvirtdAnswers(), false);

  const result = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [HAVEN, 'doctor', '--json'], {
      env: { ...process.env, HAVEN_RUN_DIR: join(dir, 'run'), HAVEN_LIBVIRT_URI: 'qemu:///system' },
    });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout }));
  });
  assert.notEqual(result.code, 0);
  assert.equal(result.code, 12);
  const report = JSON.parse(result.stdout) as { ok: boolean; checks: HostCheck[] };
  assert.equal(report.ok, false);
  const libvirtd = report.checks.find((c) => c.id === 'libvirtd');
  assert.equal(libvirtd?.status, 'fail');
  assert.match(libvirtd?.detail ?? '', /libvirtd is not reachable/);

  await startLibvirtd();
  assert.equal(await libvirtdAnswers(), true);
});
