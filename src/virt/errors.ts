/**
 * The virt component's errors, and the classifier that turns virsh's, qemu-img's and qemu-nbd's
 * error text into them. virsh reports failures as lines starting "error: " on stderr (the first
 * often generic, "failed to get domain 'x'", the next the libvirt error itself); the whole text
 * stays in `details.message` so nothing is lost when a pattern below is too coarse.
 */
import { type ErrorKind, HavenError } from '../core/errors.ts';

export type VirtErrorCode =
  | 'VIRT_NO_LIBVIRTD'
  | 'VIRT_DOMAIN_NOT_FOUND'
  | 'VIRT_DOMAIN_EXISTS'
  | 'VIRT_DOMAIN_NOT_RUNNING'
  | 'VIRT_DOMAIN_RUNNING'
  | 'VIRT_CHECKPOINT_NOT_FOUND'
  | 'VIRT_BITMAP_INCONSISTENT'
  | 'VIRT_BACKUP_ACTIVE'
  | 'VIRT_NO_BACKUP_JOB'
  | 'VIRT_AGENT_UNAVAILABLE'
  | 'VIRT_UNSUPPORTED'
  | 'VIRT_XML_INVALID'
  | 'VIRT_BAD_ARGUMENT'
  | 'VIRT_TIMEOUT'
  | 'VIRT_IMAGE_NOT_FOUND'
  | 'VIRT_IMAGE_IN_USE'
  | 'VIRT_QEMU_IMG_FAILED'
  | 'VIRT_QEMU_NBD_FAILED'
  | 'VIRT_COMMAND_FAILED';

const KIND: Record<VirtErrorCode, ErrorKind> = {
  VIRT_NO_LIBVIRTD: 'unavailable',
  VIRT_DOMAIN_NOT_FOUND: 'not-found',
  VIRT_DOMAIN_EXISTS: 'conflict',
  VIRT_DOMAIN_NOT_RUNNING: 'conflict',
  VIRT_DOMAIN_RUNNING: 'conflict',
  VIRT_CHECKPOINT_NOT_FOUND: 'not-found',
  VIRT_BITMAP_INCONSISTENT: 'integrity',
  VIRT_BACKUP_ACTIVE: 'conflict',
  VIRT_NO_BACKUP_JOB: 'not-found',
  VIRT_AGENT_UNAVAILABLE: 'unavailable',
  VIRT_UNSUPPORTED: 'unavailable',
  VIRT_XML_INVALID: 'usage',
  VIRT_BAD_ARGUMENT: 'usage',
  VIRT_TIMEOUT: 'unavailable',
  VIRT_IMAGE_NOT_FOUND: 'not-found',
  VIRT_IMAGE_IN_USE: 'conflict',
  VIRT_QEMU_IMG_FAILED: 'io',
  VIRT_QEMU_NBD_FAILED: 'unavailable',
  VIRT_COMMAND_FAILED: 'io',
};

const HINT: Record<VirtErrorCode, string> = {
  VIRT_NO_LIBVIRTD:
    'Start libvirtd (`systemctl start libvirtd`, or `libvirtd -d` without systemd) and check the URI; `haven doctor` shows what is wrong.',
  VIRT_DOMAIN_NOT_FOUND: 'Check the server name with `haven servers` (or `virsh list --all`).',
  VIRT_DOMAIN_EXISTS:
    'A domain with this name or UUID is already defined; pick another name or undefine the old one.',
  VIRT_DOMAIN_NOT_RUNNING: 'Start the server first, or use the offline path for a shut-off server.',
  VIRT_DOMAIN_RUNNING: 'The server is running; shut it down first if this operation needs it off.',
  VIRT_CHECKPOINT_NOT_FOUND:
    'libvirt has no such checkpoint: redefine it from the saved checkpoint XML, or start over with a full copy.',
  VIRT_BITMAP_INCONSISTENT:
    'The dirty bitmap cannot be trusted; the next run falls back to a checksum resync (only differing chunks are sent).',
  VIRT_BACKUP_ACTIVE:
    'A backup job already runs on this server: wait for it, or end it with `virsh domjobabort <server>` if it was left behind.',
  VIRT_NO_BACKUP_JOB: 'No backup job runs on this server; start one first.',
  VIRT_AGENT_UNAVAILABLE:
    'Install and start qemu-guest-agent in the guest and give the domain an org.qemu.guest_agent.0 channel.',
  VIRT_UNSUPPORTED: 'This libvirt/QEMU does not support the operation; run `haven doctor` to see versions.',
  VIRT_XML_INVALID: 'The XML was rejected by libvirt; the message says which element.',
  VIRT_BAD_ARGUMENT: 'Fix the argument named in the message.',
  VIRT_TIMEOUT:
    'libvirt did not answer in time; another job may hold the domain. Try again, or check libvirtd.',
  VIRT_IMAGE_NOT_FOUND: 'Check the disk image path in the domain definition.',
  VIRT_IMAGE_IN_USE:
    'The image is open by a running QEMU; use a live backup (backup-begin) or shut the server down first.',
  VIRT_QEMU_IMG_FAILED: 'See the message from qemu-img; check the image with `qemu-img check`.',
  VIRT_QEMU_NBD_FAILED: 'See the message from qemu-nbd; check the image path, format and the run directory.',
  VIRT_COMMAND_FAILED: 'See the message from virsh; the libvirtd log may say more.',
};

