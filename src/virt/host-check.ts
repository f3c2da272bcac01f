/**
 * Checks that this host can run Haven's virt layer, each with a verdict and, when it fails, the
 * command that fixes it (`haven doctor` prints these). Nothing here changes the host except
 * creating the run directory, which Haven would create anyway.
 */

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../core/exec.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { ensureRunDir, havenPaths } from '../core/paths.ts';
import { Virsh } from './virsh.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface HostCheck {
  id: string;
  title: string;
  status: CheckStatus;
  detail: string;
  /** The command (or step) that fixes a failure or warning. */
  fix?: string;
  /** A failed required check makes `haven doctor` exit 12. */
  required: boolean;
}

/** Pull-mode backup with checkpoints is stable from libvirt 7.2; the NBD dirty-bitmap contexts need QEMU 4.2. */
export const MIN_LIBVIRT = '7.2.0';
export const MIN_QEMU = '4.2.0';

export interface HostCheckOptions {
  uri?: string;
  runDir?: string;
  /** The user QEMU runs as (default: from /etc/libvirt/qemu.conf, else libvirt-qemu or qemu). */
  qemuUser?: string;
  log?: Logger;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function firstVersion(text: string): string | undefined {
  return /(\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1];
}

const hasSystemd = () => existsSync('/run/systemd/system');

function startLibvirtFix(): string {
  return hasSystemd()
    ? 'systemctl start virtlogd libvirtd'
    : 'pgrep -x virtlogd >/dev/null || virtlogd -d; libvirtd -d';
}

/** QEMU's user from qemu.conf's `user = "..."`, else the distribution default that exists. */
export function qemuUser(confPath = '/etc/libvirt/qemu.conf'): string {
  try {
    const m = /^\s*user\s*=\s*"([^"]+)"/m.exec(readFileSync(confPath, 'utf8'));
    if (m?.[1]) return m[1].replace(/^\+/, '');
  } catch {
    // no qemu.conf: fall through to the defaults
  }
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : '';
  if (/^libvirt-qemu:/m.test(passwd)) return 'libvirt-qemu';
  if (/^qemu:/m.test(passwd)) return 'qemu';
  return 'root';
}

async function tryExec(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await exec(cmd, args, { timeoutMs: 30_000, env: { ...process.env, LC_ALL: 'C' } });
    return { ok: true, out: `${r.stdout}${r.stderr}` };
  } catch (e) {
    const err = e as { message?: string; details?: { stderr?: string } };
    return { ok: false, out: err.details?.stderr?.trim() || err.message || String(e) };
  }
}

