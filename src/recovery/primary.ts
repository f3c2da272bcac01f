/**
 * What the DR site can learn about the primary: is its libvirt reachable, and does it run the
 * server? `--primary` names it as a libvirt URI (qemu+ssh://host/system) or an ssh host
 * ([user@]host[:port], made into qemu+ssh://…/system). An unreachable primary is the normal case
 * on the day of a disaster and does not stop an activation.
 */
import type { Logger } from '../core/log.ts';
import { type DomainState, domainState, isActiveState, Virsh, VirtError } from '../virt/index.ts';
import { recoveryError } from './errors.ts';

const SSH_HOST =
  /^(?:([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})@)?([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

/** The libvirt URI of a primary given as a URI, or as an ssh host. */
export function primaryUri(spec: string): string {
  const s = spec.trim();
  const ssh = s.startsWith('ssh://');
  if (!ssh && /^[a-z][a-z0-9+]*:\/\//i.test(s)) return s;
  const m = SSH_HOST.exec(ssh ? s.slice('ssh://'.length).replace(/\/$/, '') : s);
  if (!m) {
    throw recoveryError(
      'RECOVERY_BAD_PRIMARY',
      'usage',
      `--primary ${JSON.stringify(spec)} is neither a libvirt URI nor an ssh host`,
      {
        hint: 'Write a libvirt URI such as qemu+ssh://root@primary/system, or an ssh host such as root@primary.',
      },
    );
  }
  const [, user, host, port] = m;
  return `qemu+ssh://${user ? `${user}@` : ''}${host}${port ? `:${port}` : ''}/system`;
}

export interface PrimaryStatus {
  uri: string;
  reachable: boolean;
  /** The server's state there; undefined when unreachable or not defined. */
  state?: DomainState;
  defined: boolean;
  running: boolean;
  /** Why it is unreachable. */
  error?: string;
}

export async function primaryStatus(
  uri: string,
  server: string,
  options: { log?: Logger; timeoutMs?: number } = {},
): Promise<PrimaryStatus> {
  const virsh = new Virsh({ uri, log: options.log, timeoutMs: options.timeoutMs ?? 30_000 });
  try {
    const { state } = await domainState(virsh, server);
    return { uri, reachable: true, state, defined: true, running: isActiveState(state) };
  } catch (e) {
    if (e instanceof VirtError && e.code === 'VIRT_DOMAIN_NOT_FOUND') {
      return { uri, reachable: true, defined: false, running: false };
    }
    if (e instanceof VirtError && (e.kind === 'unavailable' || e.code === 'VIRT_COMMAND_FAILED')) {
      return { uri, reachable: false, defined: false, running: false, error: e.message };
    }
    throw e;
  }
}
