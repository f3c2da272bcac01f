/**
 * Shared by the recovery tests: a protected test guest with its store, snapshots of a store's
 * files (to prove a refusal changed nothing), and the domains a test left in libvirt.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';

export { stat };

import { join, relative } from 'node:path';
import { exec } from '../../src/core/exec.ts';
import type { ActivationReport, ActivationResult } from '../../src/recovery/index.ts';
import type { ServerManifest } from '../../src/store/types.ts';
import { Virsh } from '../../src/virt/index.ts';
import {
  type AfterHook,
  createTestGuest,
  type TestGuest,
  type TestGuestOptions,
} from '../fixtures/guest/index.ts';
import { testDir } from '../fixtures/guest/tools.ts';
import { type HavenEnv, havenEnv, havenJson, runHaven } from '../helpers/haven.ts';

export const PREFIX = 'haven-t-rec';

export interface Site {
  dir: string;
  h: HavenEnv;
  store: string;
  guest: TestGuest;
}

/**
 * The `definitions` section a DR host needs for the test guest: it boots its kernel directly, and
 * the definition rules let kernels come only from directories the DR host names
 * (docs/recovery.md, "What a DR definition may hold"). `extra` goes inside the section.
 */
export function guestDefinitions(guest: TestGuest, extra = ''): string {
  return `definitions:\n  boot_files: [${guest.bootDirs.map((d) => JSON.stringify(d)).join(', ')}]\n${extra}`;
}

/**
 * A scratch directory, Haven's state dirs with a configuration that lets the test guest's
 * kernel boot at the DR site, a store path and a running test guest.
 */
export async function site(
  t: AfterHook,
  name: string,
  guest: Omit<TestGuestOptions, 'prefix'> = {},
): Promise<Site> {
  const dir = await testDir(t, `${PREFIX}-${name}`);
  const g = await createTestGuest(t, { prefix: PREFIX, ...guest });
  const config = join(dir, 'haven.yaml');
  await writeFile(config, guestDefinitions(g));
  const h = await havenEnv(dir, { HAVEN_CONFIG: config });
  // Whatever a test started under the guest's names goes, even when the test fails.
  t.after(() => destroyDomainsLike(g.name));
  return { dir, h, store: join(dir, 'store'), guest: g };
}

export async function protect(s: Site, copies = 3): Promise<{ generation: { id: string; seq: number } }> {
  return havenJson(s.h, ['protect', s.guest.name, '--to', s.store, '--copies', String(copies)]);
}

export async function manifest(s: Site): Promise<ServerManifest> {
  const all = await havenJson<ServerManifest[]>(s.h, ['images', s.guest.name, '--store', s.store]);
  assert.equal(all.length, 1);
  return all[0]!;
}

/** Names of the libvirt domains (running or defined) whose name starts with `prefix`. */
export async function domainsLike(prefix: string): Promise<string[]> {
  const virsh = new Virsh();
  const out = await virsh.run(['list', '--all', '--name']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(prefix));
}

/** Stops transient domains named like `prefix` (a test's DR copies and drills). */
export async function destroyDomainsLike(prefix: string): Promise<void> {
  const virsh = new Virsh();
  for (const d of await domainsLike(prefix)) {
    const persistent = (await virsh.run(['dominfo', '--domain', d]).catch(() => '')).match(
      /Persistent:\s+(\w+)/,
    )?.[1];
    if (persistent === 'no') await virsh.run(['destroy', '--domain', d]).catch(() => '');
  }
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (b) => h.update(b))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** Every file under `root` (lock files aside) with its size and SHA-256. */
export async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && !e.name.endsWith('.lock')) {
        out.set(relative(root, p), `${(await stat(p)).size}:${await sha256File(p)}`);
      }
    }
  };
  await walk(root);
  return out;
}

/** Waits until the file contains `text` (after byte `from`); fails with its last lines. */
export async function waitForText(
  path: string,
  text: string | RegExp,
  timeoutMs: number,
  from = 0,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await readFile(path, 'latin1').catch(() => '')).slice(from);
    const m = typeof text === 'string' ? (body.includes(text) ? text : null) : (text.exec(body)?.[0] ?? null);
    if (m !== null) return m;
    if (Date.now() > deadline) {
      throw new Error(
        `no ${text} in ${path} within ${timeoutMs} ms; last lines:\n${body.split('\n').slice(-20).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Bytes of guest data a qcow2 holds itself (not from its backing file). */
export async function ownDataBytes(qcow2: string): Promise<number> {
  const { stdout } = await exec('qemu-img', ['map', '-U', '--output=json', qcow2]);
  const map = JSON.parse(stdout) as Array<{ length: number; depth: number; data: boolean }>;
  return map.filter((e) => e.depth === 0 && e.data).reduce((n, e) => n + e.length, 0);
}

export { runHaven };

/**
 * The primary stopped (its definition and images stay: a host that comes back after repair), the
 * DR copy activated beside it as `<server>-dr` (one libvirt cannot hold two domains of one name),
 * with the primary named so that it is guarded; the copy is handled through its own console log
 * and control socket where Haven put them.
 */
export async function activateBeside(s: Site): Promise<{ activation: ActivationResult; copy: TestGuest }> {
  await s.guest.destroy();
  const dr = `${s.guest.name}-dr`;
  const report = await havenJson<ActivationReport>(s.h, [
    'activate',
    s.guest.name,
    '--store',
    s.store,
    '--name',
    dr,
    '--primary',
    'qemu:///system',
  ]);
  const activation = report.servers[0]!;
  assert.equal(activation.status, 'running');
  const copy = s.guest.runningAs(dr, {
    serialLog: join(activation.overlayDir!, 'serial0.log'),
    controlSocket: join(activation.overlayDir!, 'sockets', 'serial1.sock'),
  });
  return { activation, copy };
}

/** The running DR copy's disk as it stands (its overlay over the generation), as a raw file. */
export async function drCopyOf(s: Site, activation: ActivationResult, disk: string): Promise<string> {
  const out = join(s.dir, 'dr-copy.raw');
  await exec('qemu-img', ['convert', '-U', '-O', 'raw', join(activation.overlayDir!, `${disk}.qcow2`), out]);
  return out;
}