export class VirtError extends HavenError {
  declare readonly code: VirtErrorCode;

  constructor(
    code: VirtErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown; hint?: string } = {},
  ) {
    super(code, message, {
      kind: KIND[code],
      hint: options.hint ?? HINT[code],
      cause: options.cause,
      details: options.details,
    });
  }
}

/** True for the errors after which the engine must not trust a dirty bitmap (DESIGN §6). */
export function needsResync(err: unknown): boolean {
  return err instanceof VirtError && err.code === 'VIRT_BITMAP_INCONSISTENT';
}

/** The "error: ..." lines of virsh's stderr, joined, without the prefix. */
export function virshErrorText(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const errors = lines.filter((l) => l.startsWith('error: ')).map((l) => l.slice('error: '.length));
  return (errors.length > 0 ? errors : lines).join('; ');
}

/**
 * Ordered: the first matching rule wins, so specific libvirt messages come before the generic
 * "failed to get domain" line virsh prints in front of them.
 */
const VIRSH_RULES: Array<[RegExp, VirtErrorCode]> = [
  [
    /failed to connect to the hypervisor|Failed to connect socket|unable to connect to server/i,
    'VIRT_NO_LIBVIRTD',
  ],
  [
    /checkpoint inconsistent|missing or broken bitmap|bitmap .* (not found|inconsistent)/i,
    'VIRT_BITMAP_INCONSISTENT',
  ],
  [/Domain checkpoint not found|no domain checkpoint with matching/i, 'VIRT_CHECKPOINT_NOT_FOUND'],
  [/no domain backup job present|backup job id not found/i, 'VIRT_NO_BACKUP_JOB'],
  [
    /held by (monitor|agent|async)=remoteDispatchDomainBackupBegin|backup job .*already|another backup job/i,
    'VIRT_BACKUP_ACTIVE',
  ],
  [
    /guest agent is not (configured|connected|responding)|Guest agent not available/i,
    'VIRT_AGENT_UNAVAILABLE',
  ],
  [/failed to get domain|Domain not found|no domain with matching/i, 'VIRT_DOMAIN_NOT_FOUND'],
  [/domain is not running|for inactive domain|domain is not active/i, 'VIRT_DOMAIN_NOT_RUNNING'],
  [/domain is already (running|active)/i, 'VIRT_DOMAIN_RUNNING'],
  [/already exists with uuid|already defined with uuid|domain .* already exists/i, 'VIRT_DOMAIN_EXISTS'],
  [/XML error|XML document failed to validate|failed to parse xml|XML description/i, 'VIRT_XML_INVALID'],
  [
    /Operation not supported|this function is not supported|unsupported configuration|argument unsupported/i,
    'VIRT_UNSUPPORTED',
  ],
  [/Timed out during operation|cannot acquire state change lock/i, 'VIRT_TIMEOUT'],
];

/** Classifies a failed virsh run. */
export function virshError(args: readonly string[], stderr: string, exitCode: number): VirtError {
  const text = virshErrorText(stderr) || `virsh exited with code ${exitCode}`;
  const code = VIRSH_RULES.find(([re]) => re.test(text))?.[1] ?? 'VIRT_COMMAND_FAILED';
  const subject = args.find((a) => !a.startsWith('-')) ?? 'virsh';
  return new VirtError(code, `virsh ${subject}: ${text}`, {
    details: { command: 'virsh', args: [...args], exitCode, message: text },
  });
}

const QEMU_TOOL_RULES: Array<[RegExp, VirtErrorCode]> = [
  [
    /Bitmap '.*' is not found|Dirty bitmap '.*' not found|bitmap .*inconsistent|Bitmap '.*' is inconsistent/i,
    'VIRT_BITMAP_INCONSISTENT',
  ],
  [/Failed to get .*lock|Is another process using the image/i, 'VIRT_IMAGE_IN_USE'],
  [/No such file or directory/i, 'VIRT_IMAGE_NOT_FOUND'],
];

/** Classifies a failed qemu-img or qemu-nbd run. */
export function qemuToolError(
  tool: 'qemu-img' | 'qemu-nbd',
  args: readonly string[],
  stderr: string,
  exitCode: number,
): VirtError {
  const text =
    stderr
      .split('\n')
      .map((l) => l.trim().replace(`${tool}: `, ''))
      .filter(Boolean)
      .join('; ') || `${tool} exited with code ${exitCode}`;
  const fallback: VirtErrorCode = tool === 'qemu-img' ? 'VIRT_QEMU_IMG_FAILED' : 'VIRT_QEMU_NBD_FAILED';
  const code = QEMU_TOOL_RULES.find(([re]) => re.test(text))?.[1] ?? fallback;
  return new VirtError(code, `${tool}: ${text}`, {
    details: { command: tool, args: [...args], exitCode, message: text },
  });
}
