/**
 * The primary guard: while a server runs at the DR site, its stale copy on the primary must not
 * start (two copies would diverge, and failback could no longer merge them).
 *
 * The mark lives in the primary's own libvirt definition of the server, as domain metadata in
 * the namespace DR_ACTIVE_NS (`virsh metadata --config`): it survives reboots of the primary,
 * needs no file of Haven's beside libvirt, and can be set from the DR site through a libvirt URI
 * (`haven activate --primary`) or by the primary itself when a replication is refused because the
 * server is active at the DR site. A libvirt qemu hook that Haven installs
 * (`/etc/libvirt/hooks/qemu.d/haven-guard`, https://libvirt.org/hooks.html) refuses the
 * "prepare begin" phase of any domain whose XML carries the mark; failback clears it.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DOMParser } from '@xmldom/xmldom';
import { HavenError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { type Virsh, VirtError } from '../virt/index.ts';
import { DR_ACTIVE_NS } from './definition.ts';
import { recoveryError } from './errors.ts';

/** Key (element prefix) of the guard's metadata element. */
const GUARD_KEY = 'haven';

export interface GuardInfo {
  /** When the server started at the DR site. */
  since: string;
  /** Which store (id) holds the copy that runs. */
  storeId?: string;
  generationId?: string;
  /** The domain name at the DR site. */
  drDomain?: string;
  /** Who set the guard (activate at the DR site, or a refused replication on the primary). */
  setBy?: string;
}

const ATTRS: Array<keyof GuardInfo> = ['since', 'storeId', 'generationId', 'drDomain', 'setBy'];