async function libvirtChecks(virsh: Virsh): Promise<{ checks: HostCheck[]; reachable: boolean }> {
  const checks: HostCheck[] = [];
  let versionText: string;
  try {
    versionText = await virsh.run(['version', '--daemon'], { timeoutMs: 30_000 });
  } catch (e) {
    const msg = (e as Error).message;
    checks.push({
      id: 'libvirtd',
      title: 'libvirtd reachable',
      status: 'fail',
      detail: `libvirtd is not reachable at ${virsh.uri}: ${msg}`,
      fix: startLibvirtFix(),
      required: true,
    });
    for (const [id, title] of [
      ['libvirt-version', `libvirt >= ${MIN_LIBVIRT}`],
      ['qemu-version', `QEMU >= ${MIN_QEMU}`],
      ['backup-support', 'backup and checkpoint support'],
    ] as const) {
      checks.push({
        id,
        title,
        status: 'fail',
        detail: 'not checked: libvirtd is not reachable',
        fix: startLibvirtFix(),
        required: true,
      });
    }
    return { checks, reachable: false };
  }
  checks.push({
    id: 'libvirtd',
    title: 'libvirtd reachable',
    status: 'ok',
    detail: `connected to ${virsh.uri}`,
    required: true,
  });

  const daemon =
    /Running against daemon:\s*(\S+)/.exec(versionText)?.[1] ??
    /Using library: libvirt\s+(\S+)/.exec(versionText)?.[1];
  checks.push(
    versionCheck('libvirt-version', 'libvirt', daemon, MIN_LIBVIRT, {
      unknown: 'libvirt version unknown',
      fix: 'apt-get install -t <newer release> libvirt-daemon-system (pull-mode backup needs 7.2)',
    }),
  );

  const hv = /Running hypervisor:\s*QEMU\s+(\S+)/.exec(versionText)?.[1];
  checks.push(
    versionCheck('qemu-version', 'QEMU', hv, MIN_QEMU, {
      unknown: 'QEMU version unknown (is qemu-system-x86 installed?)',
      fix: 'apt-get install qemu-system-x86 (dirty-bitmap NBD contexts need QEMU 4.2)',
    }),
  );

  let caps = '';
  for (const extra of [[], ['--virttype', 'qemu']]) {
    try {
      caps = await virsh.run(['domcapabilities', ...extra], { timeoutMs: 30_000 });
      break;
    } catch {
      // KVM-less hosts need --virttype qemu
    }
  }
  const backup = /<backup\s+supported='(yes|no)'/.exec(caps)?.[1];
  checks.push({
    id: 'backup-support',
    title: 'backup and checkpoint support',
    status: backup === 'yes' ? 'ok' : 'fail',
    detail:
      backup === 'yes'
        ? "domcapabilities: <backup supported='yes'/>"
        : backup === 'no'
          ? "domcapabilities: <backup supported='no'/>"
          : 'domcapabilities does not report backup support',
    ...(backup === 'yes'
      ? {}
      : {
          fix: `upgrade to libvirt >= ${MIN_LIBVIRT} and QEMU >= ${MIN_QEMU} (apt-get install libvirt-daemon-system qemu-system-x86)`,
        }),
    required: true,
  });
  return { checks, reachable: true };
}

async function toolCheck(
  id: string,
  command: string,
  args: string[],
  pkg: string,
  required: boolean,
  minVersion?: string,
): Promise<HostCheck> {
  const title = minVersion ? `${command} >= ${minVersion}` : `${command} present`;
  const r = await tryExec(command, args);
  if (!r.ok) {
    return {
      id,
      title,
      status: required ? 'fail' : 'warn',
      detail: `${command} not usable: ${r.out.split('\n')[0]}`,
      fix: `apt-get install ${pkg}`,
      required,
    };
  }
  const first = r.out.split('\n').find((l) => l.trim()) ?? '';
  const version = firstVersion(first);
  if (minVersion && (!version || compareVersions(version, minVersion) < 0)) {
    return {
      id,
      title,
      status: required ? 'fail' : 'warn',
      detail: `${first.trim()} is older than ${minVersion}`,
      fix: `apt-get install ${pkg} (from a release with ${command} >= ${minVersion})`,
      required,
    };
  }
  return { id, title, status: 'ok', detail: first.trim(), required };
}

/** The run directory exists (or is created) and the QEMU user can create files in it. */
async function runDirCheck(runDir: string, user: string): Promise<HostCheck> {
  const title = 'run directory writable by QEMU';
  const fix = `mkdir -p ${runDir} && chmod 1777 ${runDir}`;
  try {
    ensureRunDir(runDir);
  } catch (e) {
    return {
      id: 'run-dir',
      title,
      status: 'fail',
      detail: `cannot create ${runDir}: ${(e as Error).message}`,
      fix,
      required: true,
    };
  }
  if (process.getuid?.() !== 0) {
    return {
      id: 'run-dir',
      title,
      status: 'warn',
      detail: `${runDir} exists; not root, so writing as ${user} was not tried`,
      fix: 'run `haven doctor` as root',
      required: true,
    };
  }
  const probe = join(runDir, `.haven-doctor-${process.pid}-${randomBytes(3).toString('hex')}`);
  const r = await asUser(user, 'touch "$1" && rm -f "$1"', [probe]);
  if (!r.ok) {
    return {
      id: 'run-dir',
      title,
      status: 'fail',
      detail: `${user} cannot create files in ${runDir}: ${r.out.split('\n')[0]}`,
      fix: `${fix}  (and make every parent directory searchable: chmod o+x on each)`,
      required: true,
    };
  }
  return {
    id: 'run-dir',
    title,
    status: 'ok',
    detail: `${user} can create files in ${runDir}`,
    required: true,
  };
}

