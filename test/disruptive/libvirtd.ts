/**
 * Stopping and starting the host's real libvirtd, for the tests that need it gone for a while
 * (scripts/test runs test/disruptive/ last and alone: this disturbs every libvirt user). With
 * systemd the units (and their sockets, which would start it again) are stopped; without it, as
 * on these machines (scripts/setup starts `libvirtd -d`), the daemon gets SIGTERM.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { exec } from '../../src/core/exec.ts';

const SYSTEMD = existsSync('/run/systemd/system');

export async function libvirtdAnswers(): Promise<boolean> {
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

async function waitUntil(what: string, cond: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Stops libvirtd and waits until it is gone (guests keep running: QEMU is not its child). */
export async function stopLibvirtd(): Promise<void> {
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
    // libvirtd gives its drivers up to 30 s to finish what they are doing before it exits anyway
    // (virnetdaemon.c, the finish timer virNetDaemonRun arms on quit): a deadline of 30 s raced
    // it whenever a job was running, as a backup job of `protect --continuous` is here.
    await waitUntil('libvirtd to exit', () => libvirtdPids().length === 0, 60_000);
  }
}

/** Starts libvirtd when it does not answer, and waits until it does. */
export async function startLibvirtd(): Promise<void> {
  if (await libvirtdAnswers()) return;
  if (SYSTEMD) await exec('systemctl', ['start', 'libvirtd']);
  else if (libvirtdPids().length === 0) await exec('libvirtd', ['-d']);
  await waitUntil('libvirtd to answer again', libvirtdAnswers, 60_000);
}
