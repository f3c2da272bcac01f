/**
 * Really stops libvirtd, checks that `haven doctor` says it is not reachable and exits non-zero,
 * then starts libvirtd again and waits until it answers (always, in t.after, even on failure).
 * scripts/test runs test/disruptive/ last and alone, because this disturbs every libvirt user.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import type { HostCheck } from '../../src/virt/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { libvirtdAnswers, startLibvirtd, stopLibvirtd } from './libvirtd.ts';

const HAVEN = join(import.meta.dirname, '..', '..', 'bin', 'haven.mjs');

test('haven doctor reports a stopped libvirtd and exits non-zero; libvirtd is restarted', async (t) => {
  assert.ok(await libvirtdAnswers(), 'libvirtd must be running before the test');
  const dir = await testDir(t, 'haven-t-virt-stop');
  t.after(startLibvirtd);

  await stopLibvirtd();
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