/** Runs a shell script as `user` (with its groups), its arguments $1…; needs root. */
async function asUser(user: string, script: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  const group = (await tryExec('id', ['-gn', user])).out.trim() || user;
  return tryExec('setpriv', [
    `--reuid=${user}`,
    `--regid=${group}`,
    '--init-groups',
    '--',
    'sh',
    '-c',
    script,
    'sh',
    ...args,
  ]);
}

/**
 * Drills and activation at a DR host boot through overlays in `<store>/.haven/active` whose
 * backing files are the store's images: QEMU's user must be able to enter the store (every
 * parent too) and read a generation (docs/recovery.md, "QEMU must read the store"). A warning,
 * not a failure: the host can still receive. An LVM store's volumes are relabelled by libvirt.
 */
export async function storeAccessCheck(dir: string, user = qemuUser()): Promise<HostCheck> {
  const id = 'store-qemu-access';
  const title = `store readable by QEMU (${user})`;
  if (process.getuid?.() !== 0) {
    const detail = 'not root, so reading as QEMU was not tried';
    return { id, title, status: 'warn', detail, fix: 'run `haven doctor` as root', required: false };
  }
  const image = (await readdir(dir).catch(() => [] as string[])).find((f) => f.endsWith('.raw'));
  const r = await asUser(
    user,
    [
      'test -x "$1" || { echo "cannot enter $1" >&2; exit 1; }',
      '[ ! -d "$1/.haven" ] || test -x "$1/.haven" || { echo "cannot enter $1/.haven" >&2; exit 1; }',
      '[ -z "$2" ] || test -r "$2" || { echo "cannot read $2" >&2; exit 1; }',
    ].join('; '),
    [dir, image ? join(dir, image) : ''],
  );
  if (!r.ok) {
    return {
      id,
      title,
      status: 'warn',
      detail: `${r.out.split('\n')[0]}: drills and activation from this store would fail`,
      fix: `chmod o+x ${dir} (and each parent directory), chmod o+r on its .raw images`,
      required: false,
    };
  }
  const what = image ? `enter ${dir} and read ${image}` : `enter ${dir}`;
  return { id, title, status: 'ok', detail: `${user} can ${what}`, required: false };
}

export async function checkHost(options: HostCheckOptions = {}): Promise<HostCheck[]> {
  const log = options.log ?? silentLogger;
  const virsh = new Virsh({ uri: options.uri, log, timeoutMs: 30_000 });
  const { checks } = await libvirtChecks(virsh);
  checks.push(await toolCheck('qemu-nbd', 'qemu-nbd', ['--version'], 'qemu-utils', true, MIN_QEMU));
  checks.push(await toolCheck('qemu-img', 'qemu-img', ['--version'], 'qemu-utils', true));
  checks.push(
    await runDirCheck(
      options.runDir ?? havenPaths().runDir,
      options.qemuUser ?? (virsh.uri.includes('/session') ? currentUser() : qemuUser()),
    ),
  );
  checks.push(await toolCheck('ssh', 'ssh', ['-V'], 'openssh-client', true));
  checks.push(await toolCheck('nbdinfo', 'nbdinfo', ['--version'], 'libnbd-bin', false));
  return checks;
}

function currentUser(): string {
  return process.env.USER ?? 'root';
}

/** True when no required check failed. */
export function hostChecksPassed(checks: readonly HostCheck[]): boolean {
  return !checks.some((c) => c.required && c.status === 'fail');
}

/** `<what> >= min`: passes when the version found is at least `min`; required either way. */
function versionCheck(
  id: string,
  what: string,
  found: string | undefined,
  min: string,
  o: { unknown: string; fix: string },
): HostCheck {
  const ok = found !== undefined && compareVersions(found, min) >= 0;
  return {
    id,
    title: `${what} >= ${min}`,
    status: ok ? 'ok' : 'fail',
    detail: found ? `${what} ${found}` : o.unknown,
    ...(ok ? {} : { fix: o.fix }),
    required: true,
  };
}
