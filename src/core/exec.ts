/**
 * Running external programs (virsh, qemu-img, qemu-nbd, ssh, mount). A thin wrapper over
 * child_process that never throws a bare Error: a program that is missing becomes a typed
 * 'unavailable' error, a non-zero exit becomes whatever the caller's classifier says.
 */
import { spawn } from 'node:child_process';
import { type CodeOfKind, HavenError } from './errors.ts';

export interface ExecOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends HavenError {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly result: ExecResult,
    code: CodeOfKind<'io'> = 'COMMAND_FAILED',
  ) {
    const detail = result.stderr.trim() || result.stdout.trim() || `exit code ${result.code}`;
    super(code, `${command} ${args.join(' ')} failed: ${detail}`, {
      kind: 'io',
      details: { command, args: [...args], exitCode: result.code, stderr: result.stderr.slice(0, 4000) },
    });
  }
}

/** Runs a program to completion. Rejects with CommandError on a non-accepted exit code. */
export function exec(
  command: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (options.timeoutMs) {
      timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, options.timeoutMs);
    }
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      if (e.code === 'ENOENT') {
        reject(
          new HavenError('TOOL_MISSING', `${command} is not installed`, {
            kind: 'unavailable',
            hint: `Install the package that provides ${command} (see \`haven doctor\`).`,
            details: { command },
          }),
        );
      } else {
        reject(new HavenError('COMMAND_FAILED', `${command}: ${e.message}`, { kind: 'io', cause: e }));
      }
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const result: ExecResult = {
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (timedOut) {
        reject(
          new HavenError(
            'COMMAND_TIMEOUT',
            `${command} ${args.join(' ')} timed out after ${options.timeoutMs} ms`,
            {
              kind: 'unavailable',
              details: { command, args: [...args] },
            },
          ),
        );
      } else if ((options.okCodes ?? [0]).includes(result.code)) {
        resolve(result);
      } else {
        reject(new CommandError(command, args, result));
      }
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  });
}
