/**
 * Domain lifecycle: define/undefine, start, transient create (DR activation and drills boot
 * DR copies this way, docs/design.md §4.5), clean shutdown with a deadline, destroy, and waiting for a
 * state.
 */
import { DomainXml } from '../core/domain-xml.ts';
import { VirtError } from './errors.ts';
import type { Virsh } from './virsh.ts';

/** libvirt's domain states, as virsh prints them. */
export type DomainState =
  | 'running'
  | 'idle'
  | 'paused'
  | 'in shutdown'
  | 'shut off'
  | 'crashed'
  | 'pmsuspended'
  | 'no state';

const STATES: readonly DomainState[] = [
  'running',
  'idle',
  'paused',
  'in shutdown',
  'shut off',
  'crashed',
  'pmsuspended',
  'no state',
];

export function parseDomainState(text: string): DomainState {
  const s = text.trim().toLowerCase();
  const found = STATES.find((x) => x === s);
  if (found) return found;
  // virsh spells "blocked" as "idle" and older releases print "shutdown" for "in shutdown".
  if (s === 'blocked') return 'idle';
  if (s === 'shutdown') return 'in shutdown';
  return 'no state';
}

/** A domain is active (has a QEMU process) in every state but "shut off" and "crashed". */
export function isActiveState(state: DomainState): boolean {
  return state !== 'shut off' && state !== 'crashed';
}

export async function domainState(
  virsh: Virsh,
  name: string,
): Promise<{ state: DomainState; reason?: string }> {
  const out = (await virsh.run(['domstate', '--reason', '--domain', name])).trim();
  const m = /^(.*?)\s*(?:\((.*)\))?$/.exec(out);
  return { state: parseDomainState(m?.[1] ?? out), reason: m?.[2] };
}

/** Defines (or redefines) a persistent domain from XML; returns its name. */
export async function defineDomain(virsh: Virsh, xml: string): Promise<string> {
  const name = DomainXml.parse(xml).name;
  await virsh.runWithFiles({ domain: xml }, (f) => ['define', '--file', f.domain as string]);
  return name;
}

export interface UndefineOptions {
  /** Also drop libvirt's checkpoint metadata (the bitmaps in the images stay). Default true. */
  checkpointsMetadata?: boolean;
  /** Also drop snapshot metadata. Default false: refuse when snapshots exist. */
  snapshotsMetadata?: boolean;
  /** Also remove a UEFI domain's NVRAM file. Default true. */
  nvram?: boolean;
  managedSave?: boolean;
}

export async function undefineDomain(
  virsh: Virsh,
  name: string,
  options: UndefineOptions = {},
): Promise<void> {
  const args = ['undefine', '--domain', name];
  if (options.checkpointsMetadata ?? true) args.push('--checkpoints-metadata');
  if (options.snapshotsMetadata) args.push('--snapshots-metadata');
  if (options.nvram ?? true) args.push('--nvram');
  if (options.managedSave) args.push('--managed-save');
  await virsh.run(args);
}

/** Starts a defined domain; `paused` leaves its vCPUs stopped (resume with `resumeDomain`). */
export async function startDomain(
  virsh: Virsh,
  name: string,
  options: { paused?: boolean } = {},
): Promise<void> {
  await virsh.run(['start', '--domain', name, ...(options.paused ? ['--paused'] : [])]);
}

export async function resumeDomain(virsh: Virsh, name: string): Promise<void> {
  await virsh.run(['resume', '--domain', name]);
}

/** Starts a transient domain from XML (gone from libvirt once it stops); returns its name. */
export async function createTransient(
  virsh: Virsh,
  xml: string,
  options: { paused?: boolean } = {},
): Promise<string> {
  const name = DomainXml.parse(xml).name;
  await virsh.runWithFiles({ domain: xml }, (f) => [
    'create',
    '--file',
    f.domain as string,
    ...(options.paused ? ['--paused'] : []),
  ]);
  return name;
}

/**
 * Hard stop. Returns false when the domain was not running (nothing to do), so cleanup code can
 * call it unconditionally.
 */
export async function destroyDomain(
  virsh: Virsh,
  name: string,
  options: { graceful?: boolean } = {},
): Promise<boolean> {
  try {
    await virsh.run(['destroy', '--domain', name, ...(options.graceful ? ['--graceful'] : [])]);
    return true;
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_RUNNING') return false;
    throw e;
  }
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  signal?: AbortSignal;
}

/**
 * Waits until the domain is in one of `states`. A transient domain that stops disappears; that
 * counts as "shut off". Throws VIRT_TIMEOUT with the last state seen.
 */
export async function waitForState(
  virsh: Virsh,
  name: string,
  states: DomainState | readonly DomainState[],
  options: WaitOptions = {},
): Promise<DomainState> {
  const wanted: readonly DomainState[] = typeof states === 'string' ? [states] : states;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last: DomainState | 'gone' = 'no state';
  for (;;) {
    try {
      last = (await domainState(virsh, name)).state;
    } catch (e) {
      if (!(e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND')) throw e;
      last = 'gone';
    }
    if (last === 'gone') {
      if (wanted.includes('shut off')) return 'shut off';
      throw new VirtError(
        'VIRT_DOMAIN_NOT_FOUND',
        `domain ${name} disappeared while waiting for ${wanted.join('/')}`,
        {
          details: { domain: name },
        },
      );
    }
    if (wanted.includes(last)) return last;
    if (options.signal?.aborted || Date.now() >= deadline) {
      throw new VirtError(
        'VIRT_TIMEOUT',
        `domain ${name} is ${last}, not ${wanted.join('/')}, after waiting`,
        {
          hint: 'The guest did not react in time; check its console, or stop it with destroy.',
          details: { domain: name, state: last, wanted: [...wanted] },
        },
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 200));
  }
}

export interface ShutdownResult {
  /** The domain reached "shut off" (or, transient, disappeared) within the deadline. */
  stopped: boolean;
  /** The state when we stopped waiting. */
  state: DomainState;
  waitedMs: number;
}

/**
 * Asks the guest to shut down (ACPI power button, or the agent with mode 'agent') and waits up
 * to `timeoutMs`. Does not destroy a guest that ignores the request: the result says so and the
 * caller decides (a DR job may refuse to copy a running server, a drill may destroy it).
 */
export async function shutdownDomain(
  virsh: Virsh,
  name: string,
  options: { timeoutMs?: number; mode?: 'acpi' | 'agent' | 'initctl' | 'signal' | 'paravirt' } = {},
): Promise<ShutdownResult> {
  const started = Date.now();
  const { state } = await domainState(virsh, name);
  if (state === 'shut off') return { stopped: true, state, waitedMs: 0 };
  await virsh.run(['shutdown', '--domain', name, ...(options.mode ? ['--mode', options.mode] : [])]);
  try {
    const reached = await waitForState(virsh, name, 'shut off', { timeoutMs: options.timeoutMs ?? 120_000 });
    return { stopped: true, state: reached, waitedMs: Date.now() - started };
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_TIMEOUT') {
      const now = (e.details?.state as DomainState | undefined) ?? 'no state';
      return { stopped: false, state: now, waitedMs: Date.now() - started };
    }
    throw e;
  }
}

/** The domain XML: live (running config) by default, or the persistent config with `inactive`. */
export async function domainXml(
  virsh: Virsh,
  name: string,
  options: { inactive?: boolean; securityInfo?: boolean } = {},
): Promise<string> {
  const args = ['dumpxml', '--domain', name];
  if (options.inactive) args.push('--inactive');
  if (options.securityInfo) args.push('--security-info');
  return virsh.run(args);
}