function xmlAttr(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

export function guardElement(info: GuardInfo): string {
  const attrs = ATTRS.filter((k) => info[k] !== undefined).map((k) => `${k}="${xmlAttr(String(info[k]))}"`);
  return `<dr-active ${attrs.join(' ')}/>`;
}

export function parseGuardElement(xml: string): GuardInfo | null {
  const root = new DOMParser({ onError: () => {} }).parseFromString(xml, 'text/xml').documentElement;
  if (root?.localName !== 'dr-active') return null;
  const info: GuardInfo = { since: root.getAttribute('since') ?? '' };
  for (const k of ATTRS) {
    const v = root.getAttribute(k);
    if (v !== null && k !== 'since') info[k] = v;
  }
  return info;
}

function isMissingMetadata(e: unknown): boolean {
  return (
    e instanceof VirtError &&
    /metadata not found|Requested metadata element is not present/i.test(
      String(e.details?.message ?? e.message),
    )
  );
}

/**
 * Marks the primary's definition of `domain`. Returns false when there is nothing to mark (the
 * domain is not defined there, or is transient: a transient domain does not outlive its run).
 */
export async function setGuard(virsh: Virsh, domain: string, info: GuardInfo): Promise<boolean> {
  try {
    await virsh.run([
      'metadata',
      '--domain',
      domain,
      '--uri',
      DR_ACTIVE_NS,
      '--key',
      GUARD_KEY,
      '--set',
      guardElement(info),
      '--config',
    ]);
    return true;
  } catch (e) {
    if (
      e instanceof VirtError &&
      (e.code === 'VIRT_DOMAIN_NOT_FOUND' || /transient/i.test(String(e.details?.message)))
    ) {
      return false;
    }
    throw e;
  }
}

/** The guard on the primary's definition of `domain`, or null. */
export async function readGuard(virsh: Virsh, domain: string): Promise<GuardInfo | null> {
  try {
    const out = await virsh.run(['metadata', '--domain', domain, '--uri', DR_ACTIVE_NS, '--config']);
    return parseGuardElement(out.trim());
  } catch (e) {
    if (isMissingMetadata(e)) return null;
    throw e;
  }
}

/** Removes the guard; true when there was one. */
export async function clearGuard(virsh: Virsh, domain: string): Promise<boolean> {
  if (!(await readGuard(virsh, domain))) return false;
  await virsh.run(['metadata', '--domain', domain, '--uri', DR_ACTIVE_NS, '--remove', '--config']);
  return true;
}

/**
 * A replication the DR store refused with STORE_ACTIVE_AT_DR is how a primary learns that its
 * server runs at the DR site: it guards the server at once (best effort; never throws).
 */
export async function guardAfterRefusal(
  virsh: Virsh,
  server: string,
  err: unknown,
  log: Logger,
): Promise<boolean> {
  if (!(err instanceof HavenError) || err.code !== 'STORE_ACTIVE_AT_DR') return false;
  const active = (err.details?.activeAtDr ?? {}) as Record<string, unknown>;
  const text = (k: string) => (typeof active[k] === 'string' ? (active[k] as string) : undefined);
  try {
    const set = await setGuard(virsh, server, {
      since: text('since') ?? new Date().toISOString(),
      ...(text('generationId') ? { generationId: text('generationId') } : {}),
      ...(text('domain') ? { drDomain: text('domain') } : {}),
      setBy: 'a replication the DR store refused',
    });
    if (set) log.warn('the server runs at the DR site: it is now guarded here against starting', { server });
    return set;
  } catch (e) {
    log.warn('could not guard the server against starting here', { server, err: e });
    return false;
  }
}

export const HOOK_NAME = 'haven-guard';
export const DEFAULT_HOOKS_DIR = '/etc/libvirt/hooks';

/**
 * The hook. libvirt runs every executable in hooks/qemu.d/ with the domain name, the operation
 * and its phase as arguments and the domain XML on stdin; a non-zero exit in "prepare begin"
 * stops the start, and libvirt reports what the hook printed on stderr. Everything else passes.
 * It reads all of stdin first, so libvirt never writes into a closed pipe.
 */
export function hookScript(): string {
  return `#!/bin/sh
# Haven primary guard (docs/recovery.md), installed by \`haven guard install\`.
# Refuses to start a server whose copy runs at the DR site: its libvirt definition carries
# <dr-active> metadata in the namespace ${DR_ACTIVE_NS}. Everything else passes untouched.
xml=$(cat)
[ "$2" = prepare ] && [ "$3" = begin ] || exit 0
case "$xml" in
*'${DR_ACTIVE_NS}'*)
  echo "haven: $1 runs at the DR site; starting this stale copy is refused. Fail back with 'haven failback', or remove the guard with 'haven guard clear $1' if the DR copy was abandoned." >&2
  exit 1
  ;;
esac
exit 0
`;
}

export interface HookInstall {
  path: string;
  /** libvirt had no qemu hook before: it notices this one only after a reload. */
  needsReload: boolean;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function hadQemuHook(hooksDir: string): Promise<boolean> {
  if (await isExecutableFile(join(hooksDir, 'qemu'))) return true;
  const entries = await readdir(join(hooksDir, 'qemu.d')).catch(() => [] as string[]);
  for (const e of entries) {
    if (e !== HOOK_NAME && (await isExecutableFile(join(hooksDir, 'qemu.d', e)))) return true;
  }
  return false;
}

/** Installs (or refreshes) the hook as `<hooksDir>/qemu.d/haven-guard`. */
export async function installHook(hooksDir = DEFAULT_HOOKS_DIR): Promise<HookInstall> {
  const dir = join(hooksDir, 'qemu.d');
  const path = join(dir, HOOK_NAME);
  const existed = await isExecutableFile(path);
  const others = await hadQemuHook(hooksDir);
  try {
    await mkdir(dir, { recursive: true });
    const current = await readFile(path, 'utf8').catch(() => undefined);
    if (current !== hookScript()) {
      const tmp = `${path}.tmp-${process.pid}`;
      await writeFile(tmp, hookScript(), { mode: 0o755 });
      await chmod(tmp, 0o755);
      await rename(tmp, path);
    }
  } catch (e) {
    throw recoveryError(
      'GUARD_HOOK_INSTALL_FAILED',
      'io',
      `cannot install ${path}: ${(e as Error).message}`,
      {
        hint: 'Run as root on the primary host.',
        cause: e,
        details: { path },
      },
    );
  }
  return { path, needsReload: !existed && !others };
}

export async function uninstallHook(hooksDir = DEFAULT_HOOKS_DIR): Promise<boolean> {
  const path = join(hooksDir, 'qemu.d', HOOK_NAME);
  const existed = await isExecutableFile(path);
  await rm(path, { force: true });
  return existed;
}

const run = promisify(execFile);

/**
 * Asks libvirtd to reload (SIGHUP), which is when it looks for hook scripts again. Returns how:
 * `systemctl reload` where systemd runs libvirtd, else the signal to the pid in its pid file.
 */
export async function reloadLibvirtd(
  pidFiles = ['/run/libvirtd.pid', '/var/run/libvirtd.pid'],
): Promise<string> {
  try {
    await run('systemctl', ['is-active', '--quiet', 'libvirtd']);
    await run('systemctl', ['reload', 'libvirtd']);
    return 'systemctl reload libvirtd';
  } catch {
    // No systemd, or libvirtd is not its unit here: signal the daemon directly.
  }
  for (const f of pidFiles) {
    const pid = Number((await readFile(f, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, 'SIGHUP');
        return `SIGHUP to libvirtd (pid ${pid})`;
      } catch (e) {
        throw new HavenError(
          'GUARD_RELOAD_FAILED',
          `cannot signal libvirtd (pid ${pid}): ${(e as Error).message}`,
          {
            kind: 'io',
            hint: 'Reload libvirtd yourself (systemctl reload libvirtd, or kill -HUP its pid).',
          },
        );
      }
    }
  }
  throw new HavenError('GUARD_RELOAD_FAILED', 'libvirtd’s pid file was not found', {
    kind: 'unavailable',
    hint: 'Reload libvirtd yourself (systemctl reload libvirtd, or kill -HUP its pid).',
  });
}
