/**
 * The virt component's errors, and the classifier that turns virsh's, qemu-img's and qemu-nbd's
 * error text into them. virsh reports failures as lines starting "error: " on stderr (the first
 * often generic, "failed to get domain 'x'", the next the libvirt error itself); the whole text
 * stays in `details.message` so nothing is lost when a pattern below is too coarse.
 */
import { HavenError } from '../core/errors.ts';
import { VIRT_CODES } from './error-codes.ts';

/** The codes a VirtError carries (error-codes.ts lists them). */
export type VirtErrorCode = keyof typeof VIRT_CODES;

export class VirtError extends HavenError {
  declare readonly code: VirtErrorCode;

  constructor(
    code: VirtErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown; hint?: string } = {},
  ) {
    super(code, message, {
      kind: VIRT_CODES[code].kind,
      hint: options.hint ?? VIRT_CODES[code].action,
      cause: options.cause,
      details: options.details,
    });
  }
}

/** True for the errors after which the engine must not trust a dirty bitmap (docs/design.md §6). */
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
