/**
 * The QEMU guest agent: freeze filesystems around a checkpoint so the copy is consistent at the
 * filesystem level (docs/design.md §6). A server without a working agent is normal, not a failure: the
 * copy is then crash-consistent, and the result says why the agent was not used.
 */
import { HavenError } from '../core/errors.ts';
import { type Logger, silentLogger } from '../core/log.ts';
import { VirtError } from './errors.ts';
import type { Virsh } from './virsh.ts';

export type AgentAbsent = {
  agent: false;
  /** not-configured (no channel), not-connected (no agent answering), timeout, or error. */
  reason: 'not-configured' | 'not-connected' | 'timeout' | 'error';
  message: string;
};

export type FreezeResult = { agent: true; frozen: number } | AgentAbsent;
export type ThawResult = { agent: true; thawed: number } | AgentAbsent;
export type PingResult = { agent: true } | AgentAbsent;

export interface AgentOptions {
  /** How long to wait for the agent (default 5 s for ping and thaw, 30 s for freeze). */
  timeoutMs?: number;
  /** Only these mount points (default all the agent can freeze). */
  mountpoints?: readonly string[];
  log?: Logger;
}

function absent(e: unknown): AgentAbsent | undefined {
  if (e instanceof VirtError && e.code === 'VIRT_AGENT_UNAVAILABLE') {
    const text = String(e.details?.message ?? e.message);
    const reason = /not configured/i.test(text) ? 'not-configured' : 'not-connected';
    return { agent: false, reason, message: text };
  }
  if (e instanceof VirtError && e.code === 'VIRT_TIMEOUT') {
    return { agent: false, reason: 'timeout', message: e.message };
  }
  if (e instanceof HavenError && e.code === 'COMMAND_TIMEOUT') {
    return { agent: false, reason: 'timeout', message: e.message };
  }
  return undefined;
}

/** guest-ping through libvirt, bounded by `timeoutMs` (seconds granularity, at least 1 s). */
export async function agentPing(
  virsh: Virsh,
  domain: string,
  options: AgentOptions = {},
): Promise<PingResult> {
  const seconds = Math.max(1, Math.ceil((options.timeoutMs ?? 5000) / 1000));
  try {
    await virsh.run(
      ['qemu-agent-command', '--domain', domain, '--timeout', String(seconds), '{"execute":"guest-ping"}'],
      {
        timeoutMs: seconds * 1000 + 10_000,
      },
    );
    return { agent: true };
  } catch (e) {
    const a = absent(e);
    if (a) return a;
    throw e;
  }
}

function count(out: string, verb: string): number {
  const m = new RegExp(`${verb}\\s+(\\d+)\\s+filesystem`, 'i').exec(out);
  return m ? Number(m[1]) : 0;
}

/**
 * Freezes the guest's filesystems. Pings first, so a missing or hung agent costs at most the
 * ping timeout instead of a freeze that might complete after we gave up. If the freeze itself
 * times out, a thaw is sent so the guest is never left frozen by us.
 */
export async function freeze(
  virsh: Virsh,
  domain: string,
  options: AgentOptions = {},
): Promise<FreezeResult> {
  const log = options.log ?? silentLogger;
  const ping = await agentPing(virsh, domain, { timeoutMs: Math.min(options.timeoutMs ?? 5000, 5000) });
  if (!ping.agent) {
    log.verbose('guest agent not available, copy is crash-consistent', { domain, reason: ping.reason });
    return ping;
  }
  const args = [
    'domfsfreeze',
    '--domain',
    domain,
    ...(options.mountpoints ?? []).flatMap((m) => ['--mountpoint', m]),
  ];
  try {
    const out = await virsh.run(args, { timeoutMs: options.timeoutMs ?? 30_000 });
    const frozen = count(out, 'Froze');
    log.verbose('guest filesystems frozen', { domain, frozen });
    return { agent: true, frozen };
  } catch (e) {
    const a = absent(e);
    if (!a) throw e;
    if (a.reason === 'timeout') {
      log.warn('freeze timed out, thawing in case it completes late', { domain });
      await thaw(virsh, domain, { log }).catch(() => undefined);
    }
    return a;
  }
}

/** Thaws every frozen filesystem (libvirt refuses to thaw a subset). */
export async function thaw(
  virsh: Virsh,
  domain: string,
  options: Omit<AgentOptions, 'mountpoints'> = {},
): Promise<ThawResult> {
  const args = ['domfsthaw', '--domain', domain];
  try {
    const out = await virsh.run(args, { timeoutMs: options.timeoutMs ?? 30_000 });
    const thawed = count(out, 'Thawed');
    options.log?.verbose('guest filesystems thawed', { domain, thawed });
    return { agent: true, thawed };
  } catch (e) {
    const a = absent(e);
    if (a) return a;
    throw e;
  }
}
